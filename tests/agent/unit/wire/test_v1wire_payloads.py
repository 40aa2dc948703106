"""Per-payload IKEv1 codec tests over the hand-built vectors of v1wire_vectors (RFC 2408 3,
RFC 2407 4.6, RFC 3947, RFC 3706)."""

from __future__ import annotations

import struct
from ipaddress import IPv4Address, IPv6Address, ip_network

import pytest
from v1wire_vectors import CKY_I, CKY_R, SA_PHASE1_BODY, SA_QUICK_BODY, VECTORS, h

from ikeagent.wire.v1 import (
    PAYLOAD_REGISTRY,
    Attribute,
    Certificate,
    CertificateRequest,
    DecodeError,
    Delete,
    Identification,
    IdType,
    InvalidLength,
    InvalidSyntax,
    NatD,
    NatOa,
    Notification,
    NotifyType,
    PayloadType,
    Proposal,
    ProtocolId,
    RawPayload,
    SecurityAssociation,
    Transform,
    UnsupportedSituation,
    body_bytes,
    decode_attributes,
    decode_payloads,
    encode_payloads,
    notify_for,
    payload,
)

IDS = [v[0] for v in VECTORS]


def _chain(ptype: int, body: bytes) -> bytes:
    """One payload with its generic header (next payload 0), written out by hand."""
    return struct.pack(">BBH", 0, 0, 4 + len(body)) + body


@pytest.mark.parametrize(("name", "ptype", "body", "expected"), VECTORS, ids=IDS)
def test_decode_vector(name, ptype, body, expected):
    assert decode_payloads(ptype, _chain(ptype, body)) == [expected]


@pytest.mark.parametrize(("name", "ptype", "body", "expected"), VECTORS, ids=IDS)
def test_encode_vector_byte_exact(name, ptype, body, expected):
    assert body_bytes(expected) == body
    assert encode_payloads([expected]) == (ptype, _chain(ptype, body))
    assert expected.wire_type() == ptype


@pytest.mark.parametrize(("name", "ptype", "body", "expected"), VECTORS, ids=IDS)
def test_truncation_at_every_length(name, ptype, body, expected):
    data = _chain(ptype, body)
    for n in range(len(data)):
        with pytest.raises(DecodeError):
            decode_payloads(ptype, data[:n])


@pytest.mark.parametrize("body", [SA_PHASE1_BODY, SA_QUICK_BODY], ids=["phase1", "quick"])
def test_sa_body_cut_anywhere_is_a_decode_error(body):
    for n in range(len(body)):
        with pytest.raises(DecodeError):
            SecurityAssociation.from_body(body[:n])


def test_registry_covers_the_modelled_types():
    assert PAYLOAD_REGISTRY[PayloadType.SA] is SecurityAssociation
    assert PAYLOAD_REGISTRY[PayloadType.NOTIFICATION] is Notification
    assert PayloadType.PROPOSAL not in PAYLOAD_REGISTRY
    assert PayloadType.TRANSFORM not in PAYLOAD_REGISTRY
    assert PayloadType.ATTRIBUTE not in PAYLOAD_REGISTRY


# --- data attributes (RFC 2408 3.3) ---


@pytest.mark.parametrize(
    ("value", "wire"),
    [
        (0, "800c 0000"),
        (0xFFFF, "800c ffff"),
        (0x10000, "000c 0004 00010000"),
        (0xFFFFFFFF, "000c 0004 ffffffff"),
        (0x100000000, "000c 0008 0000000100000000"),
        (b"\x01\x02\x03", "000c 0003 010203"),
        (b"", "000c 0000"),
    ],
)
def test_attribute_tv_tlv_choice(value, wire):
    assert Attribute(12, value).to_bytes() == h(wire)


def test_attribute_decoding_gives_int_for_tv_bytes_for_tlv():
    attrs = decode_attributes(h("800b 0001  000c 0004 00015180  000c 0002 7080"))
    assert attrs == (
        Attribute(11, 1),
        Attribute(12, b"\x00\x01\x51\x80"),
        Attribute(12, b"\x70\x80"),
    )
    assert [a.int_value for a in attrs] == [1, 86400, 28800]


@pytest.mark.parametrize("value", [b"", bytes(9)])
def test_attribute_int_value_of_bad_width(value):
    with pytest.raises(DecodeError):
        _ = Attribute(12, value).int_value


@pytest.mark.parametrize("attr", [Attribute(0x8000, 1), Attribute(1, -1), Attribute(1, 1 << 64)])
def test_attribute_encode_rejects_out_of_range(attr):
    with pytest.raises(ValueError):
        attr.to_bytes()


