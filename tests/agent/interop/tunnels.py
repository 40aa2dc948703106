"""Helpers for tests that run the agent against a peer in the standard topology."""

from __future__ import annotations

import dataclasses
import re
import subprocess
import time
from collections.abc import Callable
from typing import Any

from ikelab_testing.netns import Namespace
from ikelab_testing.peers import AgentPeer, CharonPeer, End, Tunnel

IKE_NAMES = {
    "aes256gcm16": ("AES_GCM_16_256", "AES_GCM_16", "256"),
    "aes128gcm16": ("AES_GCM_16_128", "AES_GCM_16", "128"),
    "aes256": ("AES_CBC_256", "AES_CBC", "256"),
    "aes128": ("AES_CBC_128", "AES_CBC", "128"),
    "chacha20poly1305": ("CHACHA20_POLY1305", "CHACHA20_POLY1305", None),
}
DH_NAMES = {
    "x25519": "CURVE_25519",
    "modp2048": "MODP_2048",
    "ecp256": "ECP_256",
    "ecp384": "ECP_384",
}


def print_logs(*peers: Any) -> None:
    """The log tails of agent and charon peers, for a failing test's report."""
    for p in peers:
        if p is None:
            continue
        if hasattr(p, "agent"):
            print(f"--- agent log ---\n{p.agent.log_tail(80)}")
        else:
            print(f"--- charon log ---\n{p.charon.log_tail(80)}")


def agent_of(tunnel: Tunnel) -> AgentPeer:
    return next(p for p in (tunnel.peer_a, tunnel.peer_b) if isinstance(p, AgentPeer))


def charon_of(tunnel: Tunnel) -> CharonPeer:
    return next(p for p in (tunnel.peer_a, tunnel.peer_b) if isinstance(p, CharonPeer))


def with_spec(factory: Callable[[End], Any], **changes: Any) -> Callable[[End], Any]:
    """A peer factory whose end uses a changed TunnelSpec (another PSK, other proposals)."""

    def make(end: End) -> Any:
        return factory(dataclasses.replace(end, spec=dataclasses.replace(end.spec, **changes)))

    return make


def agent_children(agent: AgentPeer) -> list[dict[str, Any]]:
    return [c for sa in agent.agent.list_sas() for c in sa["children"]]


def installed_pairs_agent(agent: AgentPeer) -> set[tuple[str, str]]:
    return {(c["spi_in"], c["spi_out"]) for c in agent_children(agent) if c["state"] == "INSTALLED"}


def installed_pairs_charon(charon: CharonPeer) -> set[tuple[str, str]]:
    return {
        (f"{int(c['spi-out'], 16):08x}", f"{int(c['spi-in'], 16):08x}")
        for c in charon.charon.children()
        if c.get("state") == "INSTALLED"
    }


def wait_for(pred: Callable[[], Any], timeout: float, what: str) -> Any:
    end = time.monotonic() + timeout
    while True:
        value = pred()
        if value:
            return value
        if time.monotonic() > end:
            raise TimeoutError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.1)


class BackgroundPing:
    """A ping that runs while the test does other things; ``stop()`` returns (sent, received)."""

    def __init__(self, ns: Namespace, dst: str, interval: float = 0.05) -> None:
        self.proc = subprocess.Popen(
            ns.argv(["ping", "-n", "-i", str(interval), "-W", "1", dst]),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )

    def stop(self) -> tuple[int, int, str]:
        """(sent, received, output). ping keeps sending until it is interrupted, so its very
        last echo request may have left just before the interrupt, with no time for its reply:
        that one does not count as sent unless its reply made it."""
        import signal

        time.sleep(1.2)
        self.proc.send_signal(signal.SIGINT)
        out, _ = self.proc.communicate(timeout=10)
        m = re.search(r"(\d+) packets transmitted, (\d+) received", out)
        assert m, out
        sent = int(m.group(1))
        replied = {int(n) for n in re.findall(r"icmp_seq=(\d+) ttl=", out)}
        if sent and sent not in replied:
            sent -= 1
        return sent, len({n for n in replied if n <= sent}), out
