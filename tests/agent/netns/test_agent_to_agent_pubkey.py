"""Two agents authenticating with certificates (``auth: pubkey``) from one throw-away CA,
IKEv1 and IKEv2, RSA and ECDSA P-256 (and Ed25519 for IKEv2), each side once the initiator.
A signature that does not verify cannot be made with real peers; the engine unit tests
cover it."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from ikelab_testing.checks import assert_blocked, assert_encrypted, assert_passes
from ikelab_testing.peers import Tunnel, TunnelSpec, agent_peer

pytestmark = [pytest.mark.netns]

V1_SUITE = (("aes256-sha256-modp2048",), ("aes256-sha256",))
V2_SUITE = (("aes256gcm16-prfsha256-x25519",), ("aes256gcm16",))
KEY_CLASSES = {
    "rsa": rsa.RSAPublicKey,
    "ecdsa-p256": ec.EllipticCurvePublicKey,
    "ed25519": ed25519.Ed25519PublicKey,
}
KEYS = [(1, "rsa"), (1, "ecdsa-p256"), (2, "rsa"), (2, "ecdsa-p256"), (2, "ed25519")]


@pytest.mark.parametrize("initiator", ["a", "b"])
@pytest.mark.parametrize("version,key_type", KEYS, ids=[f"ikev{v}-{k}" for v, k in KEYS])
def test_agent_to_agent_pubkey_tunnel(
    topology, capture_factory, version: int, key_type: str, initiator: str
) -> None:
    proposals, esp = V1_SUITE if version == 1 else V2_SUITE
    spec = TunnelSpec(
        version=version,
        proposals=proposals,
        esp_proposals=esp,
        auth="pubkey",
        key_type=key_type,
    )
    cap = capture_factory(topology.gw_a, "wan0")
    tunnel = Tunnel(topology, agent_peer, agent_peer, spec).start()
    try:
        assert_blocked(topology)
        first = tunnel.peer_a if initiator == "a" else tunnel.peer_b
        first.initiate()
        tunnel.peer_a.wait_up(15)
        tunnel.peer_b.wait_up(15)
        passed = assert_passes(topology, count=3)
        assert passed.received == passed.sent, passed
        back = topology.host_b.ping(topology.spec.host_a_addr, count=3)
        assert back.received == 3, back

        for peer in (tunnel.peer_a, tunnel.peer_b):
            [sa] = peer.agent.list_sas()
            assert sa["state"] == "ESTABLISHED" and sa["version"] == version
            assert sa["local_id"] == peer.end.local_id
            assert sa["remote_id"] == peer.end.remote_id
            assert (sa["local_auth"], sa["remote_auth"]) == ("pubkey", "pubkey")
            mine = peer.end.credentials.cert
            assert mine.name == peer.end.local_id
            assert isinstance(mine.cert.public_key(), KEY_CLASSES[key_type])
        [ca] = tunnel.peer_a.agent.list_sas()[0]["children"]
        [cb] = tunnel.peer_b.agent.list_sas()[0]["children"]
        assert (ca["spi_in"], ca["spi_out"]) == (cb["spi_out"], cb["spi_in"])
        assert ca["packets_out"] >= 3 and cb["packets_in"] >= 3

        summary = cap.summary()
        assert_encrypted(summary, topology, udp=True)
        assert summary.ike >= 2, f"no IKE exchange on the underlay:\n{summary}"
        # both used the same CA and their own certificates (not a leftover PSK)
        creds_a, creds_b = tunnel.end_a.credentials, tunnel.end_b.credentials
        assert creds_a.cacerts == creds_b.cacerts
        assert creds_a.cert.cert.serial_number != creds_b.cert.cert.serial_number
        for peer in (tunnel.peer_a, tunnel.peer_b):
            assert peer.agent.config["connections"][peer.end.conn_name]["local"]["auth"] == (
                "pubkey"
            )
            assert "ike-lab" not in peer.agent.config["secrets"]
    except BaseException:
        for p in (tunnel.peer_a, tunnel.peer_b):
            if p is not None:
                print(p.agent.log_tail(60))
        raise
    finally:
        codes = tunnel.stop()
    assert codes == {"a": 0, "b": 0}, codes
