"""Per-payload codec tests over the hand-built vectors of v2wire_vectors (RFC 7296 section 3)."""

from __future__ import annotations

import pytest
from v2wire_vectors import VECTORS, h

from ikeagent.wire.v2 import (
    PAYLOAD_REGISTRY,
    Attribute,
    Configuration,
    DecodeError,
    Delete,
    EncryptedFragment,
    Identification,
    IdentificationInitiator,
    IdentificationResponder,
    IdType,
    InvalidLength,
    InvalidSyntax,
    KeyExchange,
    Nonce,
    Notify,
    NotifyType,
    PayloadType,
    Proposal,
    ProtocolId,
    SecurityAssociation,
    TrafficSelector,
    TrafficSelectorsInitiator,
    Transform,
    TransformType,
    TsType,
    decode_payloads,
    encode_payloads,
)

IDS = [v[0] for v in VECTORS]


def _frame(ptype_body: bytes, next_payload: int = 0) -> bytes:
    return bytes([next_payload, 0]) + (4 + len(ptype_body)).to_bytes(2, "big") + ptype_body


def _check_consistent(ptype: int, data: bytes) -> None:
    """Decode; when that works, re-encoding must decode to the same payloads."""
    try:
        decoded = decode_payloads(ptype, data)
    except DecodeError:
        return
    first, again = encode_payloads(decoded)
    assert first == ptype
    assert decode_payloads(first, again) == decoded


def test_every_payload_type_has_a_vector():
    assert {int(v[1]) for v in VECTORS} == set(PAYLOAD_REGISTRY)


@pytest.mark.parametrize(("name", "ptype", "enc", "obj", "strict"), VECTORS, ids=IDS)
def test_round_trip(name, ptype, enc, obj, strict):
    assert decode_payloads(ptype, enc) == [obj]
    assert type(decode_payloads(ptype, enc)[0]) is type(obj)
    assert ptype == obj.TYPE
    assert obj.to_bytes() == enc
    assert encode_payloads([obj]) == (ptype, enc)
    assert obj.body_bytes() == enc[4:]


@pytest.mark.parametrize(("name", "ptype", "enc", "obj", "strict"), VECTORS, ids=IDS)
def test_from_body(name, ptype, enc, obj, strict):
    cls = type(obj)
    if cls.LAST:
        assert cls.from_body(enc[4:], enc[0]) == obj
    else:
        assert cls.from_body(enc[4:]) == obj


@pytest.mark.parametrize(("name", "ptype", "enc", "obj", "strict"), VECTORS, ids=IDS)
def test_every_prefix_raises(name, ptype, enc, obj, strict):
    for n in range(len(enc)):
        with pytest.raises(DecodeError):
            decode_payloads(ptype, enc[:n])


@pytest.mark.parametrize(("name", "ptype", "enc", "obj", "strict"), VECTORS, ids=IDS)
def test_body_prefixes_in_a_consistent_frame(name, ptype, enc, obj, strict):
    """A shortened body with a generic header that agrees with it: structured payloads must
    notice their inner lengths; any payload may only fail with DecodeError."""
    body = enc[4:]
    for n in range(len(body)):
        framed = _frame(body[:n], enc[0])
        if strict:
            with pytest.raises(DecodeError):
                decode_payloads(ptype, framed)
        else:
            _check_consistent(ptype, framed)


@pytest.mark.parametrize(("name", "ptype", "enc", "obj", "strict"), VECTORS, ids=IDS)
def test_byte_at_a_time(name, ptype, enc, obj, strict):
    for i in range(len(enc)):
        for value in {0x00, 0xFF, enc[i] ^ 0x01, enc[i] ^ 0x80}:
            _check_consistent(ptype, enc[:i] + bytes([value]) + enc[i + 1 :])


@pytest.mark.parametrize(("name", "ptype", "enc", "obj", "strict"), VECTORS, ids=IDS)
def test_trailing_bytes_rejected(name, ptype, enc, obj, strict):
    with pytest.raises(InvalidLength):
        decode_payloads(ptype, enc + b"\x00")


