"""Hand-built IKEv2 encodings for the wire tests.

Every vector is written field by field from the layout figures of RFC 7296 section 3 (and
RFC 7383 section 2.5 for SKF); the comment after each group of octets names the field.
``h()`` drops comments and whitespace.
"""

from __future__ import annotations

from ipaddress import IPv4Address, IPv6Address

from ikeagent.wire.v2 import (
    Attribute,
    Authentication,
    AuthMethod,
    CertEncoding,
    Certificate,
    CertificateRequest,
    CfgType,
    ConfigAttributeType,
    Configuration,
    Delete,
    Eap,
    EncryptedAndAuthenticated,
    EncryptedFragment,
    IdentificationInitiator,
    IdentificationResponder,
    IdType,
    KeyExchange,
    Nonce,
    Notify,
    NotifyType,
    Payload,
    PayloadType,
    Proposal,
    ProtocolId,
    SecurityAssociation,
    TrafficSelector,
    TrafficSelectorsInitiator,
    TrafficSelectorsResponder,
    Transform,
    TransformType,
    TsType,
    VendorId,
)


def h(text: str) -> bytes:
    """Hex with '#' comments and any whitespace removed."""
    return bytes.fromhex(
        "".join(line.split("#", 1)[0] for line in text.splitlines()).replace(" ", "")
    )


# (name, payload type, encoding with generic header and Next Payload 0, expected object,
#  strict: True when every strict prefix of the *body* is invalid as well)
VECTORS: list[tuple[str, int, bytes, Payload, bool]] = []


def vector(name: str, ptype: int, hexdump: str, obj: Payload, strict: bool = False) -> None:
    VECTORS.append((name, ptype, h(hexdump), obj, strict))


# --- SA, RFC 7296 3.3: two ESP proposals sharing SPI 0x11223344 ------------------------------
vector(
    "sa_esp_two_proposals",
    PayloadType.SA,
    """
    00 00 00 54              # generic: Next Payload 0, C=0, Payload Length 84
    02 00 00 20              # proposal 1: Last Substruc 2 (more), RESERVED, Proposal Length 32
    01 03 04 02              #   Proposal Num 1, Protocol ID ESP, SPI Size 4, Num Transforms 2
    11 22 33 44              #   SPI
    03 00 00 0c 01 00 00 14  #   transform: more (3), len 12, ENCR, ENCR_AES_GCM_16 (20)
    80 0e 00 80              #     attribute TV: AF|Key Length (14), 128
    00 00 00 08 05 00 00 00  #   transform: last (0), len 8, ESN, No ESN (0)
    00 00 00 30              # proposal 2: Last Substruc 0 (last), Proposal Length 48
    02 03 04 03              #   Proposal Num 2, ESP, SPI Size 4, Num Transforms 3
    11 22 33 44              #   SPI
    03 00 00 0c 01 00 00 0c  #   transform: more, len 12, ENCR, ENCR_AES_CBC (12)
    80 0e 01 00              #     attribute TV: Key Length 256
    03 00 00 08 03 00 00 0c  #   transform: more, len 8, INTEG, AUTH_HMAC_SHA2_256_128 (12)
    00 00 00 10 05 00 00 01  #   transform: last, len 16, ESN, ESN (1)
    00 63 00 04 de ad be ef  #     attribute TLV (AF=0): type 99, length 4, value (synthetic)
    """,
    SecurityAssociation(
        (
            Proposal(
                1,
                ProtocolId.ESP,
                bytes.fromhex("11223344"),
                (
                    Transform(TransformType.ENCR, 20, (Attribute(14, 128),)),
                    Transform(TransformType.ESN, 0),
                ),
            ),
            Proposal(
                2,
                ProtocolId.ESP,
                bytes.fromhex("11223344"),
                (
                    Transform(TransformType.ENCR, 12, (Attribute(14, 256),)),
                    Transform(TransformType.INTEG, 12),
                    Transform(TransformType.ESN, 1, (Attribute(99, bytes.fromhex("deadbeef")),)),
                ),
            ),
        )
    ),
    strict=True,
)

# --- KE, RFC 7296 3.4 -----------------------------------------------------------------------
vector(
    "ke_modp2048_short",
    PayloadType.KE,
    """
    00 00 00 10              # generic: length 16
    00 0e 00 00              # Diffie-Hellman Group Num 14, RESERVED
    01 02 03 04 05 06 07 08  # Key Exchange Data (shortened; the codec does not check the size)
    """,
    KeyExchange(14, bytes(range(1, 9))),
)

