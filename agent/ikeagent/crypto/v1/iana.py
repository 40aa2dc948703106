"""IANA values of IKEv1 (RFC 2409 appendix A, RFC 2407 4.4.4 / 4.5, RFC 3947, RFC 4106,
RFC 4304, RFC 4754, RFC 4868), re-exported by ``ikeagent.crypto.v1.attributes``."""

from __future__ import annotations

from enum import IntEnum


class IkeAttr(IntEnum):
    """Phase 1 attribute classes (RFC 2409 appendix A)."""

    ENCRYPTION_ALGORITHM = 1
    HASH_ALGORITHM = 2
    AUTHENTICATION_METHOD = 3
    GROUP_DESCRIPTION = 4
    GROUP_TYPE = 5
    GROUP_PRIME = 6
    GROUP_GENERATOR_ONE = 7
    GROUP_GENERATOR_TWO = 8
    GROUP_CURVE_A = 9
    GROUP_CURVE_B = 10
    LIFE_TYPE = 11
    LIFE_DURATION = 12
    PRF = 13
    KEY_LENGTH = 14
    FIELD_SIZE = 15
    GROUP_ORDER = 16


class IkeEncr(IntEnum):
    DES_CBC = 1
    IDEA_CBC = 2
    BLOWFISH_CBC = 3
    RC5_R16_B64_CBC = 4
    TRIPLE_DES_CBC = 5  # "3DES-CBC"
    CAST_CBC = 6
    AES_CBC = 7  # RFC 3602
    CAMELLIA_CBC = 8  # RFC 4312


class IkeHash(IntEnum):
    MD5 = 1
    SHA = 2
    TIGER = 3
    SHA2_256 = 4
    SHA2_384 = 5
    SHA2_512 = 6


class AuthMethod(IntEnum):
    PRE_SHARED_KEY = 1
    DSS_SIGNATURES = 2
    RSA_SIGNATURES = 3
    ENCRYPTION_WITH_RSA = 4
    REVISED_ENCRYPTION_WITH_RSA = 5
    ECDSA_SHA256_P256 = 9  # RFC 4754
    ECDSA_SHA384_P384 = 10
    ECDSA_SHA512_P521 = 11
    HYBRID_INIT_RSA = 64221  # draft-ietf-ipsra-hybrid-auth (private use range)
    HYBRID_RESP_RSA = 64222
    HYBRID_INIT_DSS = 64223
    HYBRID_RESP_DSS = 64224
    XAUTH_INIT_PSK = 65001  # draft-beaulieu-ike-xauth (private use range)
    XAUTH_RESP_PSK = 65002
    XAUTH_INIT_DSS = 65003
    XAUTH_RESP_DSS = 65004
    XAUTH_INIT_RSA = 65005
    XAUTH_RESP_RSA = 65006
    XAUTH_INIT_RSA_ENCRYPTION = 65007
    XAUTH_RESP_RSA_ENCRYPTION = 65008
    XAUTH_INIT_RSA_REVISED_ENCRYPTION = 65009
    XAUTH_RESP_RSA_REVISED_ENCRYPTION = 65010


class LifeType(IntEnum):
    """Both LIFE_TYPE (IKE) and SA_LIFE_TYPE (IPsec DOI)."""

    SECONDS = 1
    KILOBYTES = 2


class IpsecAttr(IntEnum):
    """IPsec DOI SA attributes (RFC 2407 4.5; ESN: RFC 4304)."""

    SA_LIFE_TYPE = 1
    SA_LIFE_DURATION = 2
    GROUP_DESCRIPTION = 3
    ENCAPSULATION_MODE = 4
    AUTHENTICATION_ALGORITHM = 5
    KEY_LENGTH = 6
    KEY_ROUNDS = 7
    COMPRESS_DICTIONARY_SIZE = 8
    COMPRESS_PRIVATE_ALGORITHM = 9
    ECN_TUNNEL = 10  # RFC 3168
    EXTENDED_SEQUENCE_NUMBER = 11  # RFC 4304


