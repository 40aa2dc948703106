"""Two IKEv1 engines in memory: Main and Aggressive Mode, Quick Mode, Informational (Delete, DPD),
NAT-T, loss, duplicates, replays, rekeys and Phase 1 replacement (RFC 2408/2409/3706/3947)."""

from __future__ import annotations

import random
from typing import Any

import pytest
from harness import NETS, PSK, Pair, assert_matching_children, site_config

from ikeagent.config.errors import ConfigError
from ikeagent.config.schema import parse_config
from ikeagent.crypto import suites
from ikeagent.wire import v1 as w1

V1: dict[str, Any] = {"version": 1}
AGGR: dict[str, Any] = {"version": 1, "aggressive": True, "allow_aggressive_psk": True}
MODES = {"main": V1, "aggressive": AGGR}
OTHER_PSK = "another-psk-entirely-0123456789abcdef"

# messages of each Phase 1 exchange; Quick Mode adds three
PHASE1_LEN = {"main": 6, "aggressive": 3}
ET = w1.ExchangeType
IKE = "aes256-sha256-modp2048"
ESP = "aes256-sha256"


def v1_pair(
    mode: str = "main",
    *,
    a: dict[str, Any] | None = None,
    b: dict[str, Any] | None = None,
    a_conn: dict[str, Any] | None = None,
    b_conn: dict[str, Any] | None = None,
    force_encap: bool = False,
    seed: int = 1,
) -> Pair:
    conn = MODES[mode]
    a = {"proposals": [IKE], "esp": [ESP], **(a or {})}
    b = {"proposals": [IKE], "esp": [ESP], **(b or {})}
    cfg_a = site_config("a", conn={**conn, **(a_conn or {})}, **a)
    cfg_b = site_config("b", conn={**conn, **(b_conn or {})}, start=False, **b)
    return Pair(cfg_a, cfg_b, force_encap=force_encap, seed=seed)


def established(p: Pair) -> None:
    p.start()
    assert len(p.a.up()) == 1 and len(p.b.up()) == 1
    assert assert_matching_children(p.a, p.b) == 1


def states(side) -> list[str]:
    return [s.state for s in side.engine.list_sas()]


def spis_in(side) -> set[int]:
    return {pair.inbound.spi for pair in side.pairs()}


def header(d) -> w1.Header:
    return w1.Header.from_bytes(d.data)


def sent_by(p: Pair, who: str) -> list:
    return [d for src, d in p.wire if src == who]


def deliver(p: Pair, src: str, data: bytes) -> None:
    """Hand ``data`` to the other side as if ``src`` had sent it again, then settle."""
    dst = p.other(src)
    dst.engine.receive_datagram(data, (dst.addr, 500), (p.side(src).addr, 500), p.now)
    p.run()


def drop_nth(n: int, dropped: list):  # noqa: ANN201 - a harness Filter
    """A filter losing the ``n``th datagram sent (0-based, both sides counted) once."""
    seen = {"n": 0}

    def f(src: str, d) -> bool:
        i = seen["n"]
        seen["n"] += 1
        if i == n:
            dropped.append((src, d))
            return False
        return True

    return f


# ---- establishment -------------------------------------------------------------------------------

SUITES = [
    (
        "aes256-sha256-modp2048",
        ("AES_CBC_256", "HMAC_SHA2_256_128", "PRF_HMAC_SHA2_256", "MODP_2048"),
        "aes256-sha256",
        ("AES_CBC_256", "HMAC_SHA2_256_128", None),
    ),
    (
        "aes128-sha1-modp2048",
        ("AES_CBC_128", "HMAC_SHA1_96", "PRF_HMAC_SHA1", "MODP_2048"),
        "aes128-sha1-modp2048",
        ("AES_CBC_128", "HMAC_SHA1_96", "MODP_2048"),
    ),
    (
        "aes256-sha384-ecp384",
        ("AES_CBC_256", "HMAC_SHA2_384_192", "PRF_HMAC_SHA2_384", "ECP_384"),
        "aes256gcm16",
        ("AES_GCM_16_256", None, None),
    ),
    (
        "aes128-sha256-x25519",
        ("AES_CBC_128", "HMAC_SHA2_256_128", "PRF_HMAC_SHA2_256", "CURVE_25519"),
        "aes256-sha256",
        ("AES_CBC_256", "HMAC_SHA2_256_128", None),
    ),
]


