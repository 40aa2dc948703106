"""Hand-built IKEv1/ISAKMP encodings for the v1 wire tests.

Every vector is written octet by octet from the layout figures of RFC 2408 section 3 (ISAKMP
header and payloads), RFC 2407 section 4.6 (IPsec DOI ID, Notification and Delete),
RFC 3947 sections 3.2/5.2 (NAT-D, NAT-OA) and RFC 3706 section 5 (R-U-THERE); the comment
after each group of octets names the field.  None of them is produced by the encoder under
test.  ``h()`` drops comments and whitespace.
"""

from __future__ import annotations

from ikeagent.wire.v1 import (
    Attribute,
    CertEncoding,
    Certificate,
    CertificateRequest,
    Delete,
    Hash,
    Identification,
    IdType,
    KeyExchange,
    NatD,
    NatDDraft,
    NatOa,
    Nonce,
    Notification,
    NotifyType,
    Payload,
    PayloadType,
    Proposal,
    ProtocolId,
    RawPayload,
    SecurityAssociation,
    Signature,
    Transform,
    VendorId,
)


def h(text: str) -> bytes:
    """Hex with '#' comments and any whitespace removed."""
    return bytes.fromhex("".join(line.split("#", 1)[0] for line in text.splitlines()))


CKY_I = bytes.fromhex("0102030405060708")
CKY_R = bytes.fromhex("a1a2a3a4a5a6a7a8")
# RFC 3947 section 3.1: the NAT-T vendor ID is MD5("RFC 3947")
VID_RFC3947 = bytes.fromhex("4a131c81070358455c5728f20e95452f")
# RFC 3706 section 5 (the DPD vendor ID, version 1.0)
VID_DPD = bytes.fromhex("afcad71368a1f1c96b8696fc77570100")

# Phase 1 SA: one ISAKMP proposal with two transforms (RFC 2408 3.4-3.6, RFC 2409 appendix A)
SA_PHASE1_BODY = h(
    """
    00000001            # DOI: IPsec (RFC 2407 4.2)
    00000001            # Situation: SIT_IDENTITY_ONLY
    00 00 0050          # Proposal: next payload 0 (last), RESERVED, length 80
    01 01 00 02         # proposal #1, protocol ISAKMP, SPI size 0, 2 transforms
    03 00 0028          #   Transform: next payload 3 (another transform), RESERVED, length 40
    01 01 0000          #   transform #1, transform ID KEY_IKE, RESERVED2
    8001 0007           #     TV encryption algorithm = AES-CBC
    800e 0100           #     TV key length = 256
    8002 0004           #     TV hash algorithm = SHA2-256
    8003 0001           #     TV authentication method = pre-shared key
    8004 000e           #     TV group description = 14
    800b 0001           #     TV life type = seconds
    000c 0004 00015180  #     TLV life duration, 4 bytes = 86400
    00 00 0020          #   Transform: next payload 0 (last), RESERVED, length 32
    02 01 0000          #   transform #2, KEY_IKE, RESERVED2
    8001 0005           #     TV encryption algorithm = 3DES-CBC
    8002 0002           #     TV hash algorithm = SHA
    8003 0001           #     TV authentication method = pre-shared key
    8004 0002           #     TV group description = 2
    800b 0001           #     TV life type = seconds
    800c 7080           #     TV life duration = 28800
    """
)
SA_PHASE1 = SecurityAssociation(
    (
        Proposal(
            1,
            ProtocolId.ISAKMP,
            b"",
            (
                Transform(
                    1,
                    1,
                    (
                        Attribute(1, 7),
                        Attribute(14, 256),
                        Attribute(2, 4),
                        Attribute(3, 1),
                        Attribute(4, 14),
                        Attribute(11, 1),
                        Attribute(12, bytes.fromhex("00015180")),
                    ),
                ),
                Transform(
                    2,
                    1,
                    (
                        Attribute(1, 5),
                        Attribute(2, 2),
                        Attribute(3, 1),
                        Attribute(4, 2),
                        Attribute(11, 1),
                        Attribute(12, 28800),
                    ),
                ),
            ),
        ),
    )
)

