"""Proposal keywords (strongSwan vocabulary) and the algorithm table."""

from __future__ import annotations

import pytest

from ikeagent.crypto.suites import (
    Algorithm,
    Kind,
    Proposal,
    ProposalError,
    TransformType,
    algorithm_from_wire,
    algorithm_name,
    default_proposals,
    dh_info,
    encr_info,
    encr_key_len,
    format_proposal,
    integ_info,
    parse_proposal,
    parse_proposals,
    prf_info,
)

E, INTEG, P, D, S = (
    TransformType.ENCR,
    TransformType.INTEG,
    TransformType.PRF,
    TransformType.DH,
    TransformType.ESN,
)


def wire(p: Proposal) -> list[tuple[int, int, int | None]]:
    return [(int(a.type), a.id, a.key_bits) for a in p.transforms()]


# --- accepted keywords: IANA transform IDs (RFC 7296 3.3.2, RFC 5282, RFC 7634, RFC 8031) -------


@pytest.mark.parametrize(
    ("keyword", "expected"),
    [
        ("aes128", (E, 12, 128)),
        ("aes", (E, 12, 128)),
        ("aes192", (E, 12, 192)),
        ("aes256", (E, 12, 256)),
        ("aes128gcm16", (E, 20, 128)),
        ("aes128gcm128", (E, 20, 128)),
        ("aes192gcm16", (E, 20, 192)),
        ("aes256gcm16", (E, 20, 256)),
        ("aes256gcm128", (E, 20, 256)),
        ("aes256gcm12", (E, 19, 256)),
        ("aes256gcm96", (E, 19, 256)),
        ("aes128gcm8", (E, 18, 128)),
        ("aes128gcm64", (E, 18, 128)),
        ("chacha20poly1305", (E, 28, None)),
    ],
)
def test_encryption_keywords(keyword: str, expected: tuple) -> None:
    p = parse_proposal(f"{keyword}-sha256", Kind.ESP)
    assert (p.encr[0].type, p.encr[0].id, p.encr[0].key_bits) == expected


@pytest.mark.parametrize(
    ("keyword", "integ_id", "prf_id"),
    [
        ("sha1", 2, 2),
        ("sha", 2, 2),
        ("sha256", 12, 5),
        ("sha2_256", 12, 5),
        ("sha384", 13, 6),
        ("sha2_384", 13, 6),
        ("sha512", 14, 7),
        ("sha2_512", 14, 7),
    ],
)
def test_integrity_keyword_implies_prf_in_ike(keyword: str, integ_id: int, prf_id: int) -> None:
    p = parse_proposal(f"aes256-{keyword}-modp2048", Kind.IKE)
    assert [a.id for a in p.integ] == [integ_id]
    assert [a.id for a in p.prf] == [prf_id]


def test_aes256_sha256_modp2048_is_the_strongswan_example() -> None:
    p = parse_proposal("aes256-sha256-modp2048", Kind.IKE)
    assert wire(p) == [(1, 12, 256), (3, 12, None), (2, 5, None), (4, 14, None)]


@pytest.mark.parametrize(
    ("keyword", "prf_id"),
    [("prfsha1", 2), ("prfsha256", 5), ("prfsha384", 6), ("prfsha512", 7)],
)
def test_prf_keywords(keyword: str, prf_id: int) -> None:
    p = parse_proposal(f"aes256gcm16-{keyword}-x25519", Kind.IKE)
    assert [a.id for a in p.prf] == [prf_id]
    assert p.integ == ()


@pytest.mark.parametrize(
    ("keyword", "group"),
    [
        ("modp2048", 14),
        ("modp3072", 15),
        ("modp4096", 16),
        ("modp6144", 17),
        ("modp8192", 18),
        ("ecp256", 19),
        ("ecp384", 20),
        ("ecp521", 21),
        ("x25519", 31),
        ("curve25519", 31),
    ],
)
def test_dh_keywords(keyword: str, group: int) -> None:
    p = parse_proposal(f"aes128gcm16-prfsha256-{keyword}", Kind.IKE)
    assert [a.id for a in p.dh] == [group]


def test_explicit_prf_wins_over_implied() -> None:
    p = parse_proposal("aes128-sha1-prfsha512-ecp256", Kind.IKE)
    assert [a.id for a in p.integ] == [2]
    assert [a.id for a in p.prf] == [7]


def test_several_algorithms_keep_order_and_types_may_interleave() -> None:
    # strongSwan docs: "the order of algorithms of different kinds doesn't matter"
    a = parse_proposal("aes256gcm16-aes192gcm16-prfsha384-prfsha256-ecp384-modp3072", Kind.IKE)
    b = parse_proposal("aes256gcm16-prfsha384-ecp384-aes192gcm16-prfsha256-modp3072", Kind.IKE)
    assert a == b
    assert [x.key_bits for x in a.encr] == [256, 192]
    assert [x.id for x in a.prf] == [6, 5]
    assert [x.id for x in a.dh] == [20, 15]


