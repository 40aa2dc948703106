"""IKEv1 SA attributes: IANA values (RFC 2409 appendix A, RFC 2407 4.4.4/4.5, RFC 3947,
RFC 4106, RFC 4304, RFC 4868), round trips for every supported transform, clear refusals."""

from __future__ import annotations

import itertools

import pytest

from ikeagent.crypto import suites
from ikeagent.crypto.suites import Kind, lookup, parse_proposal
from ikeagent.crypto.v1 import attributes as a
from ikeagent.crypto.v1.attributes import (
    AuthAlgorithm,
    AuthMethod,
    EncapsulationMode,
    EspTransform,
    EspTransformId,
    IkeAttr,
    IkeTransform,
    IpsecAttr,
    Unsupported,
    esp_from_wire,
    esp_transforms,
    from_attributes,
    ike_transforms,
)

PSK = AuthMethod.PRE_SHARED_KEY
GROUPS = [
    "modp2048",
    "modp3072",
    "modp4096",
    "modp6144",
    "modp8192",
    "ecp256",
    "ecp384",
    "ecp521",
    "x25519",
]


def test_iana_values() -> None:
    assert (IkeAttr.ENCRYPTION_ALGORITHM, IkeAttr.HASH_ALGORITHM, IkeAttr.GROUP_DESCRIPTION) == (
        1,
        2,
        4,
    )
    assert (IkeAttr.LIFE_TYPE, IkeAttr.LIFE_DURATION, IkeAttr.KEY_LENGTH) == (11, 12, 14)
    assert (a.IkeEncr.TRIPLE_DES_CBC, a.IkeEncr.AES_CBC) == (5, 7)
    assert (a.IkeHash.SHA, a.IkeHash.SHA2_256, a.IkeHash.SHA2_384, a.IkeHash.SHA2_512) == (
        2,
        4,
        5,
        6,
    )
    assert (IpsecAttr.SA_LIFE_TYPE, IpsecAttr.SA_LIFE_DURATION, IpsecAttr.GROUP_DESCRIPTION) == (
        1,
        2,
        3,
    )
    assert (IpsecAttr.ENCAPSULATION_MODE, IpsecAttr.AUTHENTICATION_ALGORITHM) == (4, 5)
    assert (IpsecAttr.KEY_LENGTH, IpsecAttr.EXTENDED_SEQUENCE_NUMBER) == (6, 11)
    assert [int(m) for m in EncapsulationMode] == [1, 2, 3, 4, 61443, 61444]
    assert (AuthAlgorithm.HMAC_SHA, AuthAlgorithm.HMAC_SHA2_256) == (2, 5)
    assert (AuthAlgorithm.HMAC_SHA2_384, AuthAlgorithm.HMAC_SHA2_512) == (6, 7)
    assert (EspTransformId.ESP_AES_CBC, EspTransformId.ESP_AES_GCM_8) == (12, 18)
    assert (EspTransformId.ESP_AES_GCM_12, EspTransformId.ESP_AES_GCM_16) == (19, 20)


def test_strongswan_style_proposal_maps_to_rfc_attributes() -> None:
    p = parse_proposal("aes256-sha256-modp2048", Kind.IKE)
    [t] = ike_transforms(p, PSK, 10800)
    assert (t.encr_id, t.hash_id, t.key_len) == (7, 4, 32)
    assert t.to_attributes() == (
        (1, 7),  # ENCRYPTION_ALGORITHM = AES_CBC
        (14, 256),  # KEY_LENGTH
        (2, 4),  # HASH_ALGORITHM = SHA2_256
        (3, 1),  # AUTHENTICATION_METHOD = pre-shared key
        (4, 14),  # GROUP_DESCRIPTION = MODP 2048
        (11, 1),  # LIFE_TYPE = seconds
        (12, 10800),  # LIFE_DURATION
    )


def test_ike_transforms_product_in_preference_order() -> None:
    p = parse_proposal("aes256-aes128-sha256-sha1-x25519-modp2048", Kind.IKE)
    ts = ike_transforms(p, PSK, None)
    assert [(t.encr.keyword, t.hash.keyword, t.dh.keyword) for t in ts] == list(
        itertools.product(["aes256", "aes128"], ["prfsha256", "prfsha1"], ["x25519", "modp2048"])
    )
    assert all(len(t.to_attributes()) == 5 for t in ts)  # no life attributes without a lifetime


