"""Two IKEv2 engines in memory: establishment, rekeys, collisions, deletes, liveness, loss."""

from __future__ import annotations

import pytest
from harness import Pair, assert_matching_children, site_config

from ikeagent.engine.core import INBOUND_LINGER
from ikeagent.engine.events import IkeSaDown
from ikeagent.engine.ikev2.state import IkeState
from ikeagent.wire import v2 as w


def established(p: Pair) -> None:
    p.start()
    assert len(p.a.up()) == 1 and len(p.b.up()) == 1
    assert assert_matching_children(p.a, p.b) == 1


def ike_states(side) -> list[str]:
    return [s.state for s in side.engine.list_sas()]


@pytest.mark.parametrize(
    "ike,esp",
    [
        ("aes256gcm16-prfsha256-x25519", "aes256gcm16"),
        ("aes256-sha256-modp2048", "aes256-sha256"),
        ("aes128-sha256-ecp256", "aes256gcm16"),
        ("chacha20poly1305-prfsha256-x25519", "aes256-sha256"),
        ("aes128gcm16-prfsha384-ecp384", "chacha20poly1305"),
        ("aes192-sha512-modp3072", "aes128-sha1"),
    ],
)
def test_establish_each_suite(ike: str, esp: str) -> None:
    p = Pair(
        site_config("a", proposals=[ike], esp=[esp]),
        site_config("b", proposals=[ike], esp=[esp], start=False),
    )
    established(p)
    sa = p.a.engine.list_sas()[0]
    assert sa.state == "ESTABLISHED" and sa.children[0].state == "INSTALLED"
    assert sa.local_id == "gw-a.example" and sa.remote_id == "gw-b.example"


def test_responder_prefers_its_own_order() -> None:
    a = site_config("a", proposals=["aes128-sha256-modp2048", "aes256gcm16-prfsha256-x25519"])
    b = site_config(
        "b", proposals=["aes256gcm16-prfsha256-x25519", "aes128-sha256-modp2048"], start=False
    )
    p = Pair(a, b)
    established(p)
    assert p.b.engine.list_sas()[0].encryption == "AES_GCM_16_256"


def test_invalid_ke_payload_retry() -> None:
    # the initiator guesses x25519 first; the responder only takes ecp256
    a = site_config("a", proposals=["aes256gcm16-prfsha256-x25519-ecp256"])
    b = site_config("b", proposals=["aes256gcm16-prfsha256-ecp256"], start=False)
    p = Pair(a, b)
    established(p)
    assert p.a.engine.list_sas()[0].dh == "ECP_256"
    assert p.b.engine.stats().get("invalid_ke") == 1


def test_no_proposal_chosen(caplog: pytest.LogCaptureFixture) -> None:
    a = site_config("a", proposals=["aes128-sha256-modp2048"])
    b = site_config("b", proposals=["aes256gcm16-prfsha384-x25519"], start=False)
    p = Pair(a, b)
    with caplog.at_level("INFO"):
        p.start()
    assert not p.a.up() and not p.b.up()
    assert p.a.downs() and "NO_PROPOSAL_CHOSEN" in p.a.downs()[0].reason
    assert p.b.engine.stats().get("no_proposal_chosen") == 1
    text = caplog.text
    # both offers are logged by the responder
    assert "AES_CBC_128" in text and "aes256gcm16-prfsha384-x25519" in text
    assert not p.a.pairs() and not p.b.pairs()


def test_wrong_psk_gives_authentication_failed_and_no_sa(caplog: pytest.LogCaptureFixture) -> None:
    a = site_config("a")
    b = site_config("b", start=False, psk="another-psk-entirely-0123456789abcdef")
    p = Pair(a, b)
    with caplog.at_level("INFO"):
        p.start()
    assert not p.a.up() and not p.b.up()
    assert not p.a.pairs() and not p.b.pairs()
    assert "AUTHENTICATION_FAILED" in p.a.downs()[0].reason
    assert p.a.engine.list_sas() == [] and p.b.engine.list_sas() == []
    # the responder names the peer; no key material in any log line
    assert "gw-a.example" in caplog.text
    assert "another-psk" not in caplog.text and "lab-psk" not in caplog.text