# Quick Mode SA: two ESP proposals, the first with two transforms (RFC 2407 4.4-4.5)
SA_QUICK_BODY = h(
    """
    00000001 00000001   # DOI IPsec, SIT_IDENTITY_ONLY
    02 00 0030          # Proposal: next payload 2 (another proposal), RESERVED, length 48
    01 03 04 02         # proposal #1, protocol IPSEC_ESP, SPI size 4, 2 transforms
    c0ffee01            # SPI
    03 00 0014          #   Transform: next 3, RESERVED, length 20
    01 0c 0000          #   transform #1, ESP_AES, RESERVED2
    8004 0001           #     TV encapsulation mode = tunnel
    8005 0005           #     TV authentication algorithm = HMAC-SHA2-256
    8006 0100           #     TV key length = 256
    00 00 0010          #   Transform: next 0, RESERVED, length 16
    02 03 0000          #   transform #2, ESP_3DES, RESERVED2
    8004 0001           #     TV encapsulation mode = tunnel
    8005 0002           #     TV authentication algorithm = HMAC-SHA
    00 00 0014          # Proposal: next payload 0 (last), RESERVED, length 20
    02 03 04 01         # proposal #2, protocol IPSEC_ESP, SPI size 4, 1 transform
    c0ffee02            # SPI
    00 00 0008          #   Transform: next 0, RESERVED, length 8
    01 0b 0000          #   transform #1, ESP_NULL, RESERVED2 (no attributes)
    """
)
SA_QUICK = SecurityAssociation(
    (
        Proposal(
            1,
            ProtocolId.IPSEC_ESP,
            bytes.fromhex("c0ffee01"),
            (
                Transform(1, 12, (Attribute(4, 1), Attribute(5, 5), Attribute(6, 256))),
                Transform(2, 3, (Attribute(4, 1), Attribute(5, 2))),
            ),
        ),
        Proposal(2, ProtocolId.IPSEC_ESP, bytes.fromhex("c0ffee02"), (Transform(1, 11, ()),)),
    )
)

# (name, payload type, body octets, expected object)
VECTORS: list[tuple[str, int, bytes, Payload]] = [
    ("sa_phase1", PayloadType.SA, SA_PHASE1_BODY, SA_PHASE1),
    ("sa_quick", PayloadType.SA, SA_QUICK_BODY, SA_QUICK),
    ("ke", PayloadType.KE, bytes(range(64)), KeyExchange(bytes(range(64)))),
    (
        "id_fqdn",
        PayloadType.ID,
        h(
            """
            02 11 01f4          # ID type ID_FQDN, protocol UDP (17), port 500 (RFC 2407 4.6.2)
            766f6f2e6578616d706c65  # "voo.example"
            """
        ),
        Identification(IdType.ID_FQDN, 17, 500, b"voo.example"),
    ),
    (
        "id_ipv4",
        PayloadType.ID,
        h("01 00 0000  c0000201  # ID_IPV4_ADDR, protocol 0, port 0, 192.0.2.1"),
        Identification(IdType.ID_IPV4_ADDR, 0, 0, bytes((192, 0, 2, 1))),
    ),
    (
        "id_subnet",
        PayloadType.ID,
        h("04 00 0000  0a010000 ffff0000  # ID_IPV4_ADDR_SUBNET 10.1.0.0 / 255.255.0.0"),
        Identification(IdType.ID_IPV4_ADDR_SUBNET, 0, 0, bytes.fromhex("0a010000ffff0000")),
    ),
    (
        "cert",
        PayloadType.CERT,
        h("04  308201  # encoding X.509 signature, then (the start of) a DER certificate"),
        Certificate(CertEncoding.X509_SIGNATURE, bytes.fromhex("308201")),
    ),
    (
        "cr_any",
        PayloadType.CR,
        h("04  # certificate type X.509 signature, no CA named"),
        CertificateRequest(CertEncoding.X509_SIGNATURE, b""),
    ),
    ("hash", PayloadType.HASH, bytes(range(20)), Hash(bytes(range(20)))),
    ("sig", PayloadType.SIG, bytes(range(5, 37)), Signature(bytes(range(5, 37)))),
    ("nonce", PayloadType.NONCE, bytes(range(16, 48)), Nonce(bytes(range(16, 48)))),
    (
        "notify_initial_contact",
        PayloadType.NOTIFICATION,
        h(
            """
            00000001            # DOI IPsec
            01 10 6002          # protocol ISAKMP, SPI size 16, INITIAL-CONTACT (24578)
            0102030405060708 a1a2a3a4a5a6a7a8  # SPI: CKY-I | CKY-R
            """
        ),
        Notification(NotifyType.INITIAL_CONTACT, ProtocolId.ISAKMP, CKY_I + CKY_R),
    ),
    (
        "notify_no_proposal",
        PayloadType.NOTIFICATION,
        h(
            """
            00000001 03 04 000e  # DOI IPsec, IPSEC_ESP, SPI size 4, NO-PROPOSAL-CHOSEN (14)
            c0ffee01             # SPI
            6f6f7073             # notification data
            """
        ),
        Notification(NotifyType.NO_PROPOSAL_CHOSEN, 3, bytes.fromhex("c0ffee01"), b"oops"),
    ),
    (
        "notify_r_u_there",
        PayloadType.NOTIFICATION,
        h(
            """
            00000001 01 10 8d28  # DOI IPsec, ISAKMP, SPI size 16, R-U-THERE (36136)
            0102030405060708 a1a2a3a4a5a6a7a8  # SPI: CKY-I | CKY-R (RFC 3706 5)
            0000002a             # sequence number 42
            """
        ),
        Notification(NotifyType.R_U_THERE, 1, CKY_I + CKY_R, bytes.fromhex("0000002a")),
    ),
    (
        "delete_esp",
        PayloadType.DELETE,
        h(
            """
            00000001 03 04 0002  # DOI IPsec, IPSEC_ESP, SPI size 4, 2 SPIs
            c0ffee01 c0ffee02    # SPIs
            """
        ),
        Delete(ProtocolId.IPSEC_ESP, (bytes.fromhex("c0ffee01"), bytes.fromhex("c0ffee02"))),
    ),
    (
        "delete_isakmp",
        PayloadType.DELETE,
        h(
            """
            00000001 01 10 0001  # DOI IPsec, ISAKMP, SPI size 16, 1 SPI
            0102030405060708 a1a2a3a4a5a6a7a8  # CKY-I | CKY-R
            """
        ),
        Delete(ProtocolId.ISAKMP, (CKY_I + CKY_R,)),
    ),
    ("vid", PayloadType.VENDOR_ID, VID_DPD, VendorId(VID_DPD)),
    ("nat_d", PayloadType.NAT_D, bytes(range(100, 132)), NatD(bytes(range(100, 132)))),
    ("nat_d_draft", PayloadType.NAT_D_DRAFT, bytes(range(20)), NatDDraft(bytes(range(20)))),
    (
        "nat_oa",
        PayloadType.NAT_OA,
        h("01 000000 c6120005  # ID_IPV4_ADDR, RESERVED (3), 198.18.0.5 (RFC 3947 5.2)"),
        NatOa(IdType.ID_IPV4_ADDR, bytes((198, 18, 0, 5))),
    ),
    (
        "raw_attribute",
        PayloadType.ATTRIBUTE,
        h("01 00 0001 4001 0000  # a mode-config body: kept raw"),
        RawPayload(PayloadType.ATTRIBUTE, bytes.fromhex("0100000140010000")),
    ),
    ("raw_unassigned", 99, b"\x00\x01\x02", RawPayload(99, b"\x00\x01\x02")),
]