@pytest.mark.parametrize("encap", [False, True], ids=["plain", "encap"])
@pytest.mark.parametrize("mode", ["main", "aggressive"])
@pytest.mark.parametrize("ike,ike_names,esp,esp_names", SUITES, ids=[s[0] for s in SUITES])
def test_establish(
    mode: str, encap: bool, ike: str, ike_names: tuple, esp: str, esp_names: tuple
) -> None:
    suite = {"proposals": [ike], "esp": [esp]}
    p = v1_pair(mode, a=suite, b=suite, force_encap=encap)
    established(p)
    # Phase 1 and one Quick Mode, nothing more
    assert len(p.wire) == PHASE1_LEN[mode] + 3
    for side, role in ((p.a, "initiator"), (p.b, "responder")):
        [sa] = side.engine.list_sas()
        assert (sa.version, sa.mode, sa.role, sa.state) == (1, mode, role, "ESTABLISHED")
        assert (sa.encryption, sa.integrity, sa.prf, sa.dh) == ike_names
        assert sa.local_id == f"gw-{side.name}.example"
        assert sa.remote_id == f"gw-{p.other(side.name).name}.example"
        [child] = sa.children
        assert (child.encryption, child.integrity, child.dh) == esp_names
        assert child.state == "INSTALLED" and child.encap is encap
        peer = p.other(side.name).name
        assert child.local_ts[0].startswith(NETS[side.name])
        assert child.remote_ts[0].startswith(NETS[peer])
        ports = (4500, 4500) if encap else (500, 500)
        assert (sa.local_port, sa.remote_port) == ports
    sa_a, sa_b = p.a.engine.list_sas()[0], p.b.engine.list_sas()[0]
    assert (sa_a.spi_i, sa_a.spi_r) == (sa_b.spi_i, sa_b.spi_r) and sa_a.spi_r != 0
    assert sa_a.children[0].spi_in == sa_b.children[0].spi_out
    assert sa_a.children[0].spi_out == sa_b.children[0].spi_in
    for pair in p.a.pairs() + p.b.pairs():
        assert pair.encap == ((4500, 4500) if encap else None)
    if encap:
        # everything after the first exchange of messages floated to port 4500
        late = [d for _, d in p.wire[PHASE1_LEN[mode] - 1 :]]
        assert all(d.remote[1] == 4500 and d.local[1] == 4500 for d in late)
    else:
        assert all(d.remote[1] == 500 for _, d in p.wire)
    assert p.a.engine.stats().get("ikev1_retransmits", 0) == 0
    assert p.b.engine.stats().get("ikev1_retransmitted_requests", 0) == 0


# ---- proposals -------------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["main", "aggressive"])
def test_responder_picks_from_the_offer_by_its_own_order(mode: str) -> None:
    # the initiator's first Phase 1 and Phase 2 offers are not acceptable to the responder; of
    # the rest, the responder takes the one it prefers (its own configured order), as
    # strongSwan and our IKEv2 responder do
    a = {
        "proposals": ["aes256-sha512-modp3072", "aes128-sha1-modp2048", "aes256-sha256-modp2048"],
        "esp": ["aes192-sha512", "aes128-sha1", "aes256gcm16"],
    }
    b = {
        "proposals": ["aes256-sha256-modp2048", "aes128-sha1-modp2048"],
        "esp": ["aes256gcm16", "aes128-sha1"],
    }
    if mode == "aggressive":
        # one DH group in Aggressive Mode (the KE goes with the offer)
        a["proposals"] = ["aes256-sha512-modp2048", *a["proposals"][1:]]
    p = v1_pair(mode, a=a, b=b)
    established(p)
    for side in (p.a, p.b):
        [sa] = side.engine.list_sas()
        assert (sa.encryption, sa.prf, sa.dh) == ("AES_CBC_256", "PRF_HMAC_SHA2_256", "MODP_2048")
        [child] = sa.children
        assert (child.encryption, child.integrity) == ("AES_GCM_16_256", None)


