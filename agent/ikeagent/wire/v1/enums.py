"""IKEv1/ISAKMP IANA registries and constants ("Internet Security Association and Key
Management Protocol (ISAKMP) Identifiers" and "IPsec DOI" registries).

Names follow RFC 2408 (ISAKMP), RFC 2407 (IPsec DOI), RFC 3947 (NAT-T) and RFC 3706 (DPD).
Every enum tolerates values it does not name (see ``IanaEnum``).
"""

from __future__ import annotations

from ikeagent.wire.iana import IanaEnum

__all__ = [
    "DOI_IPSEC",
    "FLAG_AUTH_ONLY",
    "FLAG_COMMIT",
    "FLAG_ENCRYPTION",
    "SIT_IDENTITY_ONLY",
    "SIT_INTEGRITY",
    "SIT_SECRECY",
    "CertEncoding",
    "ExchangeType",
    "IdType",
    "NotifyType",
    "PayloadType",
    "ProtocolId",
]

# ISAKMP header flags (RFC 2408 3.1)
FLAG_ENCRYPTION = 0x01
FLAG_COMMIT = 0x02
FLAG_AUTH_ONLY = 0x04

# Domain of Interpretation (RFC 2408 3.4, RFC 2407 4.2)
DOI_ISAKMP = 0
DOI_IPSEC = 1

# IPsec DOI situation bits (RFC 2407 4.2)
SIT_IDENTITY_ONLY = 0x01
SIT_SECRECY = 0x02
SIT_INTEGRITY = 0x04


class ExchangeType(IanaEnum):
    """RFC 2408 3.1 and 4; QUICK_MODE and NEW_GROUP_MODE RFC 2409; TRANSACTION (mode config)
    draft-ietf-ipsec-isakmp-mode-cfg."""

    NONE = 0
    BASE = 1
    IDENTITY_PROTECTION = 2
    AUTHENTICATION_ONLY = 3
    AGGRESSIVE = 4
    INFORMATIONAL = 5
    TRANSACTION = 6
    QUICK_MODE = 32
    NEW_GROUP_MODE = 33


class PayloadType(IanaEnum):
    """RFC 2408 3.1; NAT_D/NAT_OA RFC 3947; the *_DRAFT values are the pre-RFC NAT-T drafts
    still sent by old peers; FRAGMENT is the vendor IKEv1 fragmentation payload."""

    NONE = 0
    SA = 1
    PROPOSAL = 2
    TRANSFORM = 3
    KE = 4
    ID = 5
    CERT = 6
    CR = 7
    HASH = 8
    SIG = 9
    NONCE = 10
    NOTIFICATION = 11
    DELETE = 12
    VENDOR_ID = 13
    ATTRIBUTE = 14
    NAT_D = 20
    NAT_OA = 21
    NAT_D_DRAFT = 130
    NAT_OA_DRAFT = 131
    FRAGMENT = 132


class NotifyType(IanaEnum):
    """Error types RFC 2408 3.14.1 (1..30), status types RFC 2408 3.14.1 (CONNECTED) and
    RFC 2407 4.6.3, DPD RFC 3706 section 5."""

    INVALID_PAYLOAD_TYPE = 1
    DOI_NOT_SUPPORTED = 2
    SITUATION_NOT_SUPPORTED = 3
    INVALID_COOKIE = 4
    INVALID_MAJOR_VERSION = 5
    INVALID_MINOR_VERSION = 6
    INVALID_EXCHANGE_TYPE = 7
    INVALID_FLAGS = 8
    INVALID_MESSAGE_ID = 9
    INVALID_PROTOCOL_ID = 10
    INVALID_SPI = 11
    INVALID_TRANSFORM_ID = 12
    ATTRIBUTES_NOT_SUPPORTED = 13
    NO_PROPOSAL_CHOSEN = 14
    BAD_PROPOSAL_SYNTAX = 15
    PAYLOAD_MALFORMED = 16
    INVALID_KEY_INFORMATION = 17
    INVALID_ID_INFORMATION = 18
    INVALID_CERT_ENCODING = 19
    INVALID_CERTIFICATE = 20
    CERT_TYPE_UNSUPPORTED = 21
    INVALID_CERT_AUTHORITY = 22
    INVALID_HASH_INFORMATION = 23
    AUTHENTICATION_FAILED = 24
    INVALID_SIGNATURE = 25
    ADDRESS_NOTIFICATION = 26
    NOTIFY_SA_LIFETIME = 27
    CERTIFICATE_UNAVAILABLE = 28
    UNSUPPORTED_EXCHANGE_TYPE = 29
    UNEQUAL_PAYLOAD_LENGTHS = 30
    CONNECTED = 16384
    RESPONDER_LIFETIME = 24576
    REPLAY_STATUS = 24577
    INITIAL_CONTACT = 24578
    R_U_THERE = 36136
    R_U_THERE_ACK = 36137


class ProtocolId(IanaEnum):
    """IPsec DOI Security Protocol Identifiers (RFC 2407 4.4.1)."""

    ISAKMP = 1
    IPSEC_AH = 2
    IPSEC_ESP = 3
    IPCOMP = 4


class IdType(IanaEnum):
    """IPsec DOI Identification Types (RFC 2407 4.6.2.1)."""

    ID_IPV4_ADDR = 1
    ID_FQDN = 2
    ID_USER_FQDN = 3
    ID_IPV4_ADDR_SUBNET = 4
    ID_IPV6_ADDR = 5
    ID_IPV6_ADDR_SUBNET = 6
    ID_IPV4_ADDR_RANGE = 7
    ID_IPV6_ADDR_RANGE = 8
    ID_DER_ASN1_DN = 9
    ID_DER_ASN1_GN = 10
    ID_KEY_ID = 11


class CertEncoding(IanaEnum):
    """Certificate Encoding (RFC 2408 3.9)."""

    NONE = 0
    PKCS7_WRAPPED_X509 = 1
    PGP = 2
    DNS_SIGNED_KEY = 3
    X509_SIGNATURE = 4
    X509_KEY_EXCHANGE = 5
    KERBEROS_TOKENS = 6
    CRL = 7
    ARL = 8
    SPKI = 9
    X509_ATTRIBUTE = 10