# Main Mode message 1 (RFC 2409 5: HDR, SA, VID, VID), octet by octet.  Cross-checked once by
# hand with Wireshark's ISAKMP dissector (no malformed-packet warnings).
MAIN_MODE_1 = (
    h(
        """
    0102030405060708    # Initiator cookie
    0000000000000000    # Responder cookie (0 in the first message)
    01                  # Next payload: SA
    10                  # Major version 1, minor version 0
    02                  # Exchange type: Identity Protection (Main Mode)
    00                  # Flags: none
    00000000            # Message ID 0
    000000a0            # Length 160
    0d 00 005c          # SA: next payload VID (13), RESERVED, length 92
    """
    )
    + SA_PHASE1_BODY
    + h(
        """
    0d 00 0014          # VID: next payload VID, RESERVED, length 20
    4a131c81070358455c5728f20e95452f  # MD5("RFC 3947") (RFC 3947 3.1)
    00 00 0014          # VID: next payload none, RESERVED, length 20
    afcad71368a1f1c96b8696fc77570100  # DPD vendor ID (RFC 3706 5)
    """
    )
)

# A decrypted Informational body (RFC 2409 5.7 and RFC 3706 5): HASH(1), R-U-THERE, padding.
INFO_R_U_THERE_PLAIN = h(
    """
    0b 00 0018          # HASH: next payload Notification (11), RESERVED, length 24
    000102030405060708090a0b0c0d0e0f10111213  # HASH(1) (20 bytes)
    00 00 0020          # N: next payload none, RESERVED, length 32
    00000001 01 10 8d28 # DOI IPsec, ISAKMP, SPI size 16, R-U-THERE
    0102030405060708 a1a2a3a4a5a6a7a8  # SPI: CKY-I | CKY-R
    00000007            # sequence number 7
    00000000000000 07   # CBC padding: 7 zero bytes and the pad length (RFC 2409 5.3)
    """
)