@pytest.mark.parametrize("mode", ["main", "aggressive"])
def test_phase1_no_proposal_chosen(mode: str, caplog: pytest.LogCaptureFixture) -> None:
    p = v1_pair(
        mode, a={"proposals": ["aes128-sha1-modp2048"]}, b={"proposals": ["aes256-sha384-ecp384"]}
    )
    with caplog.at_level("INFO"):
        p.start()
    assert not p.a.up() and not p.b.up()
    assert p.a.engine.list_sas() == [] and p.b.engine.list_sas() == []
    assert not p.a.pairs() and not p.b.pairs()
    # the responder's plain notify reached the initiator, which gave up at once
    assert "NO_PROPOSAL_CHOSEN" in p.a.downs()[0].reason
    assert p.b.engine.stats().get("ikev1_no_proposal_chosen") == 1
    assert len(sent_by(p, "a")) == 1 and len(sent_by(p, "b")) == 1
    [notify] = sent_by(p, "b")
    assert header(notify).exchange == ET.INFORMATIONAL and not header(notify).encrypted
    assert p.a.engine.get_timer() is None and p.b.engine.get_timer() is None
    p.advance(30)
    assert len(p.wire) == 2 and p.a.engine.stats().get("ikev1_retransmits", 0) == 0
    # the responder says what was offered and what it accepts
    [refusal] = [r.getMessage() for r in caplog.records if "NO_PROPOSAL_CHOSEN: peer" in r.message]
    assert "192.0.2.1" in refusal and "aes128-prfsha1-modp2048" in refusal
    assert "ecp384" in refusal.split("we accept")[1]


def test_phase2_no_proposal_chosen_keeps_the_isakmp_sa() -> None:
    p = v1_pair(a={"esp": ["aes128-sha1"]}, b={"esp": ["aes256gcm16"]})
    p.start()
    assert len(p.a.up()) == 1 and len(p.b.up()) == 1
    assert states(p.a) == ["ESTABLISHED"] and states(p.b) == ["ESTABLISHED"]
    assert p.a.pairs() == [] and p.b.pairs() == []
    assert p.b.engine.stats().get("ikev1_quick_mode_refused") == 1
    # the refusal (an encrypted Informational) ended the initiator's Quick Mode without resends
    assert p.a.engine.stats().get("ikev1_child_failures") == 1
    p.advance(10)
    assert p.a.engine.stats().get("ikev1_retransmits", 0) == 0
    assert [s.children for s in p.a.engine.list_sas()] == [[]]
    assert states(p.a) == ["ESTABLISHED"] and states(p.b) == ["ESTABLISHED"]
    assert not p.a.downs() and not p.b.downs()


# ---- authentication -------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["main", "aggressive"])
def test_wrong_psk_gives_no_sa(mode: str, caplog: pytest.LogCaptureFixture) -> None:
    p = v1_pair(mode, b={"psk": OTHER_PSK})
    with caplog.at_level("DEBUG"):
        p.start()
        p.advance(120)
    assert not p.a.up() and not p.b.up()
    assert p.a.engine.list_sas() == [] and p.b.engine.list_sas() == []
    assert not p.a.pairs() and not p.b.pairs()
    assert p.a.downs()
    lines = [r.getMessage() for r in caplog.records]
    # the side that found the keys differ names its peer
    assert any("AUTHENTICATION_FAILED" in m and "192.0.2." in m for m in lines)
    if mode == "main":
        # the responder cannot decrypt the initiator's identity: it names the address
        assert any("AUTHENTICATION_FAILED" in m and "192.0.2.1" in m for m in lines)
        assert any("pre-shared key" in m and "gw-b.example" in m for m in lines)
    else:
        # the initiator finds the responder's HASH_R wrong and names the responder's identity
        assert any("AUTHENTICATION_FAILED" in m and "gw-b.example" in m for m in lines)
    for secret in (PSK, OTHER_PSK):
        for form in (secret, secret.encode().hex(), secret[:12]):
            assert form not in caplog.text


# ---- loss, duplicates, silence -------------------------------------------------------------------

MODES_ET = {"main": ET.IDENTITY_PROTECTION, "aggressive": ET.AGGRESSIVE}
# who sends each message: Phase 1, then Quick Mode (HASH(1), HASH(2), HASH(3))
SENDERS = {"main": "ababab" + "aba", "aggressive": "aba" + "aba"}
LOSS_CASES = [("main", n) for n in range(9)] + [("aggressive", n) for n in range(6)]


@pytest.mark.parametrize("mode,n", LOSS_CASES, ids=[f"{m}-{n + 1}" for m, n in LOSS_CASES])
def test_each_message_lost_once(mode: str, n: int) -> None:
    p = v1_pair(mode)
    dropped: list = []
    p.filter = drop_nth(n, dropped)
    p.start()
    p.advance(20)
    [(src, d)] = dropped
    # the lost message is the one meant: Phase 1 first, then the Quick Mode
    expect = ET.QUICK_MODE if n >= PHASE1_LEN[mode] else MODES_ET[mode]
    assert header(d).exchange == expect
    assert src == SENDERS[mode][n]
    assert len(p.a.up()) == 1 and len(p.b.up()) == 1
    assert states(p.a) == ["ESTABLISHED"] and states(p.b) == ["ESTABLISHED"]
    assert assert_matching_children(p.a, p.b) == 1
    [sa] = p.a.engine.list_sas()
    assert [c.state for c in sa.children] == ["INSTALLED"]
    [sb] = p.b.engine.list_sas()
    assert [c.state for c in sb.children] == ["INSTALLED"]
    stats = {**p.a.engine.stats(), **p.b.engine.stats()}
    assert stats.get("ikev1_retransmits", 0) + stats.get("ikev1_retransmitted_requests", 0) >= 1
    # and it stays that way: no stray half-open SA or unconfirmed pair is left to time out
    p.advance(90)
    assert assert_matching_children(p.a, p.b) == 1
    assert len(p.a.engine.list_sas()) == 1 and len(p.b.engine.list_sas()) == 1
    assert not p.a.downs() and not p.b.downs()