def test_several_integrity_algorithms_imply_several_prfs() -> None:
    p = parse_proposal("aes256-sha256-sha1-x25519", Kind.IKE)
    assert [a.id for a in p.integ] == [12, 2]
    assert [a.id for a in p.prf] == [5, 2]


def test_aliases_are_deduplicated_and_canonical() -> None:
    p = parse_proposal("aes128gcm16-aes128gcm128-AES128GCM", Kind.ESP)
    assert p.encr == (Algorithm("aes128gcm16", E, 20, 128),)


def test_aead_ike_with_integrity_keyword_uses_it_as_prf_only() -> None:
    # strongSwan check_proposal: PRF derived from integrity, then integrity removed for AEAD.
    p = parse_proposal("aes256gcm16-sha384-x25519", Kind.IKE)
    assert p.integ == ()
    assert [a.id for a in p.prf] == [6]


def test_esp_defaults_to_noesn_and_dh_means_pfs() -> None:
    p = parse_proposal("aes256-sha256-modp2048", Kind.ESP)
    assert p.esn == (Algorithm("noesn", S, 0),)
    assert [a.id for a in p.dh] == [14]
    assert p.prf == ()
    assert parse_proposal("aes256gcm16", Kind.ESP).dh == ()


def test_esp_esn_keywords() -> None:
    assert [a.id for a in parse_proposal("aes256gcm16-esn", Kind.ESP).esn] == [1]
    assert [a.id for a in parse_proposal("aes256gcm16-esn-noesn", Kind.ESP).esn] == [1, 0]


def test_esp_aead_drops_integrity_like_strongswan() -> None:
    assert parse_proposal("aes256gcm16-sha256", Kind.ESP).integ == ()


def test_parse_proposals_comma_list() -> None:
    ps = parse_proposals("aes256gcm16-prfsha256-x25519, aes256-sha256-modp2048", Kind.IKE)
    assert len(ps) == 2
    assert ps[1].encr[0].keyword == "aes256"


# --- rejections: each names the offending token --------------------------------------------


@pytest.mark.parametrize(
    ("text", "kind", "needle"),
    [
        ("3des-sha1-modp2048", Kind.IKE, "3des: weak algorithm"),
        ("des-sha1-modp2048", Kind.IKE, "des: weak algorithm"),
        ("null-sha256", Kind.ESP, "null: weak algorithm"),
        ("aes128-md5-modp2048", Kind.IKE, "md5: weak algorithm"),
        ("aes128-sha256-prfmd5-modp2048", Kind.IKE, "prfmd5: weak algorithm"),
        ("aes128-sha256-modp1024", Kind.IKE, "modp1024: weak algorithm"),
        ("aes128-sha256-modp768", Kind.IKE, "modp768: weak algorithm"),
        ("aes128-sha256-modp1536", Kind.IKE, "modp1536: weak algorithm"),
        ("aes128ccm16-prfsha256-ecp256", Kind.IKE, "aes128ccm16: algorithm not supported"),
        ("aes128-aesxcbc-ecp256", Kind.IKE, "aesxcbc: algorithm not supported"),
        ("aes128-sha256-x448", Kind.IKE, "x448: algorithm not supported"),
        ("aes128-sha256-frobnicate", Kind.IKE, "frobnicate: unknown algorithm keyword"),
        ("aes128--sha256-ecp256", Kind.IKE, "empty algorithm keyword"),
        ("aes256-sha256", Kind.IKE, "a DH group is mandatory"),
        ("aes256gcm16-x25519", Kind.IKE, "aes256gcm16: a PRF (prfX) is mandatory"),
        ("aes256-prfsha256-x25519", Kind.IKE, "aes256: an integrity algorithm is mandatory"),
        ("aes256", Kind.ESP, "aes256: an integrity algorithm is mandatory"),
        ("aes256gcm16-aes256-sha256", Kind.ESP, "aes256gcm16, aes256: AEAD and classic"),
        ("sha256-modp2048", Kind.IKE, "an encryption algorithm is mandatory"),
        ("aes256gcm16-prfsha256", Kind.ESP, "prfsha256: a PRF is not negotiated for ESP"),
        ("aes256gcm16-prfsha256-x25519-esn", Kind.IKE, "esn: ESN is not negotiated for IKE"),
        ("", Kind.IKE, "empty proposal"),
    ],
)
def test_rejections_name_the_token(text: str, kind: Kind, needle: str) -> None:
    with pytest.raises(ProposalError) as err:
        parse_proposal(text, kind)
    assert needle in str(err.value)


def test_proposal_error_is_a_value_error() -> None:
    assert issubclass(ProposalError, ValueError)


