"""ISAKMP header, payload chains and whole messages (RFC 2408 3.1-3.2, RFC 2409 5.5)."""

from __future__ import annotations

import pytest
from v1wire_vectors import (
    CKY_I,
    CKY_R,
    INFO_R_U_THERE_PLAIN,
    MAIN_MODE_1,
    SA_PHASE1,
    SA_PHASE1_BODY,
    VID_DPD,
    VID_RFC3947,
    h,
)

from ikeagent.wire.errors import Truncated
from ikeagent.wire.v1 import (
    FLAG_AUTH_ONLY,
    FLAG_COMMIT,
    FLAG_ENCRYPTION,
    HEADER_LEN,
    DecodeError,
    ExchangeType,
    Hash,
    Header,
    InvalidLength,
    InvalidMajorVersion,
    InvalidSyntax,
    Nonce,
    Notification,
    NotifyType,
    PayloadType,
    RawPayload,
    SecurityAssociation,
    VendorId,
    body_bytes,
    decode_message,
    decode_payloads,
    encode_encrypted,
    encode_message,
    encode_payloads,
    find_notification,
    notify_for,
    payload,
    payload_spans,
    payloads_of,
    split_message,
)

MM1_HEADER = Header(
    0x0102030405060708, 0, PayloadType.SA, ExchangeType.IDENTITY_PROTECTION, 0, 0, 160
)


# --- header ---


def test_header_fields_of_main_mode_1():
    hdr = Header.from_bytes(MAIN_MODE_1)
    assert hdr == MM1_HEADER
    assert hdr.major == 1 and hdr.minor == 0
    assert hdr.cky_i == CKY_I and hdr.cky_r == bytes(8)
    assert not hdr.encrypted and not hdr.commit and not hdr.auth_only
    assert hdr.to_bytes() == MAIN_MODE_1[:HEADER_LEN]


@pytest.mark.parametrize(
    ("flags", "encrypted", "commit", "auth_only"),
    [
        (FLAG_ENCRYPTION, True, False, False),
        (FLAG_COMMIT, False, True, False),
        (FLAG_AUTH_ONLY, False, False, True),
        (0x07, True, True, True),
    ],
)
def test_header_flags(flags, encrypted, commit, auth_only):
    assert (FLAG_ENCRYPTION, FLAG_COMMIT, FLAG_AUTH_ONLY) == (1, 2, 4)
    raw = h(
        f"""
        0102030405060708 a1a2a3a4a5a6a7a8  # cookies
        08 10 20 {flags:02x}               # next HASH, version 1.0, Quick Mode, flags
        deadbeef 0000004c                  # message ID, length 76
        """
    )
    hdr = Header.from_bytes(raw)
    assert (hdr.encrypted, hdr.commit, hdr.auth_only) == (encrypted, commit, auth_only)
    assert hdr.exchange == ExchangeType.QUICK_MODE and hdr.message_id == 0xDEADBEEF
    assert hdr.cky_r == CKY_R
    assert hdr.to_bytes() == raw


def test_header_truncated_and_bad_length():
    for n in range(HEADER_LEN):
        with pytest.raises(Truncated):
            Header.from_bytes(MAIN_MODE_1[:n])
    bad = MAIN_MODE_1[:24] + (27).to_bytes(4, "big")
    with pytest.raises(InvalidLength):
        Header.from_bytes(bad)


def test_header_unknown_exchange_is_tolerated():
    raw = bytearray(MAIN_MODE_1[:HEADER_LEN])
    raw[18] = 77
    hdr = Header.from_bytes(bytes(raw))
    assert hdr.exchange == 77 and not hdr.exchange.is_known


# --- whole messages ---


def test_main_mode_1_decodes_from_hand_built_octets():
    hdr, payloads = decode_message(MAIN_MODE_1)
    assert hdr == MM1_HEADER
    assert payloads == [SA_PHASE1, VendorId(VID_RFC3947), VendorId(VID_DPD)]
    sa = payload(payloads, SecurityAssociation)
    assert sa is not None and body_bytes(sa) == SA_PHASE1_BODY
    assert len(payloads_of(payloads, VendorId)) == 2


def test_main_mode_1_encodes_byte_exact():
    header = Header(0x0102030405060708, 0, 0, ExchangeType.IDENTITY_PROTECTION, 0, 0, 0)
    out = encode_message(header, [SA_PHASE1, VendorId(VID_RFC3947), VendorId(VID_DPD)])
    assert out == MAIN_MODE_1


def test_split_message_checks_version_and_length():
    hdr, body = split_message(MAIN_MODE_1)
    assert hdr.length == len(MAIN_MODE_1) and body == MAIN_MODE_1[HEADER_LEN:]
    with pytest.raises(Truncated):
        split_message(MAIN_MODE_1[:-1])
    with pytest.raises(InvalidLength):
        split_message(MAIN_MODE_1 + b"\x00")
    v2 = bytearray(MAIN_MODE_1)
    v2[17] = 0x20
    with pytest.raises(InvalidMajorVersion) as info:
        split_message(bytes(v2))
    assert info.value.header.spi_i == 0x0102030405060708
    assert notify_for(info.value) == NotifyType.INVALID_MAJOR_VERSION