@pytest.mark.parametrize("mode", ["main", "aggressive"])
def test_every_message_delivered_twice(mode: str) -> None:
    p = v1_pair(mode)

    def twice(src: str, d) -> bool:
        p.in_flight.append((src, d))
        return True

    p.filter = twice
    established(p)
    p.advance(90)
    assert len(p.a.up()) == 1 and len(p.b.up()) == 1
    assert assert_matching_children(p.a, p.b) == 1
    assert len(p.a.engine.list_sas()) == 1 and len(p.b.engine.list_sas()) == 1
    assert not p.a.downs() and not p.b.downs()
    # duplicates draw at most one resend each, never a storm
    assert len(p.wire) <= 2 * (PHASE1_LEN[mode] + 3)
    stats = {**p.a.engine.stats(), **p.b.engine.stats()}
    assert stats.get("ikev1_duplicates", 0) >= 1


@pytest.mark.parametrize("mode", ["main", "aggressive"])
def test_silent_peer_initiator_gives_up_after_retries(mode: str) -> None:
    p = v1_pair(mode, a={"agent": {"retransmit_tries": 3}})
    p.filter = lambda src, d: False
    p.start()
    p.advance(5)
    assert states(p.a) == ["CONNECTING"] and not p.a.downs()
    p.advance(120)
    assert p.a.engine.list_sas() == [] and p.b.engine.list_sas() == []
    [down] = p.a.downs()
    assert "did not answer" in down.reason
    # the first message and exactly the configured number of retransmissions, all identical
    mine = sent_by(p, "a")
    assert len(mine) == 1 + 3 and len({d.data for d in mine}) == 1
    assert p.a.engine.stats()["ikev1_retransmits"] == 3
    assert p.a.engine.get_timer() is None


# ---- rekeying ----------------------------------------------------------------------------------------


def conn_of(who: str) -> str:
    return "to-b" if who == "a" else "to-a"


@pytest.mark.parametrize("mode", ["main", "aggressive"])
@pytest.mark.parametrize("who", ["a", "b"])
def test_quick_mode_rekey_from_each_side(who: str, mode: str) -> None:
    p = v1_pair(mode)
    established(p)
    old_a, old_b = spis_in(p.a), spis_in(p.b)
    reqids = (list(p.a.dp.pairs), list(p.b.dp.pairs))
    isakmp = [(s.spi_i, s.spi_r) for s in p.a.engine.list_sas()]
    p.side(who).engine.rekey(conn_of(who), p.now, ike=False)
    p.run()
    # make-before-break: the new pair stands beside the old one on both sides
    assert len(p.a.pairs()) == 2 and len(p.b.pairs()) == 2
    assert assert_matching_children(p.a, p.b) == 2
    p.advance(5)
    assert assert_matching_children(p.a, p.b) == 1
    assert spis_in(p.a).isdisjoint(old_a) and spis_in(p.b).isdisjoint(old_b)
    # deleted on both sides by the rekeying side's Delete, before the responder's own fallback
    assert p.side(who).engine.stats().get("ikev1_deletes_sent") == 1
    assert p.other(who).engine.stats().get("ikev1_deletes_sent", 0) == 0
    # the policy (reqid) and the ISAKMP SA stayed
    assert (list(p.a.dp.pairs), list(p.b.dp.pairs)) == reqids
    assert [(s.spi_i, s.spi_r) for s in p.a.engine.list_sas()] == isakmp
    for side in (p.a, p.b):
        [sa] = side.engine.list_sas()
        assert [c.state for c in sa.children] == ["INSTALLED"]
    assert not p.a.downs() and not p.b.downs()
    p.advance(60)
    assert assert_matching_children(p.a, p.b) == 1