# --- formatting and defaults -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "kind", "canonical"),
    [
        ("aes256-sha256-modp2048", Kind.IKE, "aes256-sha256-modp2048"),
        ("AES-SHA2_256-CURVE25519", Kind.IKE, "aes128-sha256-x25519"),
        ("aes128-sha1-prfsha512-ecp256", Kind.IKE, "aes128-sha1-prfsha512-ecp256"),
        ("aes256gcm128-prfsha256-x25519", Kind.IKE, "aes256gcm16-prfsha256-x25519"),
        ("aes256gcm16-sha384-x25519", Kind.IKE, "aes256gcm16-prfsha384-x25519"),
        ("aes256gcm16", Kind.ESP, "aes256gcm16"),
        ("aes256-sha256-modp2048-esn", Kind.ESP, "aes256-sha256-modp2048-esn"),
        ("x25519-prfsha256-chacha20poly1305", Kind.IKE, "chacha20poly1305-prfsha256-x25519"),
    ],
)
def test_format_is_canonical_and_round_trips(text: str, kind: Kind, canonical: str) -> None:
    p = parse_proposal(text, kind)
    assert format_proposal(p) == canonical
    assert parse_proposal(format_proposal(p), kind) == p


@pytest.mark.parametrize("kind", list(Kind))
def test_defaults_parse_and_round_trip(kind: Kind) -> None:
    props = default_proposals(kind)
    assert len(props) >= 2
    for p in props:
        assert parse_proposal(format_proposal(p), kind) == p
    first = props[0]
    assert first.encr[0].keyword == "aes256gcm16"
    if kind is Kind.IKE:
        assert first.prf[0].keyword == "prfsha256"
        assert first.dh[0].keyword == "x25519"
        assert any(a.keyword == "modp2048" for a in props[1].dh)
        assert props[1].encr[0].keyword == "aes256" and props[1].integ[0].keyword == "sha256"
    else:
        assert first.esn[0].keyword == "noesn"
        assert props[1].encr[0].keyword == "aes256" and props[1].integ[0].keyword == "sha256"


# --- metadata --------------------------------------------------------------------------------


def test_metadata_lookups() -> None:
    gcm = encr_info(20)
    assert (gcm.aead, gcm.salt_len, gcm.iv_len, gcm.icv_len) == (True, 4, 8, 16)  # RFC 5282
    cbc = encr_info(12)
    assert (cbc.aead, cbc.iv_len, cbc.block_size, cbc.icv_len) == (False, 16, 16, 0)
    chacha = encr_info(28)
    assert (chacha.key_bits, chacha.salt_len, chacha.iv_len) == ((256,), 4, 8)  # RFC 7634
    assert (integ_info(12).key_len, integ_info(12).icv_len) == (32, 16)  # RFC 4868
    assert (integ_info(2).key_len, integ_info(2).icv_len) == (20, 12)
    assert (integ_info(14).key_len, integ_info(14).icv_len) == (64, 32)
    assert prf_info(5).out_len == 32 and prf_info(2).hash_name == "sha1"
    assert dh_info(31).public_len == 32
    assert dh_info(21).public_len == 132
    assert dh_info(14).public_len == 256


@pytest.mark.parametrize("lookup", [encr_info, integ_info, prf_info, dh_info])
def test_unknown_ids_raise_key_error(lookup) -> None:
    with pytest.raises(KeyError):
        lookup(9999)


def test_dh_info_refuses_weak_group_ids() -> None:
    for weak in (1, 2, 5):
        with pytest.raises(KeyError):
            dh_info(weak)


def test_encr_key_len_includes_salt() -> None:
    assert encr_key_len(20, 256) == 36
    assert encr_key_len(28, None) == 36
    assert encr_key_len(12, 128) == 16
    with pytest.raises(ValueError):
        encr_key_len(12, 100)


@pytest.mark.parametrize(
    ("args", "name"),
    [
        ((E, 20, 256), "AES_GCM_16_256"),
        ((E, 12, 128), "AES_CBC_128"),
        ((E, 28, None), "CHACHA20_POLY1305"),
        ((INTEG, 12, None), "HMAC_SHA2_256_128"),
        ((INTEG, 2, None), "HMAC_SHA1_96"),
        ((P, 5, None), "PRF_HMAC_SHA2_256"),
        ((D, 31, None), "CURVE_25519"),
        ((D, 14, None), "MODP_2048"),
        ((D, 19, None), "ECP_256"),
        ((D, 2, None), "MODP_1024"),
        ((S, 0, None), "NO_EXT_SEQ"),
        ((E, 250, None), "UNKNOWN_1_250"),
    ],
)
def test_algorithm_names(args: tuple, name: str) -> None:
    assert algorithm_name(*args) == name


def test_algorithm_from_wire() -> None:
    assert algorithm_from_wire(E, 20, 256).keyword == "aes256gcm16"
    assert algorithm_from_wire(E, 20, 100) is None
    assert algorithm_from_wire(D, 2) is None
