"""Header, payload chains and whole messages (RFC 7296 2.5, 3.1, 3.2, 3.14; RFC 7383 2.5)."""

from __future__ import annotations

import pytest
from v2wire_vectors import IKE_SA_INIT, KE_X25519, NATD_DST, NATD_SRC, NONCE_I, VECTORS, h

from ikeagent.wire.errors import DecodeError as BaseDecodeError
from ikeagent.wire.v2 import (
    FLAG_INITIATOR,
    FLAG_RESPONSE,
    HEADER_LEN,
    Attribute,
    DecodeError,
    Delete,
    EncryptedAndAuthenticated,
    EncryptedFragment,
    ExchangeType,
    Header,
    IdentificationInitiator,
    IdType,
    InvalidLength,
    InvalidMajorVersion,
    KeyExchange,
    Message,
    Nonce,
    Notify,
    NotifyType,
    PayloadType,
    Proposal,
    ProtocolId,
    SecurityAssociation,
    Transform,
    TransformType,
    Truncated,
    UnknownPayload,
    UnsupportedCriticalPayload,
    VendorId,
    decode_payloads,
    encode_payloads,
    find_notify,
    payload,
    payloads_of,
    sk_header,
    skf_header,
)

# --- header, RFC 7296 3.1 --------------------------------------------------------------------

HEADER = h(
    """
    01 02 03 04 05 06 07 08  # IKE SA Initiator's SPI
    11 12 13 14 15 16 17 18  # IKE SA Responder's SPI
    2e 20 23 20              # Next Payload SK, Version 2.0, IKE_AUTH (35), Flags R
    00 00 00 01              # Message ID 1
    00 00 00 50              # Length 80
    """
)


def test_header_round_trip():
    hdr = Header.from_bytes(HEADER)
    assert hdr == Header(
        0x0102030405060708, 0x1112131415161718, 46, ExchangeType.IKE_AUTH, 0x20, 1, 80
    )
    assert (hdr.major, hdr.minor) == (2, 0)
    assert hdr.is_response and not hdr.is_initiator
    assert hdr.to_bytes() == HEADER
    assert len(HEADER) == HEADER_LEN


def test_header_flags():
    hdr = Header(1, 0, 0, ExchangeType.IKE_SA_INIT, FLAG_INITIATOR | FLAG_RESPONSE, 0, 28)
    assert hdr.is_initiator and hdr.is_response


def test_header_reads_only_the_first_28_bytes():
    assert Header.from_bytes(HEADER + b"junk") == Header.from_bytes(HEADER)


def test_header_prefixes_and_short_length():
    for n in range(HEADER_LEN):
        with pytest.raises(Truncated):
            Header.from_bytes(HEADER[:n])
    with pytest.raises(InvalidLength):
        Header.from_bytes(HEADER[:24] + (27).to_bytes(4, "big"))


def test_header_unknown_exchange_and_minor_version():
    hdr = Header.from_bytes(HEADER[:17] + bytes([0x21, 99]) + HEADER[19:])
    assert hdr.exchange == 99 and hdr.exchange.name == "UNKNOWN_99"
    assert hdr.minor == 1
    assert hdr.to_bytes()[17:19] == bytes([0x21, 99])


# --- a whole IKE_SA_INIT request ----------------------------------------------------------------


def test_ike_sa_init_request_decodes_to_expected_fields():
    msg = Message.from_bytes(IKE_SA_INIT)
    hdr = msg.header
    assert (hdr.spi_i, hdr.spi_r) == (0x8A1F4C2B9D3E7F60, 0)
    assert hdr.exchange is ExchangeType.IKE_SA_INIT
    assert hdr.is_initiator and not hdr.is_response
    assert (hdr.message_id, hdr.length, hdr.next_payload) == (0, 216, PayloadType.SA)
    assert [p.TYPE for p in msg.payloads] == [
        PayloadType.SA,
        PayloadType.KE,
        PayloadType.NONCE,
        PayloadType.NOTIFY,
        PayloadType.NOTIFY,
        PayloadType.NOTIFY,
    ]
    sa = payload(msg, SecurityAssociation)
    assert sa == SecurityAssociation(
        (
            Proposal(
                1,
                ProtocolId.IKE,
                b"",
                (
                    Transform(TransformType.ENCR, 12, (Attribute(14, 256),)),
                    Transform(TransformType.PRF, 5),
                    Transform(TransformType.INTEG, 12),
                    Transform(TransformType.DH, 31),
                ),
            ),
        )
    )
    assert sa.proposals[0].transforms[0].key_length == 256
    assert payload(msg, KeyExchange) == KeyExchange(31, KE_X25519)
    assert payload(msg, Nonce) == Nonce(NONCE_I)
    assert find_notify(msg, NotifyType.NAT_DETECTION_SOURCE_IP).data == NATD_SRC
    assert find_notify(msg.payloads, NotifyType.NAT_DETECTION_DESTINATION_IP).data == NATD_DST
    assert find_notify(msg, NotifyType.IKEV2_FRAGMENTATION_SUPPORTED) == Notify(
        NotifyType.IKEV2_FRAGMENTATION_SUPPORTED
    )
    assert find_notify(msg, NotifyType.COOKIE) is None
    assert len(payloads_of(msg, Notify)) == 3
    assert payload(msg, VendorId) is None
    assert msg.to_bytes() == IKE_SA_INIT


