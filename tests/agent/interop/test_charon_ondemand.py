"""On-demand tunnels and lifetimes against strongSwan's charon (kernel-libipsec; the agent's
userspace data plane), IKEv1 and IKEv2: a trap raises the tunnel on the first packet, an idle
Child SA is closed while the IKE SA stays and the next packet needs only Phase 2 on that same
IKE SA; dead peers follow dpd_action; short lifetimes rekey under a ping without loss."""

from __future__ import annotations

import signal
import time

import pytest
from tunnels import BackgroundPing, agent_of, charon_of, print_logs, wait_for

from ikelab_testing.checks import assert_encrypted
from ikelab_testing.ondemand import (
    agent_children,
    agent_factory,
    agent_ike,
    charon_children,
    charon_factory,
    charon_ike,
    kept_busy,
    ping,
)
from ikelab_testing.peers import Tunnel, TunnelSpec

pytestmark = [pytest.mark.netns, pytest.mark.interop]

SPECS = {
    1: TunnelSpec(
        version=1, proposals=("aes256-sha256-modp2048",), esp_proposals=("aes256-sha256",)
    ),
    2: TunnelSpec(),
}
IDLE = 4  # seconds of inactivity before the Child SA is closed


@pytest.mark.parametrize("version", [1, 2])
@pytest.mark.parametrize("idler", ["agent", "charon"])
def test_on_demand_tunnel_comes_up_goes_idle_and_comes_back_on_the_same_ike_sa(
    topology, capture_factory, version: int, idler: str
) -> None:
    """The agent (A) traps: it installs only its policy, and a ping from behind it raises the
    IKE SA and the Child SA. After IDLE seconds without traffic one end (``idler``: the agent
    with ``inactivity``, or charon with its own) closes the Child SA, and both keep the IKE SA;
    the next ping brings a new Child SA up over that same IKE SA.

    charon traps only in the UML tests: its kernel-libipsec data plane (all this machine's
    kernel allows) raises no acquires and drops what hits a trap (strongSwan 5.9)."""
    idle = {"inactivity": f"{IDLE}s"}
    trap = {"start_action": "trap", **(idle if idler == "agent" else {})}
    factories = (agent_factory(trap), charon_factory(idle if idler == "charon" else None))
    cap = capture_factory(topology.gw_a, "wan0")
    tunnel = Tunnel(topology, *factories, SPECS[version]).start()
    try:
        agent, charon = agent_of(tunnel), charon_of(tunnel)
        dst = topology.spec.host_b_addr
        (status,) = agent.agent.ikectl("list-traps")
        assert (status["child"], status["active"], status["acquires"]) == ("net", False, 0)
        assert agent.agent.list_sas() == [] and charon.charon.list_sas() == {}

        replies = ping(topology.host_a, dst)
        assert replies, "no reply: the trap did not bring the tunnel up"
        # the packet that raised the tunnel was held and delivered, not dropped
        assert 1 in replies, f"the first echo request was lost: replies {sorted(replies)}"
        with kept_busy(topology.host_a, dst):
            wait_for(lambda: agent_children(agent) and charon_children(charon), 10, "children")
            ike = agent_ike(agent)
            assert len(ike) == 1 and charon_ike(charon) == ike
            first_spis = {c["spi_in"] for c in agent_children(agent)}

        # idle: the Child SA goes on both ends, the IKE SA stays on both
        wait_for(
            lambda: not agent_children(agent) and not charon_children(charon),
            IDLE * 3 + 5,
            "the idle Child SA to be closed on both ends",
        )
        assert agent_ike(agent) == ike and charon_ike(charon) == ike

        # the next packet: Phase 2 only, on the IKE SA that stayed
        assert ping(topology.host_a, dst, count=3)
        with kept_busy(topology.host_a, dst):
            wait_for(lambda: agent_children(agent) and charon_children(charon), 10, "again")
            assert agent_ike(agent) == ike and charon_ike(charon) == ike
            assert {c["spi_in"] for c in agent_children(agent)}.isdisjoint(first_spis)
        assert_encrypted(cap.summary(), topology, udp=True)
    except BaseException:
        print_logs(tunnel.peer_a, tunnel.peer_b)
        raise
    finally:
        codes = tunnel.stop()
    assert codes == {"a": 0, "b": 0}, codes


@pytest.mark.parametrize("version", [1, 2])
@pytest.mark.parametrize("action", ["restart", "trap"])
def test_dead_peer_is_noticed_and_the_tunnel_returns_with_it(
    topology, version: int, action: str
) -> None:
    """charon stops answering (SIGSTOP: no Delete, no reply, no ESP): the agent's liveness
    checks declare it dead and its child follows ``dpd_action``. When charon answers again the
    tunnel comes back: by itself with ``restart`` (``keyingtries`` 0 keeps trying), on the next
    packet with ``trap``. The ping then crosses."""
    dpd = {"dpd_delay": "2s", "keyingtries": 0} | ({"dpd_timeout": "6s"} if version == 1 else {})
    factories = (
        agent_factory({"start_action": "start", "dpd_action": action}, dpd),
        charon_factory(),
    )
    tunnel = Tunnel(topology, *factories, SPECS[version]).start()
    try:
        agent, charon = agent_of(tunnel), charon_of(tunnel)
        agent.wait_up(15)
        before = agent_ike(agent)
        proc = charon.charon.proc
        assert proc is not None
        proc.send_signal(signal.SIGSTOP)
        try:
            wait_for(lambda: not agent_ike(agent), 40, "the agent to declare charon dead")
            assert not agent_children(agent)
            if action == "trap":
                (status,) = agent.agent.ikectl("list-traps")
                assert (status["reason"], status["active"]) == ("dpd_action", False)
            else:
                assert agent.agent.ikectl("list-traps") == []
        finally:
            proc.send_signal(signal.SIGCONT)
        if action == "trap":
            assert ping(topology.host_a, topology.spec.host_b_addr, count=3)
        wait_for(lambda: agent_children(agent) and charon_children(charon), 40, "the tunnel back")
        after = agent_ike(agent)
        assert len(after) == 1 and after != before
        assert ping(topology.host_a, topology.spec.host_b_addr, count=3) == {1, 2, 3}
    except BaseException:
        print_logs(tunnel.peer_a, tunnel.peer_b)
        raise
    finally:
        codes = tunnel.stop()
    assert codes == {"a": 0, "b": 0}, codes