def test_initiator_retransmits_lost_messages() -> None:
    p = Pair(site_config("a"), site_config("b", start=False))
    dropped = {"n": 0}

    def lose_first_two(src: str, d) -> bool:
        if src == "a" and dropped["n"] < 2:
            dropped["n"] += 1
            return False
        return True

    p.filter = lose_first_two
    p.start()
    assert not p.a.up()
    p.advance(10)
    assert len(p.a.up()) == 1 and len(p.b.up()) == 1
    assert assert_matching_children(p.a, p.b) == 1
    assert p.a.engine.stats()["retransmits"] >= 2


def test_lost_response_is_answered_from_cache() -> None:
    p = Pair(site_config("a"), site_config("b", start=False))
    seen = {"auth": 0}

    def lose_first_auth_response(src: str, d) -> bool:
        hdr = w.Header.from_bytes(d.data)
        if src == "b" and hdr.exchange == w.ExchangeType.IKE_AUTH and seen["auth"] == 0:
            seen["auth"] += 1
            return False
        return True

    p.filter = lose_first_auth_response
    p.start()
    p.advance(5)
    assert len(p.a.up()) == 1 and len(p.b.up()) == 1
    # the responder answered the retransmitted request from its cache: still one child each
    assert assert_matching_children(p.a, p.b) == 1
    assert p.b.engine.stats()["retransmitted_requests"] >= 1


def test_peer_gone_gives_up_after_retries() -> None:
    p = Pair(site_config("a"), site_config("b", start=False))
    p.filter = lambda src, d: False
    p.start()
    p.advance(120)
    assert p.a.downs() and "did not answer" in p.a.downs()[0].reason
    assert p.a.engine.list_sas() == []


@pytest.mark.parametrize("who", ["a", "b"])
def test_child_rekey_each_side(who: str) -> None:
    p = Pair(site_config("a"), site_config("b", start=False))
    established(p)
    before = {sa.inbound.spi for sa in p.a.pairs()}
    p.side(who).engine.rekey(f"to-{'b' if who == 'a' else 'a'}", p.now, ike=False)
    p.run()
    # the replaced pairs stay a moment for what the peer sent on them before it heard
    assert len(p.a.pairs()) == 2 and len(p.b.pairs()) == 2
    assert before <= {sa.inbound.spi for sa in p.a.pairs()}
    p.advance(INBOUND_LINGER)
    assert assert_matching_children(p.a, p.b) == 1
    after = {sa.inbound.spi for sa in p.a.pairs()}
    assert before.isdisjoint(after)
    # the reqid (policy) survived
    assert list(p.a.dp.pairs) == [1] and list(p.b.dp.pairs) == [1]


def second_ike_sa_with_the_same_policy() -> Pair:
    """B holds two IKE SAs of one connection, each with a pair of the same policy: A forgot
    its first one silently and came again without INITIAL_CONTACT (as a restarted peer)."""
    p = Pair(site_config("a"), site_config("b", start=False))
    established(p)
    p.a.engine.is_first_contact = lambda sa: False  # type: ignore[method-assign]
    for sa in list(p.a.engine.sas.values()):
        p.a.engine.destroy_ike(sa, "test: forget silently", p.now)
    p.flush()
    p.a.engine.initiate("to-b", p.now)
    p.run()
    return p


def test_only_a_pair_older_than_another_of_its_reqid_lingers() -> None:
    """The data plane sends on a reqid's newest pair: the newest going (here the second IKE
    SA's, while the first one's stays) leaves at once, or traffic would go on a dead pair."""
    p = second_ike_sa_with_the_same_policy()
    older, newer = sorted(p.b.engine.sas.values(), key=lambda s: s.uid)
    (newest_pair,) = newer.children
    assert len(p.b.pairs()) == 2
    p.b.engine.destroy_ike(newer, "test: the newer goes", p.now)
    p.flush()
    assert newest_pair.spi_in not in {sa.inbound.spi for sa in p.b.pairs()}
    assert len(p.b.pairs()) == 1 and older.children