@pytest.mark.parametrize("mode", ["main", "aggressive"])
@pytest.mark.parametrize("who", ["a", "b"])
def test_phase1_replacement_adopts_the_pairs(who: str, mode: str) -> None:
    p = v1_pair(mode)
    established(p)
    old = {(s.spi_i, s.spi_r) for s in p.a.engine.list_sas()}
    pairs_a, pairs_b = spis_in(p.a), spis_in(p.b)

    def installs_of(side) -> int:  # noqa: ANN001
        return sum(1 for e in side.dp.log if e[0] == "install")

    installs = (installs_of(p.a), installs_of(p.b))
    p.side(who).engine.rekey(conn_of(who), p.now, ike=True, children=False)
    p.run()
    # the old ISAKMP SA is deleted only a moment later, once the peer has moved its IPsec SAs
    # to the new one: a Delete that overtook that move would take them down with it
    replacer = p.side(who).engine.list_sas()
    assert len(replacer) == 2
    assert [len(s.children) for s in sorted(replacer, key=lambda s: s.uid)] == [0, 1]
    p.advance(3)
    sas_a, sas_b = p.a.engine.list_sas(), p.b.engine.list_sas()
    assert len(sas_a) == 1 and len(sas_b) == 1
    new = (sas_a[0].spi_i, sas_a[0].spi_r)
    assert new == (sas_b[0].spi_i, sas_b[0].spi_r) and new not in old
    assert sas_a[0].state == "ESTABLISHED" and sas_b[0].state == "ESTABLISHED"
    assert sas_a[0].mode == mode
    # the side that replaced it initiated the new Phase 1
    assert p.side(who).engine.list_sas()[0].role == "initiator"
    # the same pairs are still installed, now held by the new ISAKMP SA; nothing reinstalled
    assert spis_in(p.a) == pairs_a and spis_in(p.b) == pairs_b
    assert (installs_of(p.a), installs_of(p.b)) == installs
    assert len(sas_a[0].children) == 1 and len(sas_b[0].children) == 1
    assert assert_matching_children(p.a, p.b) == 1
    assert not p.a.downs() and not p.b.downs()
    # the new ISAKMP SA carries Quick Modes
    p.a.engine.rekey("to-b", p.now, ike=False)
    p.advance(5)
    assert assert_matching_children(p.a, p.b) == 1
    assert spis_in(p.a).isdisjoint(pairs_a)
    p.advance(60)
    assert len(p.a.engine.list_sas()) == 1 and len(p.b.engine.list_sas()) == 1


@pytest.mark.parametrize("mode", ["main", "aggressive"])
def test_scheduled_rekeys_over_hours(mode: str) -> None:
    timers = {"rekey_time": "20m"}
    p = v1_pair(
        mode,
        a={"child": {"rekey_time": "5m"}},
        b={"child": {"rekey_time": "5m"}},
        a_conn=timers,
        b_conn=timers,
    )
    established(p)
    first = {(s.spi_i, s.spi_r) for s in p.a.engine.list_sas()}
    installs = len(p.a.dp.log)
    for _ in range(6 * 6):  # six hours, checked every ten minutes
        p.advance(600, step=30)
        assert len(p.a.engine.list_sas()) == 1 and len(p.b.engine.list_sas()) == 1
        assert states(p.a) == ["ESTABLISHED"] and states(p.b) == ["ESTABLISHED"]
        assert assert_matching_children(p.a, p.b) == 1
    # Quick Modes about every five minutes, a new Phase 1 about every twenty
    assert len(p.a.dp.log) >= installs + 6 * 60 // 5 // 2
    assert {(s.spi_i, s.spi_r) for s in p.a.engine.list_sas()}.isdisjoint(first)
    assert p.a.engine.stats().get("ikev1_retransmit_timeout", 0) == 0
    assert not p.a.downs() and not p.b.downs()


# ---- Delete -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["main", "aggressive"])
@pytest.mark.parametrize("who", ["a", "b"])
def test_terminate_child_from_each_side(who: str, mode: str) -> None:
    p = v1_pair(mode)
    established(p)
    isakmp = [(s.spi_i, s.spi_r) for s in p.b.engine.list_sas()]
    p.side(who).engine.terminate_child(conn_of(who), "net", p.now)
    p.run()
    assert p.a.pairs() == [] and p.b.pairs() == []
    assert p.a.dp.policies == {} and p.b.dp.policies == {}
    assert states(p.a) == ["ESTABLISHED"] and states(p.b) == ["ESTABLISHED"]
    assert [(s.spi_i, s.spi_r) for s in p.b.engine.list_sas()] == isakmp
    assert [s.children for s in p.a.engine.list_sas() + p.b.engine.list_sas()] == [[], []]
    assert not p.a.downs() and not p.b.downs()
    # a new Quick Mode over the same ISAKMP SA brings it back
    p.a.engine.initiate("to-b", p.now)
    p.run()
    assert assert_matching_children(p.a, p.b) == 1
    assert len(p.a.up()) == 1