def test_message_to_bytes_sets_next_payload_and_length():
    msg = Message.from_bytes(IKE_SA_INIT)
    stale = Message(
        Header(msg.header.spi_i, 0, 0, ExchangeType.IKE_SA_INIT, FLAG_INITIATOR, 0, 0),
        msg.payloads,
    )
    assert stale.to_bytes() == IKE_SA_INIT


def test_message_every_prefix_raises():
    for n in range(len(IKE_SA_INIT)):
        with pytest.raises(DecodeError):
            Message.from_bytes(IKE_SA_INIT[:n])


def test_message_length_field_must_match():
    with pytest.raises(InvalidLength):
        Message.from_bytes(IKE_SA_INIT + b"\x00")
    longer = IKE_SA_INIT[:24] + (217).to_bytes(4, "big") + IKE_SA_INIT[28:]
    with pytest.raises(Truncated):
        Message.from_bytes(longer)


def test_message_accepts_bytearray_and_memoryview():
    assert Message.from_bytes(bytearray(IKE_SA_INIT)) == Message.from_bytes(IKE_SA_INIT)
    assert Message.from_bytes(memoryview(IKE_SA_INIT)).to_bytes() == IKE_SA_INIT


@pytest.mark.parametrize("version", [0x10, 0x30, 0xF0, 0x00])
def test_invalid_major_version(version):
    data = IKE_SA_INIT[:17] + bytes([version]) + IKE_SA_INIT[18:]
    with pytest.raises(InvalidMajorVersion) as err:
        Message.from_bytes(data)
    assert err.value.major == version >> 4
    assert err.value.header.spi_i == 0x8A1F4C2B9D3E7F60  # enough to answer the peer
    assert err.value.notify == NotifyType.INVALID_MAJOR_VERSION
    assert isinstance(err.value, BaseDecodeError)


def test_error_notify_types():
    assert DecodeError.notify == NotifyType.INVALID_SYNTAX
    assert UnsupportedCriticalPayload(200).notify == NotifyType.UNSUPPORTED_CRITICAL_PAYLOAD


# --- chains ----------------------------------------------------------------------------------


def test_encode_empty_chain():
    assert encode_payloads([]) == (0, b"")
    assert decode_payloads(0, b"") == []
    with pytest.raises(InvalidLength):
        decode_payloads(0, b"\x00")


def test_chain_of_all_vectors_round_trips():
    objs = [v[3] for v in VECTORS if not v[3].LAST]
    first, data = encode_payloads(objs)
    assert first == objs[0].TYPE
    assert decode_payloads(first, data) == objs
    # the chain is the vectors with Next Payload rewritten
    assert len(data) == sum(len(v[2]) for v in VECTORS if not v[3].LAST)


def test_generic_length_below_four():
    for length in range(4):
        with pytest.raises(InvalidLength):
            decode_payloads(PayloadType.NONCE, bytes([0, 0, 0, length]) + b"\x00" * 8)


# --- unknown payloads, RFC 7296 2.5 ----------------------------------------------------------

UNKNOWN_NONCRITICAL = h(
    """
    c8 00 00 08 00 00 40 00  # Notify (INITIAL_CONTACT): Next Payload 200 (unassigned)
    28 00 00 07 61 62 63     # payload type 200, C=0, length 7, "abc"; Next Payload Nonce
    00 00 00 05 99           # Nonce
    """
)


def test_unknown_noncritical_payload_kept():
    payloads = decode_payloads(PayloadType.NOTIFY, UNKNOWN_NONCRITICAL)
    assert payloads == [
        Notify(NotifyType.INITIAL_CONTACT),
        UnknownPayload(200, False, b"abc"),
        Nonce(b"\x99"),
    ]
    assert encode_payloads(payloads) == (PayloadType.NOTIFY, UNKNOWN_NONCRITICAL)


@pytest.mark.parametrize("ptype", [200, 1, 49, 54, 255])
def test_unknown_critical_payload_rejected_with_type(ptype):
    data = bytes([ptype, 0, 0, 8, 0, 0, 0x40, 0, 0, 0x80, 0, 7]) + b"abc"
    with pytest.raises(UnsupportedCriticalPayload) as err:
        decode_payloads(PayloadType.NOTIFY, data)
    assert err.value.payload_type == ptype
    assert isinstance(err.value, DecodeError)