def test_shutdown_does_not_wait_for_lingering_pairs() -> None:
    p = Pair(site_config("a"), site_config("b", start=False))
    established(p)
    (first,) = p.a.pairs()
    p.a.engine.rekey("to-b", p.now, ike=False)
    p.run()
    assert first.inbound.spi in {sa.inbound.spi for sa in p.a.pairs()}
    p.a.engine.shutdown(p.now)
    p.flush()
    assert first.inbound.spi not in {sa.inbound.spi for sa in p.a.pairs()}


@pytest.mark.parametrize("who", ["a", "b"])
def test_ike_rekey_each_side_keeps_children(who: str) -> None:
    p = Pair(site_config("a"), site_config("b", start=False))
    established(p)
    old_spis = {(s.spi_i, s.spi_r) for s in p.a.engine.list_sas()}
    pairs_before = {sa.inbound.spi for sa in p.a.pairs()}
    p.side(who).engine.rekey(f"to-{'b' if who == 'a' else 'a'}", p.now, children=False)
    p.run()
    sas_a, sas_b = p.a.engine.list_sas(), p.b.engine.list_sas()
    assert len(sas_a) == 1 and len(sas_b) == 1
    assert {(s.spi_i, s.spi_r) for s in sas_a}.isdisjoint(old_spis)
    assert sas_a[0].state == "ESTABLISHED" and len(sas_a[0].children) == 1
    assert {sa.inbound.spi for sa in p.a.pairs()} == pairs_before
    # the new IKE SA works: a child rekey over it succeeds
    p.a.engine.rekey("to-b", p.now, ike=False)
    p.run()
    p.advance(INBOUND_LINGER)
    assert assert_matching_children(p.a, p.b) == 1
    assert not p.a.downs() and not p.b.downs()


def test_simultaneous_child_rekey_leaves_one_pair() -> None:
    p = Pair(site_config("a"), site_config("b", start=False))
    established(p)
    p.a.engine.rekey("to-b", p.now, ike=False)
    p.b.engine.rekey("to-a", p.now, ike=False)
    p.run()
    p.advance(40)
    assert assert_matching_children(p.a, p.b) == 1
    assert [c.state for c in p.a.engine.list_sas()[0].children] == ["INSTALLED"]


def _sending_on(dp) -> set[int]:  # type: ignore[no-untyped-def]
    """The outbound SPIs traffic would use, as the kernel picks them: per reqid the newest
    pair whose outbound SA is installed (a rekey responder's is held back until activated)."""
    out = set()
    for pairs in dp.pairs.values():
        active = [sa for sa in pairs if sa.outbound_active]
        if active:
            out.add(active[-1].outbound.spi)
    return out


def _receiving_on(dp) -> set[int]:  # type: ignore[no-untyped-def]
    return {sa.inbound.spi for pairs in dp.pairs.values() for sa in pairs}


@pytest.mark.parametrize("seed", range(1, 7))
def test_simultaneous_child_rekey_never_sends_on_a_pair_the_peer_dropped(seed: int) -> None:
    """Both ends rekey the same pair at once (as when the kernel's byte limit fires on both):
    after every message, each end sends on a pair the other still receives on. The end whose
    pair lost the collision never sends on it (it goes at once), and moves to the winner's
    pair when the peer deletes the old one."""
    p = Pair(site_config("a"), site_config("b", start=False), seed=seed)
    established(p)
    p.a.engine.rekey("to-b", p.now, ike=False)
    p.b.engine.rekey("to-a", p.now, ike=False)
    steps = 0
    while p.step():
        steps += 1
        for me, peer in ((p.a, p.b), (p.b, p.a)):
            sending = _sending_on(me.dp)
            assert sending and sending <= _receiving_on(peer.dp), (steps, me.name)
    p.advance(40)
    assert assert_matching_children(p.a, p.b) == 1
    for me, peer in ((p.a, p.b), (p.b, p.a)):
        assert _sending_on(me.dp) <= _receiving_on(peer.dp)