@pytest.mark.parametrize("data", ["800b", "000c 0004 0001", "000c"])
def test_attribute_cut_short(data):
    with pytest.raises(InvalidLength):
        decode_attributes(h(data))


def test_transform_attribute_lookup():
    t = Transform(1, 1, (Attribute(1, 7), Attribute(14, 128)))
    assert t.attribute(14) == Attribute(14, 128)
    assert t.attribute(99) is None


# --- SA structure checks (RFC 2408 3.4-3.6) ---


def _one_transform_sa(proposal_next="00", transform_next="00", count="01", situation="00000001"):
    return h(
        f"""
        00000001 {situation}
        {proposal_next} 00 0014  01 01 00 {count}
        {transform_next} 00 000c  01 01 0000  8001 0007
        """
    )


def test_sa_minimal_decodes():
    sa = SecurityAssociation.from_body(_one_transform_sa())
    assert sa == SecurityAssociation((Proposal(1, 1, b"", (Transform(1, 1, (Attribute(1, 7),)),)),))
    assert sa.doi == 1 and sa.situation == 1


@pytest.mark.parametrize("count", ["00", "02", "ff"])
def test_sa_transform_count_mismatch(count):
    with pytest.raises(InvalidSyntax):
        SecurityAssociation.from_body(_one_transform_sa(count=count))


def test_sa_transform_marker_more_but_ends():
    with pytest.raises(InvalidSyntax):
        SecurityAssociation.from_body(_one_transform_sa(transform_next="03"))


@pytest.mark.parametrize("marker", ["01", "02", "0d"])
def test_sa_bad_transform_marker(marker):
    with pytest.raises(InvalidSyntax):
        SecurityAssociation.from_body(_one_transform_sa(transform_next=marker))


def test_sa_proposal_marker_more_but_ends():
    with pytest.raises(InvalidSyntax):
        SecurityAssociation.from_body(_one_transform_sa(proposal_next="02"))


def test_sa_bad_proposal_marker():
    with pytest.raises(InvalidSyntax):
        SecurityAssociation.from_body(_one_transform_sa(proposal_next="03"))


@pytest.mark.parametrize("situation", ["00000002", "00000004", "00000003", "80000001"])
def test_sa_ipsec_situation_other_than_identity_only(situation):
    with pytest.raises(UnsupportedSituation) as info:
        SecurityAssociation.from_body(_one_transform_sa(situation=situation))
    assert isinstance(info.value, InvalidSyntax)
    assert notify_for(info.value) == NotifyType.SITUATION_NOT_SUPPORTED


def test_sa_without_proposals():
    with pytest.raises(InvalidSyntax):
        SecurityAssociation.from_body(h("00000001 00000001"))
    with pytest.raises(ValueError):
        SecurityAssociation(()).body_bytes()


def test_sa_bytes_after_last_proposal():
    with pytest.raises(InvalidLength):
        SecurityAssociation.from_body(_one_transform_sa() + b"\x00\x00\x00\x00")


def test_proposal_length_shorter_than_spi():
    body = h("00000001 00000001  00 00 0008 01 03 04 00")  # SPI size 4 in an 8-byte proposal
    with pytest.raises(InvalidLength):
        SecurityAssociation.from_body(body)


def test_encoded_sa_markers_and_counts():
    sa = SecurityAssociation(
        (
            Proposal(1, 3, b"\x00\x00\x00\x01", (Transform(1, 12), Transform(2, 3))),
            Proposal(2, 3, b"\x00\x00\x00\x02", (Transform(1, 11),)),
        )
    )
    body = sa.body_bytes()
    assert body[8] == PayloadType.PROPOSAL  # first proposal: another follows
    assert body[8 + 7] == 2  # two transforms
    assert body[8 + 8 + 4] == PayloadType.TRANSFORM  # first transform: another follows
    assert body[8 + 8 + 4 + 8] == 0  # second transform: last
    assert SecurityAssociation.from_body(body) == sa


# --- ID (RFC 2407 4.6.2) ---


@pytest.mark.parametrize(
    ("id_type", "size"),
    [(1, 4), (4, 8), (7, 8), (5, 16), (6, 32), (8, 32)],
)
def test_id_address_types_check_data_size(id_type, size):
    for n in (0, size - 1, size + 1):
        with pytest.raises(InvalidLength):
            Identification.from_body(bytes((id_type, 0, 0, 0)) + bytes(n))
    assert Identification.from_body(bytes((id_type, 0, 0, 0)) + bytes(size)).id_type == id_type


