"""Two agents with IKEv1 (RFC 2409), Main Mode and Aggressive Mode with a PSK: the SAs agree on
both sides, traffic passes both ways now and not before, only ESP crosses the underlay, and a
restart of one side (clean stop, or a crash) re-establishes the tunnel with no stale SA left."""

from __future__ import annotations

import os
import signal

import pytest

from ikelab_testing.charon import wait_for
from ikelab_testing.checks import assert_blocked, assert_encrypted, assert_passes
from ikelab_testing.peers import AgentPeer, Tunnel, TunnelSpec, agent_peer

pytestmark = [pytest.mark.netns]

MODES = ["main", "aggressive"]


def v1_spec(mode: str) -> TunnelSpec:
    return TunnelSpec(
        version=1,
        aggressive=mode == "aggressive",
        proposals=("aes256-sha256-modp2048",),
        esp_proposals=("aes128-sha1-modp2048",),
    )


def pairs(peer: AgentPeer) -> set[tuple[str, str]]:
    """(spi_in, spi_out) of the INSTALLED children."""
    return {
        (c["spi_in"], c["spi_out"])
        for sa in peer.agent.list_sas()
        for c in sa["children"]
        if c["state"] == "INSTALLED"
    }


def mirrored(a: AgentPeer, b: AgentPeer) -> bool:
    """Exactly one ISAKMP SA and one IPsec SA pair on each side, and they are the same pair."""
    sas_a, sas_b = a.agent.list_sas(), b.agent.list_sas()
    if len(sas_a) != 1 or len(sas_b) != 1:
        return False
    if len(sas_a[0]["children"]) != 1 or len(sas_b[0]["children"]) != 1:
        return False
    pa = pairs(a)
    return bool(pa) and pa == {(o, i) for i, o in pairs(b)}


def dump(*peers: AgentPeer | None) -> None:
    for p in peers:
        if p is not None:
            print(f"--- {p.agent} log tail ---\n{p.agent.log_tail(60)}")


@pytest.mark.parametrize("initiator", ["a", "b"])
@pytest.mark.parametrize("mode", MODES)
def test_ikev1_agent_to_agent_tunnel(topology, capture_factory, mode: str, initiator: str) -> None:
    spec = v1_spec(mode)
    cap = capture_factory(topology.gw_a, "wan0")
    tunnel = Tunnel(topology, agent_peer, agent_peer, spec).start()
    try:
        assert_blocked(topology)
        first = tunnel.peer_a if initiator == "a" else tunnel.peer_b
        first.initiate()
        tunnel.peer_a.wait_up(15)
        tunnel.peer_b.wait_up(15)
        passed = assert_passes(topology, count=5)
        assert passed.received == passed.sent, passed
        back = topology.host_b.ping(topology.spec.host_a_addr, count=3)
        assert back.received == 3, back

        [sa_a] = tunnel.peer_a.agent.list_sas()
        [sa_b] = tunnel.peer_b.agent.list_sas()
        roles = {"a": "initiator", "b": "responder"}
        if initiator == "b":
            roles = {"a": "responder", "b": "initiator"}
        for sa, site in ((sa_a, "a"), (sa_b, "b")):
            assert (sa["version"], sa["mode"], sa["state"]) == (1, mode, "ESTABLISHED")
            assert sa["role"] == roles[site]
            assert (sa["encryption"], sa["prf"], sa["dh"]) == (
                "AES_CBC_256",
                "PRF_HMAC_SHA2_256",
                "MODP_2048",
            )
        assert (sa_a["spi_i"], sa_a["spi_r"]) == (sa_b["spi_i"], sa_b["spi_r"])
        [ca] = sa_a["children"]
        [cb] = sa_b["children"]
        assert (ca["spi_in"], ca["spi_out"]) == (cb["spi_out"], cb["spi_in"])
        assert (ca["encryption"], ca["integrity"], ca["dh"]) == (
            "AES_CBC_128",
            "HMAC_SHA1_96",
            "MODP_2048",
        )
        assert ca["encap"] and cb["encap"]  # the userspace data plane sends ESP in UDP
        assert ca["local_ts"] == [topology.spec.subnet_a]
        assert ca["remote_ts"] == [topology.spec.subnet_b]
        assert ca["packets_out"] >= 5 and cb["packets_in"] >= 5

        summary = cap.summary()
        assert_encrypted(summary, topology, udp=True)
        assert summary.ike >= 2, f"no IKE exchange on the underlay:\n{summary}"
    except BaseException:
        dump(tunnel.peer_a, tunnel.peer_b)
        raise
    finally:
        codes = tunnel.stop()
    assert codes == {"a": 0, "b": 0}, codes


# (the side that restarts, how it goes down): a clean stop deletes its SAs (the other side must
# act on the Delete), a crash leaves them (INITIAL-CONTACT, RFC 2407 4.6.3.3, must clear them)
RESTARTS = [("a", "stop"), ("b", "crash")]


@pytest.mark.parametrize("side,how", RESTARTS, ids=[f"{s}-{h}" for s, h in RESTARTS])
@pytest.mark.parametrize("mode", MODES)
def test_ikev1_restart_of_one_side_reestablishes(topology, mode: str, side: str, how: str) -> None:
    spec = v1_spec(mode)
    tunnel = Tunnel(topology, agent_peer, agent_peer, spec).start()
    old: AgentPeer | None = None
    try:
        tunnel.up(timeout=15)
        assert_passes(topology, count=2)
        old = tunnel.peer_a if side == "a" else tunnel.peer_b
        other = tunnel.peer_b if side == "a" else tunnel.peer_a
        assert isinstance(old, AgentPeer) and isinstance(other, AgentPeer)
        before = pairs(other)

        if how == "stop":
            assert old.stop() == 0
            # the clean stop sent Deletes: the other side has nothing left
            wait_for(lambda: other.agent.list_sas() == [], 10, 0.1, "the Delete acted on")
        else:
            proc = old.agent.proc
            assert proc is not None
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)
            old.stop()  # reaps it
            assert pairs(other) == before  # the other side cannot know yet

        new = AgentPeer(old.end, name="agent-restarted")
        if side == "a":
            tunnel.peer_a = new
        else:
            tunnel.peer_b = new
        new.initiate()
        new.wait_up(15)
        wait_for(lambda: mirrored(new, other), 10, 0.1, "one fresh SA pair on both sides")
        assert pairs(other).isdisjoint(before)
        [sa] = new.agent.list_sas()
        assert (sa["version"], sa["mode"], sa["role"]) == (1, mode, "initiator")
        assert_passes(topology, count=3)
        back = topology.host_b.ping(topology.spec.host_a_addr, count=3)
        assert back.received == 3, back
    except BaseException:
        dump(tunnel.peer_a, tunnel.peer_b)
        raise
    finally:
        if old is not None:
            old.stop()
        tunnel.stop()