# --- SA --------------------------------------------------------------------------------------

SA_ONE = h(
    """
    00 00 00 14              # generic: length 20
    00 00 00 10 01 01 00 01  # proposal: last, length 16, Num 1, IKE, SPI Size 0, 1 transform
    00 00 00 08 04 00 00 13  # transform: last, length 8, DH, ECP_256 (19)
    """
)


def _sa(data: bytes) -> SecurityAssociation:
    (sa,) = decode_payloads(PayloadType.SA, data)
    assert isinstance(sa, SecurityAssociation)
    return sa


def test_sa_minimal():
    sa = _sa(SA_ONE)
    assert sa.proposals == (Proposal(1, ProtocolId.IKE, b"", (Transform(TransformType.DH, 19),)),)
    assert sa.proposals[0].transforms[0].key_length is None


def _patch(data: bytes, offset: int, value: int) -> bytes:
    return data[:offset] + bytes([value]) + data[offset + 1 :]


@pytest.mark.parametrize("marker", [1, 2, 3, 0x80])
def test_sa_bad_proposal_marker(marker):
    with pytest.raises(InvalidSyntax):
        _sa(_patch(SA_ONE, 4, marker))


@pytest.mark.parametrize("marker", [1, 2, 3])
def test_sa_bad_transform_marker(marker):
    with pytest.raises(InvalidSyntax):
        _sa(_patch(SA_ONE, 12, marker))


@pytest.mark.parametrize("count", [0, 2, 255])
def test_sa_transform_count_mismatch(count):
    with pytest.raises(DecodeError):
        _sa(_patch(SA_ONE, 11, count))


def test_sa_empty_rejected():
    with pytest.raises(InvalidLength):
        _sa(bytes.fromhex("00000004"))


def test_sa_unknown_transform_type_stays_int():
    (sa,) = decode_payloads(PayloadType.SA, _patch(SA_ONE, 16, 250))
    t = sa.proposals[0].transforms[0]
    assert t.type == 250 and not isinstance(t.type, TransformType)
    assert SecurityAssociation.from_body(sa.body_bytes()) == sa


def test_attribute_formats():
    assert Attribute(14, 256).to_bytes() == bytes.fromhex("800e0100")  # TV
    assert Attribute(14, b"\x01\x00").to_bytes() == bytes.fromhex("000e00020100")  # TLV
    with pytest.raises(ValueError):
        Attribute(0x8000, 1).to_bytes()
    assert Attribute.KEY_LENGTH == 14


def test_key_length_property():
    t = Transform(TransformType.ENCR, 12, (Attribute(99, b"x"), Attribute(14, 192)))
    assert t.key_length == 192
    assert Transform(TransformType.ENCR, 12, (Attribute(14, b"\x00\xc0"),)).key_length is None


# --- IDs -------------------------------------------------------------------------------------


def test_id_body_is_what_auth_hashes():
    idi = IdentificationInitiator(IdType.ID_FQDN, b"gw1.example.com")
    # RFC 7296 2.15: RestOfInitIDPayload = ID Type, RESERVED, Identification Data
    assert idi.id_body() == bytes.fromhex("02000000") + b"gw1.example.com"


def test_idi_and_idr_differ():
    a = IdentificationInitiator(IdType.ID_FQDN, b"x")
    b = IdentificationResponder(IdType.ID_FQDN, b"x")
    assert a != b
    assert isinstance(a, Identification) and isinstance(b, Identification)
    assert (PayloadType.IDi, PayloadType.IDr) == (a.TYPE, b.TYPE)


@pytest.mark.parametrize(
    ("id_type", "size"),
    [(IdType.ID_IPV4_ADDR, 5), (IdType.ID_IPV4_ADDR, 3), (IdType.ID_IPV6_ADDR, 4)],
)
def test_id_address_length_checked(id_type, size):
    with pytest.raises(InvalidLength):
        IdentificationInitiator.from_body(bytes([id_type, 0, 0, 0]) + bytes(size))