@pytest.mark.parametrize("encr", ["aes128", "aes192", "aes256"])
@pytest.mark.parametrize("integ", ["sha1", "sha256", "sha384", "sha512"])
@pytest.mark.parametrize("group", GROUPS)
def test_every_ike_transform_round_trips(encr: str, integ: str, group: str) -> None:
    [t] = ike_transforms(
        parse_proposal(f"{encr}-{integ}-{group}", Kind.IKE), AuthMethod.RSA_SIGNATURES, 3600, 1000
    )
    back = from_attributes(t.to_attributes())
    assert back == t
    assert back.dh.id == suites.lookup(group).id  # IKEv1 group numbers are the IKEv2 DH ids


def test_ike_attributes_from_peer_with_tlv_lifetime_and_both_lifetypes() -> None:
    attrs = [
        (1, 7),
        (14, 128),
        (2, 2),
        (3, 1),
        (4, 31),
        (11, 1),
        (12, b"\x00\x01\x51\x80"),
        (11, 2),
        (12, 500),
    ]
    t = from_attributes(attrs)
    assert (t.encr, t.hash, t.dh) == (lookup("aes128"), lookup("prfsha1"), lookup("x25519"))
    assert (t.life_seconds, t.life_kbytes) == (86400, 500)


@pytest.mark.parametrize(
    ("attrs", "message"),
    [
        ([(1, 1), (2, 2), (3, 1), (4, 14)], "ENCRYPTION_ALGORITHM DES_CBC: weak"),
        ([(1, 5), (2, 2), (3, 1), (4, 14)], "ENCRYPTION_ALGORITHM TRIPLE_DES_CBC: weak"),
        (
            [(1, 8), (14, 128), (2, 2), (3, 1), (4, 14)],
            "ENCRYPTION_ALGORITHM CAMELLIA_CBC: not supported",
        ),
        ([(1, 7), (2, 2), (3, 1), (4, 14)], "KEY_LENGTH: mandatory"),
        ([(1, 7), (14, 64), (2, 2), (3, 1), (4, 14)], "KEY_LENGTH 64"),
        ([(1, 7), (14, 128), (2, 1), (3, 1), (4, 14)], "HASH_ALGORITHM MD5: weak"),
        ([(1, 7), (14, 128), (2, 9), (3, 1), (4, 14)], "HASH_ALGORITHM 9: not supported"),
        (
            [(1, 7), (14, 128), (2, 2), (3, 1), (4, 2)],
            r"GROUP_DESCRIPTION 2 \(MODP_1024\): weak group",
        ),
        ([(1, 7), (14, 128), (2, 2), (3, 1), (4, 99)], "GROUP_DESCRIPTION 99: unknown group"),
        ([(1, 7), (14, 128), (2, 2), (3, 1)], "GROUP_DESCRIPTION: mandatory"),
        ([(1, 7), (14, 128), (2, 2), (3, 77), (4, 14)], "AUTHENTICATION_METHOD 77"),
        ([(1, 7), (14, 128), (2, 2), (3, 1), (4, 14), (6, b"\xff" * 256)], "GROUP_PRIME"),
        ([(1, 7), (14, 128), (2, 2), (3, 1), (4, 14), (13, 1)], "PRF 1"),
        (
            [(1, 7), (14, 128), (2, 2), (3, 1), (4, 14), (1, 7)],
            "ENCRYPTION_ALGORITHM: attribute repeated",
        ),
        ([(1, 7), (14, 128), (2, 2), (3, 1), (4, 14), (12, 60)], "LIFE_DURATION without"),
        ([(1, 7), (14, 128), (2, 2), (3, 1), (4, 14), (11, 3), (12, 1)], "LIFE_TYPE 3"),
        ([(1, 7), (14, 128), (2, 2), (3, 1), (4, 14), (200, 1)], "200 1: attribute not supported"),
        ([(1, 7), (14, b"\x00" * 9), (2, 2), (3, 1), (4, 14)], "KEY_LENGTH: a value of 9 octets"),
    ],
)
def test_ike_refusals_name_the_attribute(attrs, message) -> None:
    with pytest.raises(Unsupported, match=message):
        from_attributes(attrs)