@pytest.mark.parametrize("mode", ["main", "aggressive"])
@pytest.mark.parametrize("who", ["a", "b"])
def test_terminate_from_each_side(who: str, mode: str) -> None:
    p = v1_pair(mode)
    established(p)
    p.side(who).engine.terminate(conn_of(who), p.now)
    p.run()
    assert p.a.engine.list_sas() == [] and p.b.engine.list_sas() == []
    assert p.a.pairs() == [] and p.b.pairs() == []
    assert p.a.dp.policies == {} and p.b.dp.policies == {}
    assert len(p.a.downs()) == 1 and len(p.b.downs()) == 1
    assert "deleted by peer" in p.other(who).downs()[0].reason
    # nothing is left to time out or resend
    p.advance(120)
    assert len(p.wire) == PHASE1_LEN[mode] + 3 + 2  # the two Deletes (ESP, ISAKMP)


# ---- Dead Peer Detection (RFC 3706) -------------------------------------------------------------


@pytest.mark.parametrize("mode", ["main", "aggressive"])
def test_dpd_live_idle_peer_answers(mode: str) -> None:
    dpd = {"dpd_delay": "10s", "dpd_timeout": "30s"}
    p = v1_pair(mode, a_conn=dpd)
    established(p)
    p.advance(95)
    # the idle peer was asked about every ten seconds and answered each time
    sent = p.a.engine.stats().get("ikev1_dpd_sent", 0)
    assert 7 <= sent <= 10
    assert p.b.engine.stats().get("ikev1_dpd_answered") == sent
    assert states(p.a) == ["ESTABLISHED"] and states(p.b) == ["ESTABLISHED"]
    assert assert_matching_children(p.a, p.b) == 1
    assert p.a.engine.stats().get("ikev1_dpd_dead", 0) == 0
    # both directions are encrypted Informationals
    infos = [d for _, d in p.wire if header(d).exchange == ET.INFORMATIONAL]
    assert len(infos) == 2 * sent and all(header(d).encrypted for d in infos)


@pytest.mark.parametrize("mode", ["main", "aggressive"])
def test_dpd_declares_a_vanished_peer_dead(mode: str, caplog: pytest.LogCaptureFixture) -> None:
    dpd = {"dpd_delay": "10s", "dpd_timeout": "30s"}
    p = v1_pair(mode, a_conn=dpd)
    established(p)
    p.advance(25)
    assert states(p.a) == ["ESTABLISHED"]
    p.filter = lambda src, d: False
    gone = p.now
    with caplog.at_level("INFO"):
        p.advance(30)
        assert states(p.a) == ["ESTABLISHED"]  # not before dpd_timeout has passed
        p.advance(30)
    assert p.a.engine.list_sas() == [] and p.a.pairs() == []
    [down] = p.a.downs()
    assert "dead peer" in down.reason
    assert p.a.engine.stats()["ikev1_dpd_dead"] == 1
    assert any(
        "dead" in r.getMessage() and "gw-b.example" in r.getMessage() for r in caplog.records
    )
    # declared dead after dpd_timeout and within dpd_delay + dpd_timeout of going silent
    assert p.now - gone == 60


# ---- malformed and replayed input ----------------------------------------------------------------


def v1_header(length: int, **kw: Any) -> bytes:
    fields = dict(
        spi_i=0x0102030405060708,
        spi_r=0,
        next_payload=w1.PayloadType.SA,
        exchange=ET.IDENTITY_PROTECTION,
        flags=0,
        message_id=0,
        length=length,
    )
    fields.update(kw)
    return w1.Header(**fields).to_bytes()


