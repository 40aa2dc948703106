"""On-demand tunnels in the kernel (XFRM) of User-mode Linux guests, against strongSwan's charon
(kernel-netlink): traps raised by the kernel's ACQUIRE, idle Child SAs closed while the IKE SA
stays, and the next packet answered with Phase 2 only over that IKE SA.

- charon traps (``start_action = trap``, ``inactivity``) in guest b, the agent answers in a;
- the agent traps (``start_action: trap``, ``inactivity``) in guest a, charon answers in b, and
  the kernel keeps the agent's trap policies (with their guards) while no SA is there.

Pings come from the gateways' own protected addresses. charon leaves the kernel's
``xfrm_larval_drop`` at 1, so what meets its trap before the SAs are in is dropped: the test
pings until one echo comes back (the agent's data plane sets it to 0 and holds those packets;
``test_xfrm_trap.py`` and the netns interop tests show them delivered).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from test_charon_xfrm import (
    CHILD,
    IKEV1,
    IKEV2,
    UP_TIMEOUT,
    agent_for,
    charon_for,
    esp_states,
    received,
    sides,
    spi,
    wait_installed,
)

from ikelab_testing.guest_agent import GuestAgent, owned, xfrm_policies
from ikelab_testing.guest_charon import GuestCharon
from ikelab_testing.uml import Guest, route_protected

pytestmark = [pytest.mark.uml, pytest.mark.slow]

IDLE = 6  # seconds; UML is slow, so not too short


def wait(pred: Any, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = pred()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.5)


def ping_from(me: Guest, peer: Guest, count: int = 4) -> int:
    r = me.ping(peer.protected_address, count=count, src=me.protected_address, wait=5)
    return received(r)


def ping_until_answered(me: Guest, peer: Guest, timeout: float = UP_TIMEOUT) -> None:
    """Ping until one echo comes back: the first ones raise the tunnel (the trapping kernel
    drops what meets its trap while charon negotiates; UML needs seconds for that)."""
    wait(lambda: ping_from(me, peer, count=1), timeout, "a ping to get through the trap")


@contextmanager
def traffic(me: Guest, peer: Guest) -> Iterator[None]:
    """A ping each 0.5 s from ``me`` while the body checks the tunnel that is up: a loaded guest
    can spend longer than ``IDLE`` on those checks, and the idle child would rightly go."""
    proc = me.spawn(["ping", "-n", "-i", "0.5", "-I", me.protected_address, peer.protected_address])
    try:
        yield
    finally:
        proc.stop()


def agent_ike(agent: GuestAgent) -> list[tuple[str, str]]:
    return [(s["spi_i"], s["spi_r"]) for s in agent.list_sas() if s["state"] == "ESTABLISHED"]


def charon_ike(charon: GuestCharon) -> list[tuple[str, str]]:
    return [
        (f"{int(s['initiator-spi'], 16):016x}", f"{int(s['responder-spi'], 16):016x}")
        for s in charon.list_sas().values()
        if s.get("state") == "ESTABLISHED"
    ]


def charon_installed(charon: GuestCharon) -> list[dict[str, Any]]:
    return [c for c in charon.children(CHILD) if c.get("state") == "INSTALLED"]


@pytest.mark.parametrize(
    "trapper,version",
    [("charon", 2), ("agent", 1)],
    ids=["charon-traps-ikev2", "agent-traps-ikev1"],
)
def test_trap_idle_close_and_phase2_only_return(
    uml_pair: tuple[Guest, Guest], trapper: str, version: int
) -> None:
    a, b = uml_pair
    route_protected(a, b)
    ike, esp = IKEV2 if version == 2 else IKEV1
    side_a, side_b = sides(a, b, version, ike, esp)
    on_demand = {"start_action": "trap", "inactivity": f"{IDLE}s"}
    # the trapping end sits in the guest the pings leave from
    if trapper == "charon":
        charon, agent = charon_for(side_b, on_demand), agent_for(side_a)
        src, dst = b, a
    else:
        charon, agent = charon_for(side_a), agent_for(side_b, child=on_demand)
        src, dst = b, a
    try:
        assert agent.list_sas() == [] and charon.list_sas() == {}
        if trapper == "agent":
            (trap,) = agent.ikectl("list-traps")
            assert (trap["child"], trap["active"]) == (CHILD, False)
            # the kernel holds the trap: 3 policies naming the trap's reqid, each guarded
            ours = owned(xfrm_policies(src))
            assert len(ours) == 3 and esp_states(src) == {}, ours

        # traffic raises the tunnel
        ping_until_answered(src, dst)
        with traffic(src, dst):
            theirs = charon.wait_child_installed(CHILD, UP_TIMEOUT)
            ours_child = wait_installed(agent, CHILD, UP_TIMEOUT)
            assert spi(ours_child["spi_in"]) == spi(theirs["spi-out"])
            ike_spis = agent_ike(agent)
            assert len(ike_spis) == 1 and charon_ike(charon) == ike_spis

        # idle: the trapping end closes the Child SA; both keep the IKE SA
        wait(
            lambda: not agent.installed(CHILD) and not charon_installed(charon),
            IDLE * 4 + 60,
            "the idle Child SA to go on both ends",
        )
        assert agent_ike(agent) == ike_spis and charon_ike(charon) == ike_spis
        for g in (a, b):
            assert esp_states(g) == {}, f"{g.name} kept ESP SAs"
        if trapper == "agent":
            # the trap is armed again: its policies stayed in the kernel
            assert len(owned(xfrm_policies(src))) == 3

        # the next packets: a new Child SA over the same IKE SA, carrying every packet at once
        ping_until_answered(src, dst)
        with traffic(src, dst):
            assert ping_from(src, dst, count=3) == 3
            again = wait_installed(agent, CHILD, UP_TIMEOUT)
            assert again["spi_in"] != ours_child["spi_in"]
            assert agent_ike(agent) == ike_spis and charon_ike(charon) == ike_spis
    except BaseException:
        print(f"--- agent log ---\n{agent.log_tail(80)}")
        print(f"--- charon log ---\n{charon.log_tail(80)}")
        raise
    finally:
        agent_code = agent.stop()
        charon.stop()
    assert agent_code == 0, agent.log_tail()
    assert esp_states(a) == {} and esp_states(b) == {}