# --- IDi / IDr, RFC 7296 3.5 -----------------------------------------------------------------
vector(
    "idi_fqdn",
    PayloadType.IDi,
    """
    00 00 00 17              # generic: length 23
    02 00 00 00              # ID Type ID_FQDN (2), RESERVED
    67 77 31 2e 65 78 61 6d 70 6c 65 2e 63 6f 6d  # "gw1.example.com"
    """,
    IdentificationInitiator(IdType.ID_FQDN, b"gw1.example.com"),
)
vector(
    "idr_ipv4",
    PayloadType.IDr,
    """
    00 00 00 0c              # generic: length 12
    01 00 00 00              # ID Type ID_IPV4_ADDR (1), RESERVED
    c0 00 02 01              # 192.0.2.1
    """,
    IdentificationResponder(IdType.ID_IPV4_ADDR, bytes([192, 0, 2, 1])),
    strict=True,
)

# --- CERT / CERTREQ, RFC 7296 3.6 and 3.7 ----------------------------------------------------
vector(
    "cert_x509",
    PayloadType.CERT,
    """
    00 00 00 0a              # generic: length 10
    04                       # Cert Encoding X.509 Certificate - Signature (4)
    30 03 02 01 05           # Certificate Data (a tiny DER SEQUENCE, not a real certificate)
    """,
    Certificate(CertEncoding.X509_CERT_SIGNATURE, bytes.fromhex("3003020105")),
)
vector(
    "certreq_x509",
    PayloadType.CERTREQ,
    """
    00 00 00 19              # generic: length 25
    04                       # Cert Encoding X.509 Certificate - Signature (4)
    00 11 22 33 44 55 66 77 88 99 aa bb cc dd ee ff 01 02 03 04  # one SHA-1 hash of a CA key
    """,
    CertificateRequest(4, bytes.fromhex("00112233445566778899aabbccddeeff01020304")),
)

# --- AUTH, RFC 7296 3.8 ----------------------------------------------------------------------
vector(
    "auth_psk",
    PayloadType.AUTH,
    """
    00 00 00 10              # generic: length 16
    02 00 00 00              # Auth Method Shared Key MIC (2), RESERVED
    a1 a2 a3 a4 a5 a6 a7 a8  # Authentication Data (shortened)
    """,
    Authentication(AuthMethod.SHARED_KEY_MESSAGE_INTEGRITY_CODE, bytes.fromhex("a1a2a3a4a5a6a7a8")),
)

# --- Nonce, RFC 7296 3.9 ---------------------------------------------------------------------
vector(
    "nonce_16",
    PayloadType.NONCE,
    """
    00 00 00 14              # generic: length 20
    00 01 02 03 04 05 06 07 08 09 0a 0b 0c 0d 0e 0f  # Nonce Data
    """,
    Nonce(bytes(range(16))),
)

# --- Notify, RFC 7296 3.10 -------------------------------------------------------------------
vector(
    "notify_rekey_sa_esp",
    PayloadType.NOTIFY,
    """
    00 00 00 0c              # generic: length 12
    03 04 40 09              # Protocol ID ESP, SPI Size 4, Notify Message Type REKEY_SA (16393)
    aa bb cc dd              # SPI
    """,
    Notify(NotifyType.REKEY_SA, 3, bytes.fromhex("aabbccdd")),
)
vector(
    "notify_cookie",
    PayloadType.NOTIFY,
    """
    00 00 00 10              # generic: length 16
    00 00 40 06              # Protocol ID 0, SPI Size 0, COOKIE (16390)
    c0 0c 1e c0 0c 1e c0 0c  # Notification Data
    """,
    Notify(NotifyType.COOKIE, data=bytes.fromhex("c00c1ec00c1ec00c")),
)

# --- Delete, RFC 7296 3.11 -------------------------------------------------------------------
vector(
    "delete_esp_two",
    PayloadType.DELETE,
    """
    00 00 00 10              # generic: length 16
    03 04 00 02              # Protocol ID ESP, SPI Size 4, Num of SPIs 2
    11 22 33 44 55 66 77 88  # SPIs
    """,
    Delete(ProtocolId.ESP, 4, (0x11223344, 0x55667788)),
    strict=True,
)
vector(
    "delete_ike",
    PayloadType.DELETE,
    """
    00 00 00 08              # generic: length 8
    01 00 00 00              # Protocol ID IKE, SPI Size 0, Num of SPIs 0
    """,
    Delete(ProtocolId.IKE, 0, ()),
    strict=True,
)