def test_unknown_critical_payload_encodes_c_bit():
    assert UnknownPayload(200, True, b"x").to_bytes() == bytes.fromhex(
        "0080000578"
    )  # C bit in octet 2


def test_known_payload_with_critical_bit_accepted():
    # RFC 7296 3.2: the C bit only matters for payloads the receiver does not understand
    assert decode_payloads(PayloadType.NONCE, bytes.fromhex("0080000599")) == [Nonce(b"\x99")]


# --- SK / SKF framing ------------------------------------------------------------------------

INNER = [
    IdentificationInitiator(IdType.ID_FQDN, b"a.example"),
    Notify(NotifyType.INITIAL_CONTACT),
]


def test_sk_framing_and_inner_chain():
    first, plain = encode_payloads(INNER)
    assert first == PayloadType.IDi
    sk = EncryptedAndAuthenticated(first, b"IV" + plain + b"ICV")  # identity "cipher"
    hdr = Header(1, 2, 0, ExchangeType.IKE_AUTH, FLAG_INITIATOR, 1, 0)
    data = Message(hdr, (sk,)).to_bytes()
    # header's Next Payload is SK; SK's generic Next Payload is the first inner payload
    assert data[16] == PayloadType.SK
    assert data[HEADER_LEN : HEADER_LEN + 4] == sk_header(PayloadType.IDi, len(sk.body))
    assert sk_header(PayloadType.IDi, len(sk.body)) == bytes([35, 0]) + (4 + len(sk.body)).to_bytes(
        2, "big"
    )
    msg = Message.from_bytes(data)
    (got,) = msg.payloads
    assert got == sk
    assert decode_payloads(got.next_payload, got.body[2:-3]) == INNER


def test_sk_after_cleartext_payloads():
    sk = EncryptedAndAuthenticated(PayloadType.DELETE, b"\x01" * 20)
    first, data = encode_payloads([VendorId(b"v"), sk])
    assert first == PayloadType.VENDOR
    assert data[0] == PayloadType.SK  # the vendor ID announces the SK payload
    assert decode_payloads(first, data) == [VendorId(b"v"), sk]


def test_sk_must_be_last_when_encoding():
    sk = EncryptedAndAuthenticated(0, b"x")
    with pytest.raises(ValueError):
        encode_payloads([sk, Nonce(b"n")])
    frag = EncryptedFragment(0, 1, 1, b"x")
    with pytest.raises(ValueError):
        encode_payloads([frag, Nonce(b"n")])


def test_bytes_after_sk_rejected():
    data = sk_header(PayloadType.NONCE, 4) + b"abcd" + bytes.fromhex("0000000599")
    with pytest.raises(InvalidLength):
        decode_payloads(PayloadType.SK, data)


def test_skf_framing():
    body = b"\xee" * 12
    hdr = skf_header(PayloadType.IDi, 2, 5, len(body))
    # RFC 7383 2.5: generic header, Fragment Number, Total Fragments
    assert hdr == bytes.fromhex("2300001400020005")
    (frag,) = decode_payloads(PayloadType.SKF, hdr + body)
    assert frag == EncryptedFragment(PayloadType.IDi, 2, 5, body)
    assert frag.to_bytes() == hdr + body
    with pytest.raises(InvalidLength):
        decode_payloads(PayloadType.SKF, hdr + body + b"\x00")


def test_skf_message_round_trip():
    frag = EncryptedFragment(0, 3, 3, b"\x01" * 16)
    hdr = Header(7, 8, 0, ExchangeType.IKE_AUTH, FLAG_RESPONSE, 1, 0)
    data = Message(hdr, (frag,)).to_bytes()
    assert data[16] == PayloadType.SKF and len(data) == HEADER_LEN + 8 + 16
    assert Message.from_bytes(data).payloads == (frag,)


def test_sk_header_limits():
    with pytest.raises(ValueError):
        sk_header(0, 0xFFFC)
    assert sk_header(0, 0xFFFB)[2:] == b"\xff\xff"


# --- lookups ---------------------------------------------------------------------------------


def test_lookups_on_lists():
    items = [Notify(NotifyType.COOKIE, data=b"c"), Delete(ProtocolId.IKE, 0, ()), Notify(16384)]
    assert payload(items, Delete) == items[1]
    assert payloads_of(items, Notify) == [items[0], items[2]]
    assert find_notify(items, NotifyType.INITIAL_CONTACT) is items[2]
    assert find_notify(items, 16390) is items[0]
    assert payload([], Nonce) is None