def test_decode_message_refuses_encrypted():
    data = bytearray(MAIN_MODE_1)
    data[19] = FLAG_ENCRYPTION
    with pytest.raises(InvalidSyntax):
        decode_message(bytes(data))


def test_encode_encrypted_sets_length_and_first_payload():
    header = Header(1, 2, 0, ExchangeType.INFORMATIONAL, FLAG_ENCRYPTION, 7, 0)
    out = encode_encrypted(header, PayloadType.HASH, bytes(32))
    hdr, body = split_message(out)
    assert hdr.next_payload == PayloadType.HASH and hdr.length == 60 and hdr.encrypted
    assert body == bytes(32)


# --- chains: trailing padding, spans, unknown and misplaced payloads ---


def test_trailing_padding_only_when_allowed():
    expected = [
        Hash(bytes(range(20))),
        Notification(NotifyType.R_U_THERE, 1, CKY_I + CKY_R, bytes.fromhex("00000007")),
    ]
    got = decode_payloads(PayloadType.HASH, INFO_R_U_THERE_PLAIN, trailing_ok=True)
    assert got == expected
    assert got[1].sequence == 7
    with pytest.raises(InvalidLength):
        decode_payloads(PayloadType.HASH, INFO_R_U_THERE_PLAIN)
    assert decode_payloads(PayloadType.HASH, INFO_R_U_THERE_PLAIN[:56]) == expected
    assert find_notification(got, NotifyType.R_U_THERE) is got[1]
    assert find_notification(got, NotifyType.R_U_THERE_ACK) is None


def test_spans_of_padded_body():
    spans = payload_spans(PayloadType.HASH, INFO_R_U_THERE_PLAIN, trailing_ok=True)
    assert spans == [(PayloadType.HASH, 0, 24), (PayloadType.NOTIFICATION, 24, 56)]
    # RFC 2409 5.5: HASH(1) covers the message after the HASH payload, without padding
    start, end = spans[1][1], spans[-1][2]
    assert (
        INFO_R_U_THERE_PLAIN[start:end]
        == encode_payloads(
            decode_payloads(PayloadType.HASH, INFO_R_U_THERE_PLAIN, trailing_ok=True)[1:]
        )[1]
    )
    with pytest.raises(InvalidLength):
        payload_spans(PayloadType.HASH, INFO_R_U_THERE_PLAIN)


def test_spans_of_main_mode_1():
    body = MAIN_MODE_1[HEADER_LEN:]
    assert payload_spans(PayloadType.SA, body) == [
        (PayloadType.SA, 0, 92),
        (PayloadType.VENDOR_ID, 92, 112),
        (PayloadType.VENDOR_ID, 112, 132),
    ]


def test_empty_chain():
    assert decode_payloads(0, b"") == []
    assert payload_spans(0, b"\x00" * 4, trailing_ok=True) == []
    with pytest.raises(InvalidLength):
        decode_payloads(0, b"\x00")
    assert encode_payloads([]) == (0, b"")


def test_unknown_payload_is_kept_raw_and_round_trips():
    data = h(
        """
        0e 00 0008 01020304   # type 99 (unassigned): next payload ATTRIBUTE, length 8
        0a 00 0006 0506       # ATTRIBUTE (mode config, not modelled): next NONCE, length 6
        00 00 0005 ff         # NONCE: last, length 5
        """
    )
    got = decode_payloads(99, data)
    assert got == [
        RawPayload(99, h("01020304")),
        RawPayload(PayloadType.ATTRIBUTE, h("0506")),
        Nonce(b"\xff"),
    ]
    assert encode_payloads(got) == (99, data)


@pytest.mark.parametrize("ptype", [PayloadType.PROPOSAL, PayloadType.TRANSFORM])
def test_proposal_or_transform_at_top_level(ptype):
    data = h("00 00 000c 01 01 00 00 00000000")
    with pytest.raises(InvalidSyntax):
        decode_payloads(ptype, data)
    chained = h(f"{ptype:02x} 00 0005 aa") + data  # a NONCE whose next is PROPOSAL/TRANSFORM
    with pytest.raises(InvalidSyntax):
        payload_spans(PayloadType.NONCE, chained)


@pytest.mark.parametrize("length", [0, 1, 2, 3])
def test_payload_length_below_four(length):
    data = h(f"00 00 {length:04x} 00000000")
    with pytest.raises(InvalidLength):
        decode_payloads(PayloadType.NONCE, data, trailing_ok=True)


def test_payload_length_beyond_data():
    with pytest.raises(Truncated):
        decode_payloads(PayloadType.NONCE, h("00 00 000a 0102030405"), trailing_ok=True)


def test_notify_for_generic_errors():
    assert notify_for(InvalidLength("x")) == NotifyType.PAYLOAD_MALFORMED
    assert notify_for(InvalidSyntax("x")) == NotifyType.PAYLOAD_MALFORMED
    assert issubclass(Truncated, DecodeError)