# --- Notify, Delete, KE, Nonce -----------------------------------------------------------------


def test_notify_spi_size_past_end():
    with pytest.raises(InvalidLength):
        Notify.from_body(bytes.fromhex("0305400 9aabbccdd".replace(" ", "")))


def test_notify_unknown_type_and_error_flag():
    n = Notify.from_body(bytes.fromhex("00002001"))  # type 8193: private-use error range
    assert n.notify_type == 8193 and n.notify_type.is_error
    assert n.notify_type.name == "UNKNOWN_8193"
    assert not NotifyType.COOKIE.is_error and NotifyType.INVALID_SYNTAX.is_error


def test_delete_size_zero_with_spis():
    with pytest.raises(InvalidSyntax):
        Delete.from_body(bytes.fromhex("01000001"))


def test_delete_count_mismatch():
    with pytest.raises(InvalidLength):
        Delete.from_body(bytes.fromhex("03040002") + bytes(4))


def test_delete_other_spi_size():
    d = Delete.from_body(bytes.fromhex("01080001") + bytes.fromhex("0102030405060708"))
    assert d.spis == (0x0102030405060708,)
    assert d.body_bytes() == bytes.fromhex("010800010102030405060708")


def test_delete_encode_size_zero_with_spis():
    with pytest.raises(ValueError):
        Delete(ProtocolId.IKE, 0, (1,)).body_bytes()


def test_nonce_empty_rejected_short_accepted():
    with pytest.raises(InvalidLength):
        Nonce.from_body(b"")
    assert Nonce.from_body(b"\x01").data == b"\x01"  # range 16..256 is the engine's check


def test_ke_short_rejected():
    with pytest.raises(InvalidLength):
        KeyExchange.from_body(b"\x00\x13\x00")


# --- TS --------------------------------------------------------------------------------------


@pytest.mark.parametrize("ts_type", [TsType.TS_FC_ADDR_R_CTL, 0, 200])
def test_ts_unknown_type(ts_type):
    body = bytes([1, 0, 0, 0, ts_type, 0, 0, 16]) + bytes(12)
    with pytest.raises(InvalidSyntax):
        TrafficSelectorsInitiator.from_body(body)


@pytest.mark.parametrize(("ts_type", "size"), [(7, 40), (7, 15), (8, 16), (8, 0)])
def test_ts_selector_length_mismatch(ts_type, size):
    body = bytes([1, 0, 0, 0, ts_type, 0]) + size.to_bytes(2, "big") + bytes(60)
    with pytest.raises(InvalidLength):
        TrafficSelectorsInitiator.from_body(body)


def test_ts_count_larger_than_content():
    body = bytes.fromhex("02000000") + bytes.fromhex("070000100000ffff") + bytes(8)
    with pytest.raises(InvalidLength):
        TrafficSelectorsInitiator.from_body(body)


def test_ts_encode_family_mismatch():
    from ipaddress import IPv4Address, IPv6Address

    ts = TrafficSelector(TsType.TS_IPV4_ADDR_RANGE, 0, 0, 65535, IPv4Address(0), IPv6Address(1))
    with pytest.raises(ValueError):
        ts.to_bytes()


# --- CP, SKF ---------------------------------------------------------------------------------


def test_cp_reserved_bit_ignored_and_attribute_overrun():
    cp = Configuration.from_body(bytes.fromhex("0100000080010000"))
    assert cp.attributes == ((1, b""),)
    with pytest.raises(InvalidLength):
        Configuration.from_body(bytes.fromhex("02000000000100050a010005"))


@pytest.mark.parametrize(("number", "total"), [(0, 3), (4, 3), (0, 0), (1, 0)])
def test_skf_numbering(number, total):
    body = number.to_bytes(2, "big") + total.to_bytes(2, "big") + b"\x00" * 8
    with pytest.raises(InvalidSyntax):
        EncryptedFragment.from_body(body, 0)