def test_id_helpers_and_ranges():
    a = Identification.from_address(IPv4Address("192.0.2.9"), 17, 500)
    assert a.body_bytes() == h("01 11 01f4 c0000209")
    assert a.address_range() == (IPv4Address("192.0.2.9"), IPv4Address("192.0.2.9"))
    net = Identification.from_network(ip_network("10.1.0.0/16"))
    assert net.body_bytes() == h("04 00 0000 0a010000 ffff0000")
    assert net.address_range() == (IPv4Address("10.1.0.0"), IPv4Address("10.1.255.255"))
    v6 = Identification.from_network(ip_network("2001:db8::/32"))
    assert v6.id_type == IdType.ID_IPV6_ADDR_SUBNET
    assert v6.address_range() == (
        IPv6Address("2001:db8::"),
        IPv6Address("2001:db8:ffff:ffff:ffff:ffff:ffff:ffff"),
    )
    r = Identification.from_range(IPv4Address("10.0.0.5"), IPv4Address("10.0.0.9"))
    assert r.body_bytes() == h("07 00 0000 0a000005 0a000009")
    assert r.address_range() == (IPv4Address("10.0.0.5"), IPv4Address("10.0.0.9"))
    assert Identification(IdType.ID_FQDN, 0, 0, b"x.example").address_range() is None


def test_id_subnet_host_bits_are_masked():
    ident = Identification.from_body(h("04 00 0000 0a0102ff ffffff00"))
    assert ident.address_range() == (IPv4Address("10.1.2.0"), IPv4Address("10.1.2.255"))


@pytest.mark.parametrize("body", ["04 00 0000 0a000000 ff00ff00", "07 00 0000 0a000009 0a000005"])
def test_id_bad_subnet_mask_or_range(body):
    with pytest.raises(InvalidSyntax):
        Identification.from_body(h(body)).address_range()


# --- Notification, DPD, Delete, NAT-OA ---


def test_dpd_notification_layout():
    n = Notification.dpd(NotifyType.R_U_THERE_ACK, CKY_I, CKY_R, 0x01020304)
    assert n.body_bytes() == h("00000001 01 10 8d29  0102030405060708 a1a2a3a4a5a6a7a8  01020304")
    assert n.sequence == 0x01020304


def test_dpd_sequence_needs_four_bytes_and_cookies():
    with pytest.raises(InvalidLength):
        _ = Notification(NotifyType.R_U_THERE, 1, CKY_I + CKY_R, b"\x00\x01").sequence
    with pytest.raises(InvalidLength):
        _ = Notification(NotifyType.R_U_THERE, 1, b"", b"\x00\x00\x00\x01").sequence


def test_notification_defaults_and_unknown_type():
    n = Notification.from_body(h("00000001 01 00 c350"))  # notify type 50000, unnamed
    assert n == Notification(50000)
    assert n.notify_type == 50000 and not n.notify_type.is_known
    assert n.protocol == ProtocolId.ISAKMP and n.doi == 1 and n.spi == b"" and n.data == b""


def test_notification_spi_overruns():
    with pytest.raises(InvalidLength):
        Notification.from_body(h("00000001 03 04 000e c0ff"))


def test_delete_errors():
    with pytest.raises(InvalidSyntax):
        Delete.from_body(h("00000001 03 00 0001"))
    with pytest.raises(InvalidLength):
        Delete.from_body(h("00000001 03 04 0002 c0ffee01"))
    with pytest.raises(InvalidLength):
        Delete.from_body(h("00000001 03 04 0001 c0ffee01 00"))
    with pytest.raises(ValueError):
        Delete(3, (b"\x00\x00\x00\x01", b"\x00\x01")).body_bytes()


def test_delete_without_spis():
    assert Delete.from_body(h("00000001 03 04 0000")) == Delete(3, ())


def test_nat_oa_checks_address_size():
    with pytest.raises(InvalidLength):
        NatOa.from_body(h("01 000000 c00002"))
    with pytest.raises(InvalidLength):
        NatOa.from_body(h("05 000000 c0000201"))
    v6 = NatOa.from_address(IPv6Address("2001:db8::1"))
    assert NatOa.from_body(v6.body_bytes()) == v6
    assert v6.body_bytes()[:4] == h("05 000000")


def test_certificate_and_request_are_distinct_classes():
    cr = CertificateRequest(4, b"")
    assert not isinstance(cr, Certificate)
    assert payload([cr], Certificate) is None


def test_nat_draft_payloads_are_nat_payloads_of_their_own_type():
    got = decode_payloads(PayloadType.NAT_D_DRAFT, _chain(0, bytes(20)))
    assert isinstance(got[0], NatD) and got[0].wire_type() == PayloadType.NAT_D_DRAFT
    assert got[0] != NatD(bytes(20))


def test_raw_payload_type_is_its_own():
    raw = RawPayload(200, b"abc")
    assert encode_payloads([raw]) == (200, h("00 00 0007 616263"))
