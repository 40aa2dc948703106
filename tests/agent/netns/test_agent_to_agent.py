"""Two agents in network namespaces, each side as initiator: the three facts of a working tunnel
(SAs up with the expected algorithms, traffic passes now and not before, only ESP on the wire)."""

from __future__ import annotations

import pytest

from ikelab_testing.checks import assert_blocked, assert_encrypted, assert_passes
from ikelab_testing.peers import Tunnel, TunnelSpec, agent_peer

pytestmark = [pytest.mark.netns]


@pytest.mark.parametrize("initiator", ["a", "b"])
def test_agent_to_agent_tunnel(topology, capture_factory, initiator: str) -> None:
    spec = TunnelSpec(proposals=("aes256gcm16-prfsha256-x25519",), esp_proposals=("aes256gcm16",))
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

        sas_a = tunnel.peer_a.agent.list_sas()
        sas_b = tunnel.peer_b.agent.list_sas()
        assert [s["role"] for s in sas_a] == ["initiator" if initiator == "a" else "responder"]
        [ca] = sas_a[0]["children"]
        [cb] = sas_b[0]["children"]
        assert (ca["spi_in"], ca["spi_out"]) == (cb["spi_out"], cb["spi_in"])
        assert ca["encryption"] == "AES_GCM_16_256" and ca["encap"]
        assert ca["local_ts"] == [topology.spec.subnet_a] and ca["remote_ts"] == [
            topology.spec.subnet_b
        ]
        assert ca["packets_out"] >= 5 and cb["packets_in"] >= 5
        assert ca["last_used"] is not None

        summary = cap.summary()
        assert_encrypted(summary, topology, udp=True)
        text = tunnel.peer_a.sas_text()
        assert "ESTABLISHED" in text and "INSTALLED" in text
    except BaseException:
        for p in (tunnel.peer_a, tunnel.peer_b):
            if p is not None:
                print(p.agent.log_tail(60))
        raise
    finally:
        codes = tunnel.stop()
    assert codes == {"a": 0, "b": 0}, codes


def test_no_secret_in_debug_logs_or_ikectl_output(topology) -> None:
    from ikelab_testing.peers import AgentPeer

    spec = TunnelSpec()

    def debug_peer(end):
        return AgentPeer(end, log_level="debug")

    tunnel = Tunnel(topology, debug_peer, debug_peer, spec).start()
    try:
        tunnel.up(timeout=15)
        assert_passes(topology, count=2)
        tunnel.peer_a.agent.ikectl("rekey", tunnel.end_a.conn_name, json_output=False)
        outputs = [
            tunnel.peer_a.agent.ikectl("list-sas", json_output=False),
            str(tunnel.peer_a.agent.list_sas()),
            str(tunnel.peer_a.agent.ikectl("list-conns")),
            str(tunnel.peer_a.agent.status()),
        ]
        logs = tunnel.peer_a.agent.log_text() + tunnel.peer_b.agent.log_text()
        assert len(logs.splitlines()) > 20  # debug logging really was on
        for secret in (spec.psk.decode(), spec.psk.hex()):
            assert secret not in logs
            assert not any(secret in text for text in outputs)
    finally:
        tunnel.stop()