class EncapsulationMode(IntEnum):
    TUNNEL = 1
    TRANSPORT = 2
    UDP_ENCAPSULATED_TUNNEL = 3  # RFC 3947
    UDP_ENCAPSULATED_TRANSPORT = 4
    UDP_ENCAPSULATED_TUNNEL_DRAFT = 61443  # draft-ietf-ipsec-nat-t-ike-00..03
    UDP_ENCAPSULATED_TRANSPORT_DRAFT = 61444


class EspTransformId(IntEnum):
    """IPsec DOI ESP transform identifiers (RFC 2407 4.4.4 and the IANA registry)."""

    ESP_DES_IV64 = 1
    ESP_DES = 2
    ESP_3DES = 3
    ESP_RC5 = 4
    ESP_IDEA = 5
    ESP_CAST = 6
    ESP_BLOWFISH = 7
    ESP_3IDEA = 8
    ESP_DES_IV32 = 9
    ESP_RC4 = 10
    ESP_NULL = 11
    ESP_AES_CBC = 12  # RFC 3602
    ESP_AES_CTR = 13  # RFC 3686
    ESP_AES_CCM_8 = 14  # RFC 4309
    ESP_AES_CCM_12 = 15
    ESP_AES_CCM_16 = 16
    ESP_AES_GCM_8 = 18  # RFC 4106
    ESP_AES_GCM_12 = 19
    ESP_AES_GCM_16 = 20
    ESP_SEED_CBC = 21
    ESP_CAMELLIA = 22
    ESP_NULL_AUTH_AES_GMAC = 23  # RFC 4543


class AuthAlgorithm(IntEnum):
    """IPsec DOI AUTHENTICATION_ALGORITHM values (RFC 2407 4.5, RFC 4868 3.2, IANA)."""

    HMAC_MD5 = 1
    HMAC_SHA = 2
    DES_MAC = 3
    KPDK = 4
    HMAC_SHA2_256 = 5
    HMAC_SHA2_384 = 6
    HMAC_SHA2_512 = 7
    HMAC_RIPEMD = 8
    AES_XCBC_MAC = 9
    SIG_RSA = 10
    AES_128_GMAC = 11
    AES_192_GMAC = 12
    AES_256_GMAC = 13


UDP_ENCAPSULATION = frozenset(
    {
        EncapsulationMode.UDP_ENCAPSULATED_TUNNEL,
        EncapsulationMode.UDP_ENCAPSULATED_TRANSPORT,
        EncapsulationMode.UDP_ENCAPSULATED_TUNNEL_DRAFT,
        EncapsulationMode.UDP_ENCAPSULATED_TRANSPORT_DRAFT,
    }
)
_TUNNEL_MODES = frozenset(
    {
        EncapsulationMode.TUNNEL,
        EncapsulationMode.UDP_ENCAPSULATED_TUNNEL,
        EncapsulationMode.UDP_ENCAPSULATED_TUNNEL_DRAFT,
    }
)


def is_tunnel(mode: int) -> bool:
    """Tunnel mode, plain or UDP-encapsulated (RFC or draft value)."""
    return mode in _TUNNEL_MODES


def is_udp_encapsulated(mode: int) -> bool:
    return mode in UDP_ENCAPSULATION


def encap_mode(tunnel: bool, udp: bool, draft: bool = False) -> EncapsulationMode:
    """The ENCAPSULATION_MODE value to send (``draft`` for peers that announced only the
    draft NAT-T vendor IDs)."""
    if not udp:
        return EncapsulationMode.TUNNEL if tunnel else EncapsulationMode.TRANSPORT
    if draft:
        return (
            EncapsulationMode.UDP_ENCAPSULATED_TUNNEL_DRAFT
            if tunnel
            else EncapsulationMode.UDP_ENCAPSULATED_TRANSPORT_DRAFT
        )
    return (
        EncapsulationMode.UDP_ENCAPSULATED_TUNNEL
        if tunnel
        else EncapsulationMode.UDP_ENCAPSULATED_TRANSPORT
    )