def test_simultaneous_ike_rekey_leaves_one_ike_sa() -> None:
    p = Pair(site_config("a"), site_config("b", start=False))
    established(p)
    p.a.engine.rekey("to-b", p.now, children=False)
    p.b.engine.rekey("to-a", p.now, children=False)
    p.run()
    p.advance(40)
    sas_a, sas_b = p.a.engine.list_sas(), p.b.engine.list_sas()
    assert [s.state for s in sas_a] == ["ESTABLISHED"] and [s.state for s in sas_b] == [
        "ESTABLISHED"
    ]
    assert (sas_a[0].spi_i, sas_a[0].spi_r) == (sas_b[0].spi_i, sas_b[0].spi_r)
    assert len(sas_a[0].children) == 1 and len(sas_b[0].children) == 1
    assert assert_matching_children(p.a, p.b) == 1
    assert not [e for e in p.a.events + p.b.events if isinstance(e, IkeSaDown)]


@pytest.mark.parametrize("who", ["a", "b"])
def test_delete_from_each_side_leaves_nothing(who: str) -> None:
    p = Pair(site_config("a"), site_config("b", start=False))
    established(p)
    p.side(who).engine.terminate(f"to-{'b' if who == 'a' else 'a'}", p.now)
    p.run()
    assert p.a.engine.list_sas() == [] and p.b.engine.list_sas() == []
    assert p.a.pairs() == [] and p.b.pairs() == []
    assert p.a.dp.policies == {} and p.b.dp.policies == {}


def test_child_delete_keeps_ike_sa() -> None:
    p = Pair(site_config("a"), site_config("b", start=False))
    established(p)
    sa = next(iter(p.a.engine.sas.values()))
    p.a.engine.delete_children(sa, list(sa.children), "test", p.now)
    p.run()
    assert p.a.pairs() == [] and p.b.pairs() == []
    assert ike_states(p.a) == ["ESTABLISHED"] and ike_states(p.b) == ["ESTABLISHED"]
    # and it comes back with a CREATE_CHILD_SA only
    p.a.engine.initiate("to-b", p.now)
    p.run()
    assert assert_matching_children(p.a, p.b) == 1
    assert len(p.a.up()) == 1


def test_dpd_detects_dead_peer() -> None:
    p = Pair(site_config("a", conn={"dpd_delay": "10s"}), site_config("b", start=False))
    established(p)
    p.advance(30)
    assert ike_states(p.a) == ["ESTABLISHED"]  # liveness checks answered
    p.filter = lambda src, d: False
    p.advance(200)
    assert p.a.engine.list_sas() == []
    assert "dead peer" in p.a.downs()[0].reason
    assert p.a.pairs() == []


def test_scheduled_rekeys_under_time() -> None:
    a = site_config("a", conn={"rekey_time": "60s"}, child={"rekey_time": "20s"})
    b = site_config("b", start=False, conn={"rekey_time": "60s"}, child={"rekey_time": "20s"})
    p = Pair(a, b)
    established(p)
    installs_before = len(p.a.dp.log)
    p.advance(200)
    assert ike_states(p.a) == ["ESTABLISHED"] and ike_states(p.b) == ["ESTABLISHED"]
    assert assert_matching_children(p.a, p.b) == 1
    assert len(p.a.dp.log) > installs_before + 10
    assert not p.a.downs() and not p.b.downs()


def test_fragmentation_of_large_messages() -> None:
    many = [f"10.1.{i}.0/24" for i in range(120)]
    a = site_config("a", agent={"fragment_size": 576}, child={"local_ts": many})
    b = site_config("b", start=False, agent={"fragment_size": 576}, child={"remote_ts": many})
    p = Pair(a, b)
    established(p)
    sizes = [len(d.data) for _, d in p.wire]
    assert max(sizes) <= 576
    frags = [
        d for _, d in p.wire if w.Message.from_bytes(d.data).payloads[-1].TYPE == w.PayloadType.SKF
    ]
    assert len(frags) >= 4
    sa = p.b.engine.list_sas()[0]
    assert len(sa.children[0].remote_ts) >= 1


def test_ts_narrowing_by_responder() -> None:
    a = site_config("a", child={"local_ts": ["10.1.0.0/16"], "remote_ts": ["10.2.0.0/16"]})
    b = site_config("b", start=False)  # 10.2.0.0/24 === 10.1.0.0/24
    p = Pair(a, b)
    established(p)
    c = p.a.engine.list_sas()[0].children[0]
    assert c.local_ts == ["10.1.0.0/24"] and c.remote_ts == ["10.2.0.0/24"]


