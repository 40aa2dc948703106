"""Two agents (userspace data plane) with on-demand tunnels, IKEv1 and IKEv2: both ends trap,
traffic from either side brings the tunnel up with its first packet delivered, an idle Child SA
is closed on both ends while the IKE SA stays, and the next packet (now from the other side)
needs only Phase 2 over that IKE SA."""

from __future__ import annotations

import pytest

from ikelab_testing.checks import assert_encrypted
from ikelab_testing.ondemand import agent_children, agent_factory, agent_ike, kept_busy, ping
from ikelab_testing.peers import AgentPeer, Tunnel, TunnelSpec

pytestmark = [pytest.mark.netns]

SPECS = {
    1: TunnelSpec(
        version=1, proposals=("aes256-sha256-modp2048",), esp_proposals=("aes256-sha256",)
    ),
    2: TunnelSpec(),
}
IDLE = 3


def wait_for(pred, timeout: float, what: str):  # noqa: ANN001, ANN201
    import time

    end = time.monotonic() + timeout
    while not (value := pred()):
        if time.monotonic() > end:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.1)
    return value


@pytest.mark.parametrize("version", [1, 2])
def test_both_ends_trap_and_the_ike_sa_outlives_idle_children(
    topology, capture_factory, version: int
) -> None:
    trap = {"start_action": "trap", "inactivity": f"{IDLE}s"}
    cap = capture_factory(topology.gw_a, "wan0")
    tunnel = Tunnel(topology, agent_factory(trap), agent_factory(trap), SPECS[version]).start()
    try:
        a, b = tunnel.peer_a, tunnel.peer_b
        assert isinstance(a, AgentPeer) and isinstance(b, AgentPeer)
        assert a.agent.list_sas() == [] and b.agent.list_sas() == []
        # from A's side first: its trap fires, its first echo request is delivered
        assert 1 in ping(topology.host_a, topology.spec.host_b_addr, count=3)
        with kept_busy(topology.host_a, topology.spec.host_b_addr):
            wait_for(lambda: agent_children(a) and agent_children(b), 10, "both children")
            ike = agent_ike(a)
            assert len(ike) == 1 and agent_ike(b) == ike
            (ta,) = a.agent.ikectl("list-traps")
            assert (ta["active"], ta["acquires"]) == (True, 1)
        # idle on both ends (each has inactivity): the children go, the IKE SA stays
        wait_for(
            lambda: not agent_children(a) and not agent_children(b), IDLE * 3 + 5, "idle close"
        )
        assert agent_ike(a) == ike and agent_ike(b) == ike
        # now from B's side: B's trap fires and reuses the IKE SA (B is its responder)
        assert 1 in ping(topology.host_b, topology.spec.host_a_addr, count=3)
        with kept_busy(topology.host_b, topology.spec.host_a_addr):
            wait_for(lambda: agent_children(a) and agent_children(b), 10, "children again")
            assert agent_ike(a) == ike and agent_ike(b) == ike
            (tb,) = b.agent.ikectl("list-traps")
            assert tb["acquires"] >= 1
        assert_encrypted(cap.summary(), topology, udp=True)
    except BaseException:
        for p in (tunnel.peer_a, tunnel.peer_b):
            if p is not None:
                print(p.agent.log_tail(60))
        raise
    finally:
        codes = tunnel.stop()
    assert codes == {"a": 0, "b": 0}, codes