def test_garbage_and_truncated_input_is_dropped() -> None:
    p = v1_pair()
    established(p)
    before = (p.a.engine.list_sas(), p.b.engine.list_sas(), spis_in(p.a), spis_in(p.b))
    wire = len(p.wire)
    [sa] = p.b.engine.list_sas()
    known = dict(spi_i=sa.spi_i, spi_r=sa.spi_r)
    rng = random.Random(11)
    samples = [
        b"",
        b"\x00" * 10,
        v1_header(28)[:20],  # a header cut short
        v1_header(200) + b"\x00" * 20,  # length says more than arrived
        v1_header(28) + b"\x00" * 40,  # length says less than arrived
        v1_header(28 + 8) + bytes([0, 0, 0, 200]) + b"\x00" * 4,  # payload longer than message
        # on the established SA: plain Quick Mode, undecryptable Quick Mode and Informational
        v1_header(60, exchange=ET.QUICK_MODE, message_id=7, **known) + b"\x00" * 32,
        v1_header(60, exchange=ET.QUICK_MODE, message_id=7, flags=1, **known) + b"\x00" * 32,
        v1_header(60, exchange=ET.INFORMATIONAL, message_id=9, flags=1, **known) + b"\x07" * 32,
        v1_header(61, exchange=ET.INFORMATIONAL, message_id=9, flags=1, **known) + b"\x07" * 33,
    ]
    good = [d.data for _, d in p.wire]
    for _ in range(300):
        d = bytearray(rng.choice(good))
        for _ in range(rng.randint(1, 4)):
            d[rng.randrange(28, len(d))] = rng.randrange(256)
        samples.append(bytes(d))
        samples.append(bytes(d[: rng.randrange(len(d))]))
    for s in samples:
        p.b.engine.receive_datagram(s, ("192.0.2.2", 500), ("192.0.2.1", 500), p.now)
        p.a.engine.receive_datagram(s, ("192.0.2.1", 500), ("192.0.2.2", 500), p.now)
    stats = p.b.engine.stats()
    assert stats.get("truncated", 0) >= 2
    assert stats.get("ikev1_malformed", 0) >= 4
    assert stats.get("ikev1_undecryptable", 0) + stats.get("ikev1_bad_hash", 0) >= 2
    assert stats.get("ikev1_unprotected", 0) >= 1
    p.flush()
    p.in_flight.clear()  # answers to mutated first messages (new half-open SAs) go nowhere
    p.advance(60)  # the half-open SAs they made time out
    after = (p.a.engine.list_sas(), p.b.engine.list_sas(), spis_in(p.a), spis_in(p.b))
    assert [(s.uid, s.spi_i, s.spi_r, s.state) for s in after[0] + after[1]] == [
        (s.uid, s.spi_i, s.spi_r, s.state) for s in before[0] + before[1]
    ]
    assert after[2:] == before[2:]
    # only the half-open SAs that mutated first messages made went down
    assert all(d.reason == "half-open ISAKMP SA timed out" for d in p.a.downs() + p.b.downs())
    # and the ISAKMP SA still carries a Quick Mode
    p.a.engine.rekey("to-b", p.now, ike=False)
    p.advance(5)
    assert assert_matching_children(p.a, p.b) == 1
    assert len(p.wire) > wire


def test_replayed_informational_is_dropped() -> None:
    p = v1_pair(a_conn={"dpd_delay": "10s"})
    established(p)
    p.advance(12)
    rut = [d for src, d in p.wire if src == "a" and header(d).exchange == ET.INFORMATIONAL]
    assert len(rut) == 1
    answered = p.b.engine.stats()["ikev1_dpd_answered"]
    wire = len(p.wire)
    p.now += 3
    deliver(p, "a", rut[0].data)
    assert p.b.engine.stats()["ikev1_replayed"] == 1
    assert p.b.engine.stats()["ikev1_dpd_answered"] == answered
    assert len(p.wire) == wire  # not answered
    # a replayed Delete of the pair does not touch the pair that replaced it
    p.a.engine.rekey("to-b", p.now, ike=False)
    p.advance(5)
    deletes = [
        d for src, d in p.wire[wire:] if src == "a" and header(d).exchange == ET.INFORMATIONAL
    ]
    assert len(deletes) == 1
    pairs = spis_in(p.b)
    deliver(p, "a", deletes[0].data)
    assert p.b.engine.stats()["ikev1_replayed"] == 2
    assert spis_in(p.b) == pairs and assert_matching_children(p.a, p.b) == 1
    assert states(p.b) == ["ESTABLISHED"]


@pytest.mark.parametrize("later", [5.0, 200.0], ids=["cached", "forgotten"])
def test_replayed_quick_mode_is_dropped(later: float) -> None:
    p = v1_pair()
    established(p)
    qm1 = next(d for src, d in p.wire if src == "a" and header(d).exchange == ET.QUICK_MODE)
    pairs = (spis_in(p.a), spis_in(p.b))
    installs = len(p.b.dp.log)
    p.advance(later)
    wire = len(p.wire)
    stats = dict(p.b.engine.stats())
    deliver(p, "a", qm1.data)
    p.advance(60)
    after = p.b.engine.stats()
    # no new pair, not even for a moment, and no Quick Mode answer
    assert len(p.b.dp.log) == installs
    assert (spis_in(p.a), spis_in(p.b)) == pairs
    assert not [d for src, d in p.wire[wire:] if header(d).exchange == ET.QUICK_MODE]
    # a finished exchange still remembered drops it as unexpected, a forgotten one as a replay
    dropped = ("ikev1_unexpected",) if later < 60 else ("ikev1_replayed",)
    assert sum(after.get(k, 0) - stats.get(k, 0) for k in dropped) == 1
    assert states(p.a) == ["ESTABLISHED"] and states(p.b) == ["ESTABLISHED"]
    assert assert_matching_children(p.a, p.b) == 1