def test_ts_unacceptable_keeps_ike_sa() -> None:
    a = site_config("a", child={"remote_ts": ["10.9.0.0/24"]})
    b = site_config("b", start=False)
    p = Pair(a, b)
    p.start()
    assert len(p.a.up()) == 1 and p.a.pairs() == [] and p.b.pairs() == []
    assert ike_states(p.a) == ["ESTABLISHED"]


def test_pfs_child_rekey() -> None:
    a = site_config("a", esp=["aes256gcm16-x25519"])
    b = site_config("b", start=False, esp=["aes256gcm16-x25519"])
    p = Pair(a, b)
    established(p)
    p.b.engine.rekey("to-a", p.now, ike=False)
    p.run()
    p.advance(INBOUND_LINGER)
    assert assert_matching_children(p.a, p.b) == 1
    assert p.a.engine.list_sas()[0].children[0].dh == "CURVE_25519"


def test_forced_encapsulation_floats_to_4500() -> None:
    p = Pair(site_config("a"), site_config("b", start=False), force_encap=True)
    established(p)
    sa = p.a.engine.list_sas()[0]
    assert sa.local_port == 4500 and sa.remote_port == 4500
    assert all(pair.encap == (4500, 4500) for pair in p.a.pairs() + p.b.pairs())


def test_cookie_under_half_open_flood() -> None:
    p = Pair(site_config("a"), site_config("b", start=False, agent={"cookie_threshold": 0}))
    established(p)
    assert p.b.engine.stats().get("cookie_sent") == 1


def test_garbage_is_dropped_and_counted() -> None:
    import random

    p = Pair(site_config("a"), site_config("b", start=False))
    established(p)
    rng = random.Random(7)
    eng = p.b.engine
    samples = [b"", b"\x00" * 10, b"\xff" * 70000]
    good = [d.data for _, d in p.wire]
    for _ in range(300):
        d = bytearray(rng.choice(good))
        for _ in range(rng.randint(1, 4)):
            d[rng.randrange(len(d))] = rng.randrange(256)
        samples.append(bytes(d))
        samples.append(bytes(d[: rng.randrange(len(d))]))
    for s in samples:
        eng.receive_datagram(s, ("192.0.2.2", 500), ("192.0.2.1", 500), p.now)
    stats = eng.stats()
    assert stats.get("truncated", 0) + stats.get("malformed", 0) + stats.get("oversized", 0) > 0
    # still serving: a rekey after the noise works; mutated but well-formed IKE_SA_INIT
    # requests only left half-open SAs, which time out
    p.run()
    p.a.engine.rekey("to-b", p.now)
    p.run()
    p.advance(40)
    assert ike_states(p.b) == ["ESTABLISHED"]
    assert assert_matching_children(p.a, p.b) == 1


def test_state_table_rejects_illegal_transition() -> None:
    from ikeagent.engine.ikev2.state import IllegalTransition, check_ike

    with pytest.raises(IllegalTransition):
        check_ike(IkeState.DESTROYED, IkeState.ESTABLISHED)


# ---- reorderings and peers that behave like charon ------------------------------------------


def _take(p: Pair) -> list:
    p.flush()
    out = list(p.in_flight)
    p.in_flight.clear()
    return out


def _deliver(p: Pair, item) -> None:
    p.in_flight.insert(0, item)
    p.step()


