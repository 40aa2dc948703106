"""The harness proven for IKEv1, charon to charon: Main Mode and Aggressive Mode with a PSK,
Quick Mode with and without PFS, ESP in UDP over kernel-libipsec, then a Quick Mode rekey and a
Phase 2 delete started by charon (the same checks the agent's IKEv1 tests use).

If this fails, the lab is broken (or charon changed), not the agent."""

from __future__ import annotations

import pytest
from tunnels import installed_pairs_charon, wait_for

from ikelab_testing.checks import assert_blocked, assert_encrypted, assert_passes
from ikelab_testing.peers import CharonPeer, Tunnel, TunnelSpec, charon_peer

pytestmark = [pytest.mark.netns, pytest.mark.interop]

# (IKE proposal, ESP proposal, charon's names: IKE encr, keysize, integ, prf, dh; ESP dh or None)
SUITES = [
    (
        "aes256-sha256-modp2048",
        "aes256-sha256",
        ("AES_CBC", "256", "HMAC_SHA2_256_128", "PRF_HMAC_SHA2_256", "MODP_2048"),
        None,
    ),
    (
        "aes128-sha1-modp2048",
        "aes128-sha1-modp2048",
        ("AES_CBC", "128", "HMAC_SHA1_96", "PRF_HMAC_SHA1", "MODP_2048"),
        "MODP_2048",
    ),
]
# what charon logs for the Phase 1 exchange it generates
EXCHANGE_LOG = {"main": "generating ID_PROT request", "aggressive": "generating AGGRESSIVE request"}


def pairs_of(peer: CharonPeer) -> set[tuple[str, str]]:
    return installed_pairs_charon(peer)


def swapped(pairs: set[tuple[str, str]]) -> set[tuple[str, str]]:
    return {(b, a) for a, b in pairs}


@pytest.mark.parametrize("mode", ["main", "aggressive"])
@pytest.mark.parametrize("ike,esp,names,esp_dh", SUITES, ids=[f"{s[0]}/{s[1]}" for s in SUITES])
def test_charon_to_charon_ikev1(
    topology, capture_factory, mode: str, ike: str, esp: str, names, esp_dh
) -> None:
    spec = TunnelSpec(
        version=1, aggressive=mode == "aggressive", proposals=(ike,), esp_proposals=(esp,)
    )
    cap = capture_factory(topology.gw_a, "wan0")
    tunnel = Tunnel(topology, charon_peer, charon_peer, spec).start()
    a, b = tunnel.peer_a, tunnel.peer_b
    try:
        assert_blocked(topology)
        tunnel.up(timeout=15)
        passed = assert_passes(topology, count=3)
        back = topology.host_b.ping(topology.spec.host_a_addr, count=3)
        assert passed.received == 3 and back.received == 3, (passed, back)

        summary = cap.summary()
        assert_encrypted(summary, topology, udp=True)
        assert summary.ike >= 2, f"no IKE exchange seen on the underlay:\n{summary}"
        assert EXCHANGE_LOG[mode] in a.charon.log_text()

        encr, keysize, integ, prf, dh = names
        for peer, other in ((a, "b"), (b, "a")):
            ike_sa = peer.charon.list_sas()[f"site-{other}"]
            assert (ike_sa["state"], ike_sa["version"]) == ("ESTABLISHED", "1")
            assert (ike_sa["encr-alg"], ike_sa["encr-keysize"]) == (encr, keysize)
            assert (ike_sa["integ-alg"], ike_sa["prf-alg"], ike_sa["dh-group"]) == (integ, prf, dh)
            assert ike_sa["nat-any"] == "yes"  # libipsec forces UDP encapsulation
            [child] = ike_sa["child-sas"].values()
            assert (child["name"], child["state"], child["encap"]) == ("net", "INSTALLED", "yes")
            assert (child["protocol"], child["mode"]) == ("ESP", "TUNNEL")
            assert (child["encr-alg"], child["encr-keysize"]) == (encr, keysize)
            assert child["integ-alg"] == integ
            assert child.get("dh-group") == esp_dh
        assert pairs_of(a) and pairs_of(a) == swapped(pairs_of(b))
    except BaseException:
        for peer in (a, b):
            print(f"--- {peer.charon} log tail ---\n{peer.charon.log_tail(60)}")
        raise
    finally:
        codes = tunnel.stop()
    assert codes == {"a": 0, "b": 0}, f"charon did not stop cleanly: {codes}"


@pytest.mark.parametrize("mode", ["main", "aggressive"])
def test_charon_to_charon_ikev1_quick_mode_rekey_and_delete(topology, mode: str) -> None:
    spec = TunnelSpec(
        version=1,
        aggressive=mode == "aggressive",
        proposals=("aes256-sha256-modp2048",),
        esp_proposals=("aes128-sha1-modp2048",),
    )
    tunnel = Tunnel(topology, charon_peer, charon_peer, spec).start()
    a, b = tunnel.peer_a, tunnel.peer_b
    try:
        tunnel.up(timeout=15)
        for rekeyer in (a, b):
            before = pairs_of(a)
            ike_before = {ike["initiator-spi"] for ike in a.charon.list_sas().values()}
            rekeyer.charon.rekey(child=spec.child)

            def rekeyed(before=before) -> bool:
                now = pairs_of(a)
                return len(now) == 1 and now.isdisjoint(before) and now == swapped(pairs_of(b))

            wait_for(rekeyed, 10, f"Quick Mode rekey by {rekeyer.end.site.name}")
            # the old SAs are gone and the ISAKMP SA is the same one
            assert len(a.charon.children()) == 1 and len(b.charon.children()) == 1
            assert {ike["initiator-spi"] for ike in a.charon.list_sas().values()} == ike_before
            assert_passes(topology, count=2)

        b.charon.terminate(child=spec.child)
        wait_for(lambda: not a.charon.children() and not b.charon.children(), 10, "no CHILD_SA")
        for peer in (a, b):
            [ike_sa] = peer.charon.list_sas().values()
            assert ike_sa["state"] == "ESTABLISHED"  # the ISAKMP SA stays
        assert_blocked(topology)
    except BaseException:
        for peer in (a, b):
            print(f"--- {peer.charon} log tail ---\n{peer.charon.log_tail(60)}")
        raise
    finally:
        tunnel.stop()
