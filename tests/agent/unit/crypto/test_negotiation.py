"""negotiation.select/negotiate: plain cases, and agreement with the engine's own selection."""

from __future__ import annotations

import random

import pytest

from ikeagent.crypto import suites
from ikeagent.crypto.negotiation import Match, initial_dh, match, negotiate, select
from ikeagent.crypto.suites import Algorithm, Kind, Proposal, TransformType, parse_proposals
from ikeagent.engine.ikev2 import proposals as engine
from ikeagent.wire.v2 import ProtocolId


def ike(text: str) -> tuple[Proposal, ...]:
    return parse_proposals(text, Kind.IKE)


def esp(text: str) -> tuple[Proposal, ...]:
    return parse_proposals(text, Kind.ESP)


def kw(p: Proposal | None) -> str | None:
    return None if p is None else suites.format_proposal(p)


# --- plain cases --------------------------------------------------------------------------------


def test_identical_single_proposal_is_chosen_as_is() -> None:
    p = ike("aes256gcm16-prfsha384-x25519")
    assert kw(select(p, p)) == "aes256gcm16-prfsha384-x25519"


def test_result_has_one_algorithm_per_type() -> None:
    offered = ike("aes128gcm16-aes256gcm16-prfsha256-prfsha384-ecp256-x25519")
    configured = ike("aes256gcm16-aes128gcm16-prfsha384-prfsha256-x25519-ecp256")
    chosen = select(offered, configured)
    assert chosen is not None
    assert (len(chosen.encr), len(chosen.prf), len(chosen.dh)) == (1, 1, 1)
    assert chosen.integ == () and chosen.esn == ()
    # the responder's (configured) order decides within a proposal
    assert kw(chosen) == "aes256gcm16-prfsha384-x25519"


def test_responder_order_of_proposals_wins() -> None:
    offered = ike("aes128-sha256-modp2048, aes256gcm16-prfsha256-x25519")
    configured = ike("aes256gcm16-prfsha256-x25519, aes128-sha256-modp2048")
    m = match(offered, configured)
    assert m == Match(select(offered, configured), 0, 1)  # type: ignore[arg-type]
    assert kw(m.proposal) == "aes256gcm16-prfsha256-x25519"  # type: ignore[union-attr]


def test_no_common_algorithm_is_none() -> None:
    assert select(ike("aes256gcm16-prfsha256-x25519"), ike("aes256gcm16-prfsha256-ecp256")) is None
    assert select(ike("aes128-sha256-x25519"), ike("aes256-sha256-x25519")) is None


def test_aead_and_classic_never_match() -> None:
    # the AEAD side configures no integrity: a classic offer carrying integrity is refused
    assert select(ike("aes256-sha256-x25519"), ike("aes256gcm16-prfsha256-x25519")) is None
    assert select(ike("aes256gcm16-prfsha256-x25519"), ike("aes256-sha256-x25519")) is None


def test_key_length_is_part_of_the_match() -> None:
    assert select(esp("aes128gcm16"), esp("aes256gcm16")) is None
    assert kw(select(esp("aes128gcm16-aes256gcm16"), esp("aes256gcm16"))) == "aes256gcm16"


def test_esp_pfs_must_agree_unless_dh_is_ignored() -> None:
    pfs, no_pfs = esp("aes256gcm16-x25519"), esp("aes256gcm16")
    assert select(pfs, no_pfs) is None
    assert select(no_pfs, pfs) is None
    assert kw(select(pfs, no_pfs, ignore_dh=True)) == "aes256gcm16"
    assert kw(select(no_pfs, pfs, ignore_dh=True)) == "aes256gcm16"


def test_esn_defaults_and_missing_esn_offer() -> None:
    assert kw(select(esp("aes256gcm16-esn-noesn"), esp("aes256gcm16-esn"))) == "aes256gcm16-esn"
    assert kw(select(esp("aes256gcm16-esn"), esp("aes256gcm16"))) is None
    # an offer without ESN transforms means no ESN: fine when noesn is configured
    no_esn_offer = Proposal(encr=esp("aes256gcm16")[0].encr)
    assert kw(select([no_esn_offer], esp("aes256gcm16"))) == "aes256gcm16"
    assert select([no_esn_offer], esp("aes256gcm16-esn")) is None