@pytest.mark.parametrize(
    "text", ["aes256gcm16-prfsha256-modp2048", "chacha20poly1305-prfsha256-x25519"]
)
def test_aead_refused_in_ike(text: str) -> None:
    keyword = text.split("-")[0]
    with pytest.raises(Unsupported, match=f"{keyword}: AEAD ciphers are not defined for IKEv1"):
        ike_transforms(parse_proposal(text, Kind.IKE), PSK, None)
    with pytest.raises(Unsupported, match=keyword):
        IkeTransform(lookup(keyword), lookup("prfsha256"), lookup("modp2048"), PSK)


def test_ike_transform_checks_types() -> None:
    with pytest.raises(Unsupported, match="sha256: not an IKEv1 hash"):
        IkeTransform(lookup("aes128"), lookup("sha256"), lookup("modp2048"), PSK)
    with pytest.raises(Unsupported, match="aes128: not a DH group"):
        IkeTransform(lookup("aes128"), lookup("prfsha1"), lookup("aes128"), PSK)


# --- ESP --------------------------------------------------------------------------------------


def test_esp_cbc_attributes() -> None:
    p = parse_proposal("aes128-sha256-modp3072-esn", Kind.ESP)
    [t] = esp_transforms(p, EncapsulationMode.UDP_ENCAPSULATED_TUNNEL, 3600)
    assert (t.transform_id, t.auth_algorithm, t.esn) == (12, 5, True)
    assert t.to_attributes() == ((1, 1), (2, 3600), (3, 15), (4, 3), (5, 5), (6, 128), (11, 1))


def test_esp_gcm_attributes_have_no_auth_algorithm() -> None:
    ts = esp_transforms(
        parse_proposal("aes256gcm16-aes128gcm8", Kind.ESP), EncapsulationMode.TUNNEL, None
    )
    assert [(t.transform_id, t.encr.key_bits, t.auth_algorithm) for t in ts] == [
        (20, 256, None),
        (18, 128, None),
    ]
    assert ts[0].to_attributes() == ((4, 1), (6, 256))


ESP_CASES = [
    *(f"aes{b}-{i}" for b in (128, 192, 256) for i in ("sha1", "sha256", "sha384", "sha512")),
    *(f"aes{b}gcm{t}" for b in (128, 192, 256) for t in (8, 12, 16)),
]


@pytest.mark.parametrize("text", ESP_CASES)
@pytest.mark.parametrize("pfs", ["", "-modp2048", "-ecp384", "-x25519"])
@pytest.mark.parametrize("mode", list(EncapsulationMode))
def test_every_esp_transform_round_trips(text: str, pfs: str, mode: EncapsulationMode) -> None:
    for esn in ("-noesn", "-esn"):
        [t] = esp_transforms(parse_proposal(text + pfs + esn, Kind.ESP), mode, 1800, 10**6)
        back = esp_from_wire(t.transform_id, t.to_attributes())
        assert back == t
        assert back.to_proposal() == parse_proposal(text + pfs + esn, Kind.ESP)


def test_esp_from_peer_defaults_and_draft_modes() -> None:
    t = esp_from_wire(12, [(5, 2), (6, 256)])
    assert (t.encap_mode, t.esn, t.dh, t.life_seconds) == (
        EncapsulationMode.TUNNEL,
        False,
        None,
        None,
    )
    assert (t.encr, t.integ) == (lookup("aes256"), lookup("sha1"))
    t = esp_from_wire(20, [(4, 61443), (6, 128), (1, 1), (2, b"\x00\x00\x0e\x10")])
    assert a.is_tunnel(t.encap_mode) and a.is_udp_encapsulated(t.encap_mode)
    assert t.life_seconds == 3600
    assert not a.is_tunnel(EncapsulationMode.UDP_ENCAPSULATED_TRANSPORT_DRAFT)
    assert a.encap_mode(True, True) == EncapsulationMode.UDP_ENCAPSULATED_TUNNEL
    assert (
        a.encap_mode(False, True, draft=True) == EncapsulationMode.UDP_ENCAPSULATED_TRANSPORT_DRAFT
    )
    assert a.encap_mode(False, False) == EncapsulationMode.TRANSPORT