# --- Vendor ID, RFC 7296 3.12 ----------------------------------------------------------------
vector(
    "vendor_id",
    PayloadType.VENDOR,
    """
    00 00 00 14              # generic: length 20
    88 2f e5 6d 6f d2 0d bc 22 51 61 3b 2e be 5b eb  # Vendor ID Data (16 bytes)
    """,
    VendorId(bytes.fromhex("882fe56d6fd20dbc2251613b2ebe5beb")),
)

# --- TSi / TSr, RFC 7296 3.13 ----------------------------------------------------------------
vector(
    "tsi_v4_v6",
    PayloadType.TSi,
    """
    00 00 00 40              # generic: length 64
    02 00 00 00              # Number of TSs 2, RESERVED
    07 00 00 10              # TS_IPV4_ADDR_RANGE, IP Protocol 0 (any), Selector Length 16
    00 00 ff ff              #   Start Port 0, End Port 65535
    c0 00 02 00 c0 00 02 ff  #   192.0.2.0 .. 192.0.2.255
    08 06 00 28              # TS_IPV6_ADDR_RANGE, TCP (6), Selector Length 40
    01 bb 01 bb              #   ports 443 .. 443
    20 01 0d b8 00 00 00 00 00 00 00 00 00 00 00 00  # 2001:db8::
    20 01 0d b8 00 00 00 00 00 00 00 00 00 00 ff ff  # 2001:db8::ffff
    """,
    TrafficSelectorsInitiator(
        (
            TrafficSelector(
                TsType.TS_IPV4_ADDR_RANGE,
                0,
                0,
                65535,
                IPv4Address("192.0.2.0"),
                IPv4Address("192.0.2.255"),
            ),
            TrafficSelector(
                TsType.TS_IPV6_ADDR_RANGE,
                6,
                443,
                443,
                IPv6Address("2001:db8::"),
                IPv6Address("2001:db8::ffff"),
            ),
        )
    ),
    strict=True,
)
vector(
    "tsr_v4_udp500",
    PayloadType.TSr,
    """
    00 00 00 18              # generic: length 24
    01 00 00 00              # Number of TSs 1, RESERVED
    07 11 00 10 01 f4 01 f4  # TS_IPV4_ADDR_RANGE, UDP (17), length 16, ports 500 .. 500
    c6 12 00 01 c6 12 00 01  # 198.18.0.1 .. 198.18.0.1
    """,
    TrafficSelectorsResponder(
        (
            TrafficSelector(
                TsType.TS_IPV4_ADDR_RANGE,
                17,
                500,
                500,
                IPv4Address("198.18.0.1"),
                IPv4Address("198.18.0.1"),
            ),
        )
    ),
    strict=True,
)

# --- CP, RFC 7296 3.15 -----------------------------------------------------------------------
vector(
    "cp_request",
    PayloadType.CP,
    """
    00 00 00 10              # generic: length 16
    01 00 00 00              # CFG Type CFG_REQUEST, RESERVED
    00 01 00 00              # INTERNAL_IP4_ADDRESS, length 0
    00 03 00 00              # INTERNAL_IP4_DNS, length 0
    """,
    Configuration(
        CfgType.CFG_REQUEST,
        (
            (ConfigAttributeType.INTERNAL_IP4_ADDRESS, b""),
            (ConfigAttributeType.INTERNAL_IP4_DNS, b""),
        ),
    ),
)
vector(
    "cp_reply",
    PayloadType.CP,
    """
    00 00 00 10              # generic: length 16
    02 00 00 00              # CFG Type CFG_REPLY, RESERVED
    00 01 00 04 0a 01 00 05  # INTERNAL_IP4_ADDRESS, length 4, 10.1.0.5
    """,
    Configuration(2, ((1, bytes([10, 1, 0, 5])),)),
)

# --- EAP, RFC 7296 3.16 ----------------------------------------------------------------------
vector(
    "eap_identity_request",
    PayloadType.EAP,
    """
    00 00 00 09              # generic: length 9
    01 01 00 05 01           # EAP Request, Identifier 1, Length 5, Type Identity (RFC 3748)
    """,
    Eap(bytes.fromhex("0101000501")),
)