def test_prefer_dh_changes_the_group_not_the_proposal() -> None:
    offered = ike("aes256gcm16-prfsha256-ecp256-x25519")
    configured = ike("aes256gcm16-prfsha256-x25519-ecp256")
    assert kw(select(offered, configured)) == "aes256gcm16-prfsha256-x25519"
    assert kw(select(offered, configured, prefer_dh=19)) == "aes256gcm16-prfsha256-ecp256"
    assert kw(select(offered, configured, prefer_dh=14)) == "aes256gcm16-prfsha256-x25519"


def test_negotiate_differs_by_role_and_documents_it() -> None:
    a = ike("aes128gcm16-aes256gcm16-prfsha256-x25519")
    b = ike("aes256gcm16-aes128gcm16-prfsha256-x25519")
    n = negotiate(a, b)
    assert n.ok and not n.symmetric
    assert kw(n.as_initiator) == "aes256gcm16-prfsha256-x25519"  # b responds: b's order
    assert kw(n.as_responder) == "aes128gcm16-prfsha256-x25519"  # a responds: a's order


def test_negotiate_uses_the_initiators_ke_group() -> None:
    a = ike("aes256gcm16-prfsha256-ecp256-x25519")
    b = ike("aes256gcm16-prfsha256-x25519-ecp256")
    assert initial_dh(a) == 19 and initial_dh(b) == 31
    n = negotiate(a, b)
    assert kw(n.as_initiator) == "aes256gcm16-prfsha256-ecp256"
    assert kw(n.as_responder) == "aes256gcm16-prfsha256-x25519"


def test_negotiate_nothing_in_common() -> None:
    n = negotiate(ike("aes256gcm16-prfsha256-x25519"), ike("aes256-sha256-modp2048"))
    assert not n.ok and n.as_initiator is None and n.as_responder is None


def test_initial_dh_skips_proposals_without_groups() -> None:
    assert initial_dh(esp("aes256gcm16, aes128gcm16-ecp384")) == 20
    assert initial_dh(esp("aes256gcm16")) is None


# --- the engine's own selection on random proposal sets ------------------------------------------

_BY_TYPE: dict[TransformType, list[Algorithm]] = {t: [] for t in TransformType}
for _row in suites.TABLE:
    _BY_TYPE[_row.algorithm.type].append(_row.algorithm)
# "NONE" transforms (ID 0), which peers may offer for DH
_DH_NONE = Algorithm("modpnone", TransformType.DH, 0)


def _subset(rng: random.Random, pool: list[Algorithm], lo: int, hi: int) -> tuple[Algorithm, ...]:
    n = rng.randint(lo, min(hi, len(pool)))
    return tuple(rng.sample(pool, n))


def _random_proposal(rng: random.Random, small: bool) -> Proposal:
    """Any mix of table algorithms (possibly invalid for the parser: the rules must still agree).

    ``small`` draws from few algorithms, so that offers and configurations often overlap."""
    pools = {t: list(v) for t, v in _BY_TYPE.items()}
    if small:
        pools[TransformType.ENCR] = [
            a for a in pools[TransformType.ENCR] if a.keyword in ("aes256gcm16", "aes128", "aes256")
        ]
        pools[TransformType.INTEG] = pools[TransformType.INTEG][:2]
        pools[TransformType.PRF] = pools[TransformType.PRF][:2]
        pools[TransformType.DH] = [
            a for a in pools[TransformType.DH] if a.keyword in ("x25519", "ecp256", "modp2048")
        ]
    dh_pool = pools[TransformType.DH] + [_DH_NONE]
    return Proposal(
        encr=_subset(rng, pools[TransformType.ENCR], 0 if rng.random() < 0.05 else 1, 3),
        integ=_subset(rng, pools[TransformType.INTEG], 0, 2),
        prf=_subset(rng, pools[TransformType.PRF], 0, 2),
        dh=_subset(rng, dh_pool, 0, 3),
        esn=_subset(rng, pools[TransformType.ESN], 0, 2),
    )


