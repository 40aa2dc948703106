"""Helpers of the on-demand tunnel tests (agent and charon peers with extra child and
connection keys, pings that report which echo requests got a reply, SA views)."""

from __future__ import annotations

import re
import subprocess
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from ikelab_testing.netns import Namespace
from ikelab_testing.peers import AgentPeer, CharonPeer, End

# faster retransmits, so dead peers are noticed within seconds
FAST = {"retransmit_timeout": 0.5, "retransmit_tries": 3}


def agent_factory(
    child: Mapping[str, Any] | None = None, conn: Mapping[str, Any] | None = None
) -> Callable[[End], AgentPeer]:
    """An agent peer whose child and connection get these further keys."""

    def hook(config: dict[str, Any]) -> None:
        (c,) = config["connections"].values()
        c.update(conn or {})
        (ch,) = c["children"].values()
        ch.update(child or {})

    return lambda end: AgentPeer(end, FAST, config_hook=hook)


def charon_factory(
    child: Mapping[str, Any] | None = None, conn: Mapping[str, Any] | None = None
) -> Callable[[End], CharonPeer]:
    """A charon peer whose child and connection get these further swanctl keys."""
    return lambda end: CharonPeer(end, child_options=child, conn_options=conn)


def ping(ns: Namespace, dst: str, count: int = 5, interval: float = 0.2) -> set[int]:
    """The sequence numbers of the echo requests that got a reply."""
    out = subprocess.run(
        ns.argv(["ping", "-n", "-c", str(count), "-i", str(interval), "-W", "3", dst]),
        capture_output=True,
        text=True,
        timeout=count * interval + 10,
    ).stdout
    return {int(n) for n in re.findall(r"icmp_seq=(\d+) ttl=", out)}


@contextmanager
def kept_busy(ns: Namespace, dst: str, interval: float = 0.5) -> Iterator[None]:
    """A ping each ``interval`` s while the body checks an on-demand tunnel that is up: a
    loaded machine can spend longer than the idle timeout on those checks, and the idle child
    would rightly go."""
    proc = subprocess.Popen(
        ns.argv(["ping", "-n", "-q", "-i", str(interval), dst]),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        yield
    finally:
        proc.terminate()
        proc.wait(10)


def agent_ike(peer: AgentPeer) -> list[tuple[str, str]]:
    """SPIs of the agent's established IKE SAs."""
    return [(s["spi_i"], s["spi_r"]) for s in peer.agent.list_sas() if s["state"] == "ESTABLISHED"]


def agent_children(peer: AgentPeer) -> list[dict[str, Any]]:
    """The agent's installed Child SAs."""
    return [c for s in peer.agent.list_sas() for c in s["children"] if c["state"] == "INSTALLED"]


def charon_ike(peer: CharonPeer) -> list[tuple[str, str]]:
    """SPIs of charon's IKE SAs, written as the agent writes them."""
    return [
        (f"{int(s['initiator-spi'], 16):016x}", f"{int(s['responder-spi'], 16):016x}")
        for s in peer.charon.list_sas().values()
    ]


def charon_children(peer: CharonPeer) -> list[dict[str, Any]]:
    return [c for c in peer.charon.children() if c.get("state") == "INSTALLED"]