# --- SK, RFC 7296 3.14 -----------------------------------------------------------------------
vector(
    "sk",
    PayloadType.SK,
    """
    23 00 00 1c              # generic: Next Payload IDi (35, first inner payload), length 28
    00 01 02 03 04 05 06 07  # IV (8 bytes, as for AES-GCM)
    c1 c2 c3 c4              # ciphertext
    f0 f1 f2 f3 f4 f5 f6 f7 f8 f9 fa fb  # ICV (shortened)
    """,
    EncryptedAndAuthenticated(
        PayloadType.IDi, bytes.fromhex("0001020304050607c1c2c3c4f0f1f2f3f4f5f6f7f8f9fafb")
    ),
)

# --- SKF, RFC 7383 2.5 -----------------------------------------------------------------------
vector(
    "skf_first_of_three",
    PayloadType.SKF,
    """
    23 00 00 14              # generic: Next Payload IDi in fragment 1, length 20
    00 01 00 03              # Fragment Number 1, Total Fragments 3
    00 01 02 03 04 05 06 07 c1 c2 c3 c4  # IV, ciphertext, ICV (raw)
    """,
    EncryptedFragment(PayloadType.IDi, 1, 3, bytes.fromhex("0001020304050607c1c2c3c4")),
)

# --- an IKE_SA_INIT request as an initiator sends it ------------------------------------------
# RFC 7296 1.2: HDR, SAi1, KEi, Ni, then NAT-D notifies (2.23) and RFC 7383's
# IKEV2_FRAGMENTATION_SUPPORTED.  Proposal: aes256-sha256-prfsha256-x25519.
KE_X25519 = bytes.fromhex("8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a")
NONCE_I = bytes.fromhex("a4b3c2d1e0f1a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c4d5e6f708192a3b")
NATD_SRC = bytes.fromhex("5f4dcc3b5aa765d61d8327deb882cf99a1b2c3d4")
NATD_DST = bytes.fromhex("e99a18c428cb38d5f260853678922e03a5b6c7d8")
IKE_SA_INIT = h(
    """
    8a 1f 4c 2b 9d 3e 7f 60  # IKE SA Initiator's SPI
    00 00 00 00 00 00 00 00  # IKE SA Responder's SPI (0 in the first message)
    21 20 22 08              # Next Payload SA (33), Version 2.0, IKE_SA_INIT (34), Flags I
    00 00 00 00              # Message ID 0
    00 00 00 d8              # Length 216

    22 00 00 30              # SA: Next Payload KE (34), length 48
    00 00 00 2c 01 01 00 04  #   proposal: last, length 44, Num 1, Protocol IKE, SPI Size 0, 4 transforms
    03 00 00 0c 01 00 00 0c 80 0e 01 00  # ENCR_AES_CBC, Key Length 256
    03 00 00 08 02 00 00 05  #   PRF_HMAC_SHA2_256 (5)
    03 00 00 08 03 00 00 0c  #   AUTH_HMAC_SHA2_256_128 (12)
    00 00 00 08 04 00 00 1f  #   last: DH Curve25519 (31)

    28 00 00 28              # KE: Next Payload Nonce (40), length 40
    00 1f 00 00              #   DH Group 31, RESERVED
    85 20 f0 09 89 30 a7 54 74 8b 7d dc b4 3e f7 5a
    0d bf 3a 0d 26 38 1a f4 eb a4 a9 8e aa 9b 4e 6a  #   Key Exchange Data (32 bytes)

    29 00 00 24              # Nonce: Next Payload Notify (41), length 36
    a4 b3 c2 d1 e0 f1 a2 b3 c4 d5 e6 f7 08 19 2a 3b
    4c 5d 6e 7f 80 91 a2 b3 c4 d5 e6 f7 08 19 2a 3b  #   Nonce Data (32 bytes)

    29 00 00 1c              # Notify: Next Payload Notify, length 28
    00 00 40 04              #   Protocol 0, SPI Size 0, NAT_DETECTION_SOURCE_IP (16388)
    5f 4d cc 3b 5a a7 65 d6 1d 83 27 de b8 82 cf 99 a1 b2 c3 d4  # SHA-1 (20 bytes)

    29 00 00 1c              # Notify: Next Payload Notify, length 28
    00 00 40 05              #   NAT_DETECTION_DESTINATION_IP (16389)
    e9 9a 18 c4 28 cb 38 d5 f2 60 85 36 78 92 2e 03 a5 b6 c7 d8  # SHA-1 (20 bytes)

    00 00 00 08              # Notify: Next Payload None (0), length 8
    00 00 40 2e              #   IKEV2_FRAGMENTATION_SUPPORTED (16430)
    """
)