def _random_parsed(rng: random.Random, kind: Kind) -> Proposal:
    """A valid keyword proposal as users write them."""
    aead = rng.random() < 0.5
    encr = ["aes256gcm16", "aes128gcm16", "chacha20poly1305"] if aead else ["aes256", "aes128"]
    words = rng.sample(encr, rng.randint(1, 2))
    if not aead or (kind is Kind.IKE and rng.random() < 0.3):
        words += rng.sample(["sha256", "sha384", "sha512"], rng.randint(1, 2))
    if kind is Kind.IKE and (aead or rng.random() < 0.5):
        words += rng.sample(["prfsha256", "prfsha384"], rng.randint(1, 2))
    groups = ["x25519", "ecp256", "modp2048", "ecp384"]
    if kind is Kind.IKE:
        words += rng.sample(groups, rng.randint(1, 3))
    elif rng.random() < 0.5:
        words += rng.sample(groups, rng.randint(1, 2))
    if kind is Kind.ESP and rng.random() < 0.4:
        words += rng.sample(["esn", "noesn"], rng.randint(1, 2))
    return suites.parse_proposal("-".join(words), kind)


def _engine_select(
    offered: tuple[Proposal, ...],
    configured: tuple[Proposal, ...],
    ignore_dh: bool,
    prefer_dh: int | None,
) -> engine.Chosen | None:
    wire = engine.to_wire(offered, ProtocolId.IKE, b"")
    return engine.select(configured, wire, ProtocolId.IKE, ignore_dh=ignore_dh, prefer_dh=prefer_dh)


def _as_engine_tuple(m: Match | None) -> tuple[object, ...] | None:
    if m is None:
        return None
    p = m.proposal
    for algs in (p.encr, p.integ, p.prf, p.dh, p.esn):
        assert len(algs) <= 1
    first = lambda algs: algs[0] if algs else None  # noqa: E731
    return (
        m.offered_index + 1,
        first(p.encr),
        first(p.integ),
        first(p.prf),
        first(p.dh),
        bool(p.esn and p.esn[0].id == 1),
    )


def _chosen_tuple(c: engine.Chosen | None) -> tuple[object, ...] | None:
    if c is None:
        return None
    return (c.number, c.encr, c.integ, c.prf, c.dh, c.esn)


def _compare(rng: random.Random, make: object, n: int) -> tuple[int, int]:  # (cases, matches)
    matched = 0
    for _ in range(n):
        offered = tuple(make() for _ in range(rng.randint(1, 4)))  # type: ignore[operator]
        configured = tuple(make() for _ in range(rng.randint(1, 4)))  # type: ignore[operator]
        ignore_dh = rng.random() < 0.2
        prefer_dh = rng.choice([None, None, 14, 19, 20, 31, 0])
        ours = match(offered, configured, ignore_dh=ignore_dh, prefer_dh=prefer_dh)
        theirs = _engine_select(offered, configured, ignore_dh, prefer_dh)
        assert _as_engine_tuple(ours) == _chosen_tuple(theirs), (offered, configured)
        assert select(offered, configured, ignore_dh=ignore_dh, prefer_dh=prefer_dh) == (
            ours.proposal if ours else None
        )
        matched += ours is not None
    return n, matched


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_select_agrees_with_the_engine_on_random_parsed_proposals(seed: int) -> None:
    rng = random.Random(seed)
    for kind in (Kind.IKE, Kind.ESP):
        n, matched = _compare(rng, lambda kind=kind: _random_parsed(rng, kind), 700)
        # the sets must exercise both outcomes, or the comparison proves little
        assert n // 10 < matched < n, (kind, matched)


@pytest.mark.parametrize("seed", [11, 12])
def test_select_agrees_with_the_engine_on_arbitrary_transform_mixes(seed: int) -> None:
    rng = random.Random(seed)
    n, matched = _compare(rng, lambda: _random_proposal(rng, small=True), 1500)
    assert 0 < matched < n
    n, matched = _compare(rng, lambda: _random_proposal(rng, small=False), 500)
    assert matched < n


def test_negotiate_is_select_in_both_roles_with_the_initiators_group() -> None:
    rng = random.Random(7)
    for _ in range(300):
        a = tuple(_random_parsed(rng, Kind.IKE) for _ in range(rng.randint(1, 3)))
        b = tuple(_random_parsed(rng, Kind.IKE) for _ in range(rng.randint(1, 3)))
        n = negotiate(a, b)
        ea = _engine_select(a, b, False, a[0].dh[0].id)
        eb = _engine_select(b, a, False, b[0].dh[0].id)
        assert (n.as_initiator is None) == (ea is None)
        assert (n.as_responder is None) == (eb is None)
        if ea is not None:
            assert n.as_initiator is not None and n.as_initiator.dh == (ea.dh,)
        if eb is not None:
            assert n.as_responder is not None and n.as_responder.dh == (eb.dh,)