@pytest.mark.parametrize(
    "version,ike", [(1, "rekey"), (2, "rekey"), (2, "reauth")], ids=["v1", "v2", "v2-reauth"]
)
def test_lifetimes_rekey_child_and_ike_sas_under_a_continuous_ping_without_loss(
    topology, version: int, ike: str
) -> None:
    """Short lifetimes (with their random jitter) make the agent rekey its Child SA every few
    seconds and renew its IKE SA a little less often (IKEv2: rekey, or reauthentication by a
    new IKE SA that takes the child over; IKEv1: a new Phase 1), all while a ping runs every
    50 ms: every echo request gets its reply."""
    child = {"start_action": "start", "rekey_time": "4s", "life_time": "6s"}
    if ike == "reauth":
        conn = {"reauth_time": "8s", "rekey_time": "0"}
    else:
        conn = {"rekey_time": "9s", "over_time": "4s"}
    tunnel = Tunnel(topology, agent_factory(child, conn), charon_factory(), SPECS[version]).start()
    try:
        agent, charon = agent_of(tunnel), charon_of(tunnel)
        agent.wait_up(15)
        ping = BackgroundPing(topology.host_a, topology.spec.host_b_addr)
        children: set[str] = set()
        ikes: set[tuple[str, str]] = set()
        end = time.monotonic() + 22
        while time.monotonic() < end:
            children |= {c["spi_in"] for c in agent_children(agent)}
            ikes |= set(agent_ike(agent))
            time.sleep(0.3)
        sent, received, out = ping.stop()
        assert len(children) >= 4, f"only {len(children)} Child SAs seen"
        assert len(ikes) >= 2, f"only {len(ikes)} IKE SAs seen"
        if received != sent:
            stats = agent.agent.status()["stats"]["dataplane"]
            print(f"--- agent data plane ---\n{stats}")
        assert sent >= 300 and received == sent, f"lost {sent - received} of {sent}\n{out[-2000:]}"
        # and the ends agree at the end: one IKE SA, one Child SA each
        # (a reauthentication may be half done when the ping stops: wait for it to end)
        wait_for(
            lambda: len(charon_children(charon)) == 1 and len(charon.charon.list_sas()) == 1,
            15,
            "charon to settle on one IKE SA and one child",
        )
    except BaseException:
        print_logs(tunnel.peer_a, tunnel.peer_b)
        raise
    finally:
        codes = tunnel.stop()
    assert codes == {"a": 0, "b": 0}, codes


@pytest.mark.parametrize("version", [1, 2])
@pytest.mark.parametrize("action", ["start", "trap"])
def test_close_action_when_charon_deletes_the_child(topology, version: int, action: str) -> None:
    """charon closes the Child SA (``swanctl --terminate --child``: an IKEv2 INFORMATIONAL
    Delete, an IKEv1 Delete notification) and keeps the IKE SA. The agent's child follows
    ``close_action``: ``start`` brings a new Child SA up at once, ``trap`` arms a trap that the
    next ping springs; either way over the IKE SA that stayed, and the ping crosses."""
    factories = (
        agent_factory({"start_action": "start", "close_action": action}),
        charon_factory(),
    )
    tunnel = Tunnel(topology, *factories, SPECS[version]).start()
    try:
        agent, charon = agent_of(tunnel), charon_of(tunnel)
        agent.wait_up(15)
        wait_for(lambda: charon_children(charon), 10, "charon's child")
        ike = agent_ike(agent)
        first = {c["spi_in"] for c in agent_children(agent)}
        charon.charon.terminate(child=SPECS[version].child)
        if action == "trap":
            wait_for(lambda: not agent_children(agent), 10, "the agent to drop the child")
            (status,) = agent.agent.ikectl("list-traps")
            assert (status["reason"], status["active"]) == ("close_action", False)
            assert ping(topology.host_a, topology.spec.host_b_addr, count=3)
        wait_for(
            lambda: (
                {c["spi_in"] for c in agent_children(agent)} - first and charon_children(charon)
            ),
            20,
            "a new Child SA",
        )
        assert agent_ike(agent) == ike and charon_ike(charon) == ike
        assert ping(topology.host_a, topology.spec.host_b_addr, count=3) == {1, 2, 3}
    except BaseException:
        print_logs(tunnel.peer_a, tunnel.peer_b)
        raise
    finally:
        codes = tunnel.stop()
    assert codes == {"a": 0, "b": 0}, codes