@pytest.mark.parametrize("ike", [False, True], ids=["child", "ike"])
@pytest.mark.parametrize("seed", range(1, 9))
def test_rekey_collision_with_delete_overtaking_the_response(seed: int, ike: bool) -> None:
    """Both rekey at once; the side that concludes first sends its Delete, which overtakes its
    answer to the other's rekey. Whoever wins, one IKE SA and one child pair must remain."""
    p = Pair(site_config("a"), site_config("b", start=False), seed=seed)
    established(p)
    p.a.engine.rekey("to-b", p.now, ike=ike, children=not ike)
    p.b.engine.rekey("to-a", p.now, ike=ike, children=not ike)
    for r in _take(p):
        _deliver(p, r)
    resps = _take(p)
    to_a = next(r for r in resps if r[0] == "b")
    to_b = next(r for r in resps if r[0] == "a")
    _deliver(p, to_b)
    for d in _take(p):
        _deliver(p, d)
    _deliver(p, to_a)
    p.run()
    p.advance(60)
    assert assert_matching_children(p.a, p.b) == 1
    sas_a, sas_b = p.a.engine.list_sas(), p.b.engine.list_sas()
    assert [s.state for s in sas_a] == ["ESTABLISHED"] and [s.state for s in sas_b] == [
        "ESTABLISHED"
    ]
    assert (sas_a[0].spi_i, sas_a[0].spi_r) == (sas_b[0].spi_i, sas_b[0].spi_r)


def test_responder_answers_where_the_request_came_from() -> None:
    """charon floats to 4500 after IKE_SA_INIT even without a NAT (MOBIKE): our answers follow."""
    p = Pair(site_config("a"), site_config("b", start=False))
    ea = p.a.engine
    real = type(ea).start_auth

    def floating(self, sa, now):
        if self is ea:
            sa.local, sa.remote = (sa.local[0], 4500), (sa.remote[0], 4500)
        return real(self, sa, now)

    type(ea).start_auth = floating
    try:
        established(p)
    finally:
        type(ea).start_auth = real
    auth_answers = [
        d
        for src, d in p.wire
        if src == "b" and w.Header.from_bytes(d.data).exchange == w.ExchangeType.IKE_AUTH
    ]
    assert auth_answers and all(d.local[1] == 4500 and d.remote[1] == 4500 for d in auth_answers)


def test_initiator_without_local_address_encapsulates_consistently() -> None:
    a = site_config("a", conn={"local_addrs": []})
    a["connections"]["to-b"]["local"] = {"auth": "psk"}
    b = site_config("b", start=False)
    b["connections"]["to-a"]["remote"] = {"auth": "psk"}
    for cfg in (a, b):
        cfg["secrets"] = {"ike-any": {"id": [], "secret": "x" * 40}}
    p = Pair(a, b)
    established(p)
    assert all(pair.encap == (4500, 4500) for pair in p.a.pairs() + p.b.pairs())
    assert p.a.pairs()[0].local_addr == "192.0.2.1"


def test_peer_rekeys_ike_while_our_child_exchange_is_in_flight() -> None:
    p = Pair(site_config("a"), site_config("b", start=False))
    established(p)
    p.a.engine.rekey("to-b", p.now, ike=False)  # a: child rekey in flight
    p.b.engine.rekey("to-a", p.now, children=False)  # b: IKE rekey
    p.run()
    p.advance(40)
    assert assert_matching_children(p.a, p.b) == 1
    assert [s.state for s in p.a.engine.list_sas()] == ["ESTABLISHED"]
    assert [s.state for s in p.b.engine.list_sas()] == ["ESTABLISHED"]


def test_half_open_table_empties_after_nat_t_float() -> None:
    """The responder forgets half-open SAs once established, also after the peer floated to
    4500; otherwise every later IKE_SA_INIT would be answered with a COOKIE."""
    p = Pair(site_config("a"), site_config("b", start=False), force_encap=True)
    established(p)
    for _ in range(40):
        p.a.engine.terminate("to-b", p.now)
        p.run()
        p.a.engine.initiate("to-b", p.now)
        p.run()
    assert p.b.engine.half_open == {}
    assert p.b.engine.stats().get("cookie_sent", 0) == 0
    assert len(p.b.up()) == 41


def test_identical_policies_share_a_reqid_and_policy_goes_with_the_last() -> None:
    """Two IKE SAs of one connection with the same child policy share the reqid (as strongSwan
    does); the policy is removed only when the last pair under it goes."""
    p = second_ike_sa_with_the_same_policy()
    first = min(p.b.engine.sas.values(), key=lambda s: s.uid)
    b_pairs = p.b.pairs()
    assert len(b_pairs) == 2 and len({pair.reqid for pair in b_pairs}) == 1
    p.b.engine.destroy_ike(first, "test: first goes", p.now)
    p.flush()
    assert len(p.b.pairs()) == 2  # a newer pair holds the reqid: the first lingers a moment
    p.advance(INBOUND_LINGER)
    assert len(p.b.pairs()) == 1 and p.b.dp.policies
    for sa in list(p.b.engine.sas.values()):
        p.b.engine.destroy_ike(sa, "test: last goes", p.now)
    p.flush()
    assert p.b.pairs() == [] and p.b.dp.policies == {}