# ---- configuration ---------------------------------------------------------------------------------


def test_aggressive_mode_needs_allow_aggressive_psk() -> None:
    cfg = site_config("a", proposals=[IKE], esp=[ESP], conn={"version": 1, "aggressive": True})
    with pytest.raises(ConfigError) as err:
        parse_config(cfg)
    assert "allow_aggressive_psk" in str(err.value)
    cfg["connections"]["to-b"]["allow_aggressive_psk"] = True
    assert parse_config(cfg).connections["to-b"].aggressive


def test_proposals_not_defined_in_ikev1_are_refused_by_the_config() -> None:
    # AEAD is not defined for ISAKMP SAs, ChaCha20-Poly1305 not for ESP in IKEv1 (RFC 2409
    # appendix A, RFC 2407 4.4.4): the config names the field and the reason
    cfg = site_config(
        "a",
        proposals=["aes256gcm16-prfsha256-x25519", IKE],
        esp=["chacha20poly1305", ESP],
        conn={"version": 1},
    )
    with pytest.raises(ConfigError) as err:
        parse_config(cfg)
    text = str(err.value)
    assert "connections.to-b.proposals: aes256gcm16-prfsha256-x25519" in text
    assert "AEAD" in text
    assert "connections.to-b.children.net.esp_proposals: chacha20poly1305" in text
    # the built-in defaults are cut to what IKEv1 can express, and they establish
    plain = site_config("a", conn={"version": 1})
    conn = plain["connections"]["to-b"]
    del conn["proposals"]
    del conn["children"]["net"]["esp_proposals"]
    parsed = parse_config(plain).connections["to-b"]
    assert parsed.proposals and all(
        not suites.encr_info(a.id).aead for p in parsed.proposals for a in p.encr
    )


@pytest.mark.parametrize("shorter", ["initiator", "responder"])
def test_both_sides_use_the_shorter_phase2_lifetime(shorter: str) -> None:
    """RFC 2407 4.5 / 4.6.3.1: the initiator proposes its lifetime; a responder that wants a
    shorter one says so with RESPONDER-LIFETIME, and both expire the pair at the shorter."""
    short = {"child": {"rekey_time": "3000s", "life_time": "3600s"}}
    long = {"child": {"rekey_time": "6000s", "life_time": "7200s"}}
    a, b = (short, long) if shorter == "initiator" else (long, short)
    p = v1_pair(a=a, b=b)
    established(p)
    for side in (p.a, p.b):
        [child] = side.engine.list_sas()[0].children
        assert child.expire_at is not None
        assert child.expire_at - child.installed_at == pytest.approx(3600), side.name
        assert child.rekey_at is not None and child.rekey_at < child.expire_at


def test_a_replaced_pair_is_retired_without_a_gap() -> None:
    """The rekeying side first sends on the new pair, then sends its Delete, and keeps the old
    inbound SA a moment for what the peer sent before the Delete reached it."""
    p = v1_pair()
    established(p)
    [old] = p.a.pairs()
    p.a.engine.rekey("to-b", p.now, ike=False)
    p.run()
    new = next(sa for sa in p.a.pairs() if sa is not old)
    # a peer that keeps using the old pair until told does not switch us over
    assert not new.outbound_active
    deletes = p.a.engine.stats().get("ikev1_deletes_sent", 0)
    p.advance(2.1)
    new = next(sa for sa in p.a.pairs() if sa.inbound.spi == new.inbound.spi)
    assert new.outbound_active  # sending on the new pair...
    assert p.a.engine.stats().get("ikev1_deletes_sent", 0) == deletes + 1  # ...then told the peer
    assert old.inbound.spi in spis_in(p.a)  # ...and the old inbound SA still receives
    assert old.outbound.spi not in spis_in(p.b)  # the peer removed it on our Delete
    p.advance(1.5)
    assert spis_in(p.a) == {new.inbound.spi}
    assert assert_matching_children(p.a, p.b) == 1
