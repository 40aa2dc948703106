"""The harness itself, proven charon-to-charon: IKEv2 PSK, aes256gcm16-prfsha256-x25519, ESP
aes256gcm16 over kernel-libipsec (UDP-encapsulated ESP), in the standard topology.

If this fails, the lab is broken, not the agent."""

from __future__ import annotations

import pytest

from ikelab_testing.checks import assert_blocked, assert_encrypted, assert_passes
from ikelab_testing.peers import Tunnel, TunnelSpec, charon_peer

pytestmark = [pytest.mark.netns, pytest.mark.interop]


def test_charon_to_charon_psk_tunnel(topology, capture_factory) -> None:
    spec = TunnelSpec()
    cap = capture_factory(topology.gw_a, "wan0")
    tunnel = Tunnel(topology, charon_peer, charon_peer, spec).start()
    try:
        assert_blocked(topology)

        tunnel.up(timeout=10)
        passed = assert_passes(topology, count=3)
        assert passed.received == passed.sent, f"packets lost through the tunnel: {passed}"

        summary = cap.summary()
        assert_encrypted(summary, topology, udp=True)
        assert summary.ike >= 2, f"no IKE exchange seen on the underlay:\n{summary}"

        for peer, peer_site in ((tunnel.peer_a, "b"), (tunnel.peer_b, "a")):
            sas = peer.charon.list_sas()
            ike = sas[f"site-{peer_site}"]
            assert ike["state"] == "ESTABLISHED"
            assert ike["version"] == "2"
            assert (ike["encr-alg"], ike["encr-keysize"]) == ("AES_GCM_16", "256")
            assert ike["prf-alg"] == "PRF_HMAC_SHA2_256"
            assert ike["dh-group"] == "CURVE_25519"
            assert ike["nat-any"] == "yes"  # libipsec forces UDP encapsulation
            [child] = ike["child-sas"].values()
            assert child["name"] == "net"
            assert child["state"] == "INSTALLED"
            assert (child["protocol"], child["mode"], child["encap"]) == ("ESP", "TUNNEL", "yes")
            assert (child["encr-alg"], child["encr-keysize"]) == ("AES_GCM_16", "256")
            assert int(child["packets-in"]) >= 3 and int(child["packets-out"]) >= 3
    except BaseException:
        for peer in (tunnel.peer_a, tunnel.peer_b):
            if peer is not None:
                print(f"--- {peer.charon} log tail ---\n{peer.charon.log_tail(60)}")
        raise
    finally:
        codes = tunnel.stop()
    assert codes == {"a": 0, "b": 0}, f"charon did not stop cleanly: {codes}"