def test_reload_applies_only_the_differences() -> None:
    from ikeagent.config.schema import parse_config

    a_cfg = site_config("a")
    p = Pair(a_cfg, site_config("b", start=False))
    established(p)
    before = [(s.uid, s.spi_i) for s in p.a.engine.list_sas()]
    # an added connection (to nowhere reachable) leaves the running SA alone
    added = dict(a_cfg, connections=dict(a_cfg["connections"]))
    extra = dict(a_cfg["connections"]["to-b"], remote_addrs=["192.0.2.99"])
    extra["children"] = {"net": dict(extra["children"]["net"], start_action="none")}
    added["connections"]["spare"] = extra
    p.a.engine.load_config(parse_config(added), p.now)
    p.run()
    assert [(s.uid, s.spi_i) for s in p.a.engine.list_sas()] == before
    # a changed connection is torn down and, with start_action=start, comes back
    changed = site_config("a", esp=["aes256gcm16", "aes128gcm16"])
    p.a.engine.load_config(parse_config(changed), p.now)
    p.run()
    after = p.a.engine.list_sas()
    assert len(after) == 1 and after[0].uid not in {uid for uid, _ in before}
    assert after[0].state == "ESTABLISHED" and after[0].children[0].state == "INSTALLED"
    assert assert_matching_children(p.a, p.b) == 1


def test_volume_lifetime_events_rekey_then_delete() -> None:
    from ikeagent.dataplane.base import ExpireKind, SaExpired

    p = Pair(site_config("a"), site_config("b", start=False))
    established(p)
    [pair] = p.a.pairs()
    p.a.engine.handle_dataplane_event(
        SaExpired(pair.reqid, pair.outbound.spi, ExpireKind.SOFT), p.now
    )
    p.run()
    p.advance(INBOUND_LINGER)
    [new] = p.a.pairs()
    assert new.inbound.spi != pair.inbound.spi  # soft limit: rekeyed
    assert assert_matching_children(p.a, p.b) == 1
    p.a.engine.handle_dataplane_event(SaExpired(new.reqid, new.inbound.spi, ExpireKind.HARD), p.now)
    p.run()
    assert p.a.pairs() == [] and p.b.pairs() == []  # hard limit: deleted on both sides
    assert [s.state for s in p.a.engine.list_sas()] == ["ESTABLISHED"]


@pytest.mark.parametrize(
    "allowed,ok",
    [
        (["192.0.2.1"], True),
        (["192.0.2.0/24"], True),
        (["192.0.2.0-192.0.2.9"], True),
        (["192.0.2.5-192.0.2.9"], False),
        (["%any"], True),
        (["198.18.0.1", "2001:db8::/32"], False),
    ],
)
def test_responder_matches_remote_addrs_forms(allowed: list[str], ok: bool) -> None:
    b = site_config("b", start=False, conn={"remote_addrs": allowed})
    p = Pair(site_config("a"), b)
    p.start()
    assert bool(p.b.up()) is ok


@pytest.mark.parametrize("delivered", [0, 1, 2, 3])
def test_up_while_the_child_is_on_its_way_gives_one_child(delivered: int) -> None:
    """A reload starts the connection and an ``up`` follows before the Child SA exists (while
    IKE_SA_INIT, IKE_AUTH or its answer is in flight): still one Child SA, not two."""
    p = Pair(site_config("a"), site_config("b", start=False))
    p.a.engine.start(p.now)
    for _ in range(delivered):
        p.step()
    p.a.engine.initiate("to-b", p.now)
    p.run()
    assert assert_matching_children(p.a, p.b) == 1
    [sa] = p.a.engine.list_sas()
    assert [c.state for c in sa.children] == ["INSTALLED"]