@pytest.mark.parametrize(
    ("tid", "attrs", "message"),
    [
        (3, [(5, 2)], "ESP transform ESP_3DES: weak"),
        (2, [(5, 2)], "ESP transform ESP_DES: weak"),
        (11, [(5, 2)], "ESP transform ESP_NULL: weak"),
        (13, [(5, 2), (6, 128)], "ESP transform ESP_AES_CTR: not supported"),
        (12, [(5, 2)], "KEY_LENGTH: mandatory"),
        (12, [(6, 128)], "AUTHENTICATION_ALGORITHM: mandatory"),
        (12, [(5, 1), (6, 128)], "AUTHENTICATION_ALGORITHM HMAC_MD5: weak"),
        (12, [(5, 9), (6, 128)], "AUTHENTICATION_ALGORITHM AES_XCBC_MAC: not supported"),
        (20, [(5, 5), (6, 128)], "AUTHENTICATION_ALGORITHM with ESP_AES_GCM_16"),
        (20, [(6, 128), (3, 2)], r"GROUP_DESCRIPTION 2 \(MODP_1024\): weak"),
        (20, [(6, 128), (3, 1234)], "GROUP_DESCRIPTION 1234: unknown group"),
        (20, [(6, 128), (4, 7)], "ENCAPSULATION_MODE 7"),
        (20, [(6, 128), (11, 2)], "EXTENDED_SEQUENCE_NUMBER 2"),
        (20, [(6, 128), (7, 10)], "KEY_ROUNDS 10: attribute not supported"),
        (20, [(6, 128), (4, 1), (4, 2)], "ENCAPSULATION_MODE: attribute repeated"),
    ],
)
def test_esp_refusals_name_the_value(tid, attrs, message) -> None:
    with pytest.raises(Unsupported, match=message):
        esp_from_wire(tid, attrs)


def test_esp_transform_checks() -> None:
    with pytest.raises(Unsupported, match="chacha20poly1305: not defined for ESP in IKEv1"):
        esp_transforms(parse_proposal("chacha20poly1305", Kind.ESP), 1, None)
    with pytest.raises(Unsupported, match="an authentication algorithm is mandatory"):
        EspTransform(lookup("aes128"), None, None, 1)
    with pytest.raises(Unsupported, match="takes no authentication"):
        EspTransform(lookup("aes128gcm16"), lookup("sha1"), None, 1)
    with pytest.raises(Unsupported, match="ENCAPSULATION_MODE 9"):
        EspTransform(lookup("aes128"), lookup("sha1"), None, 9)
    with pytest.raises(Unsupported, match="prfsha1: not an IKEv1 ESP authentication"):
        EspTransform(lookup("aes128"), lookup("prfsha1"), None, 1)


def test_esp_transforms_product_and_limits() -> None:
    p = parse_proposal("aes256-aes128-sha256-sha1-modp2048-x25519-esn-noesn", Kind.ESP)
    ts = esp_transforms(p, EncapsulationMode.TUNNEL, None)
    assert len(ts) == 2 * 2 * 2 * 2
    assert (ts[0].encr.keyword, ts[0].integ.keyword, ts[0].dh.keyword, ts[0].esn) == (
        "aes256",
        "sha256",
        "modp2048",
        True,
    )
    big = parse_proposal(
        "aes256-aes192-aes128-sha1-sha256-sha384-sha512-" + "-".join(GROUPS), Kind.IKE
    )
    assert len(ike_transforms(big, PSK, None)) == 3 * 4 * 9
    many = parse_proposal(
        "aes256-aes192-aes128-sha1-sha256-sha384-sha512-" + "-".join(GROUPS) + "-esn-noesn",
        Kind.ESP,
    )
    assert len(esp_transforms(many, EncapsulationMode.TUNNEL, None)) == 3 * 4 * 9 * 2
