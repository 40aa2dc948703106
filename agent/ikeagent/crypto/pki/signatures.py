"""IKE signatures: IKEv2 AUTH (RFC 7296 3.8, RFC 4754, RFC 7427, RFC 8420) and IKEv1 SIG
(RFC 2409 5.1, RFC 4754).

IKEv2 methods: 1 RSA Digital Signature (PKCS#1 v1.5 with SHA-1), 9/10/11 ECDSA on
P-256/P-384/P-521 with SHA-256/384/512 and the signature as r||s of fixed length, and 14 Digital
Signature: one octet with the length of the DER AlgorithmIdentifier, the AlgorithmIdentifier,
then the signature (PKCS#1 v1.5, RSASSA-PSS with its parameters, ECDSA as a DER
ECDSA-Sig-Value, Ed25519/Ed448 over the octets themselves).

Choosing the method 14 scheme follows strongSwan 5.9 (``select_signature_schemes`` in
pubkey_authenticator.c and ``signature_schemes_for_key`` in public_key.c): RSA PKCS#1 v1.5 with
SHA-256, SHA-384, SHA-512 for keys up to 3072 bits (SHA-384 first up to 7680 bits, SHA-512
above), the first one whose hash the peer listed; RSASSA-PSS only when asked (strongSwan's
``rsa_pss`` option); ECDSA with the curve's hash, then the stronger ones; EdDSA needs the
IDENTITY hash. When nothing fits, the legacy method (1, 9-11) is used.

IKEv1, as strongSwan's pubkey_v1_authenticator.c: RSA signs HASH_I/HASH_R with PKCS#1 v1.5
type 1 padding and no DigestInfo (SIGN_RSA_EMSA_PKCS1_NULL); ECDSA (methods 9/10/11) signs
HASH_I/HASH_R as the digest itself, without hashing it again (SIGN_ECDSA_WITH_NULL: OpenSSL's
EVP_PKEY_sign on the hash), and the signature is r||s, each as long as the curve's field.
"""

from __future__ import annotations

import hmac
import math
import secrets
from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, padding, rsa, utils

from ikeagent.crypto.pki import der
from ikeagent.crypto.pki.errors import SignatureInvalid

# RFC 7427 hash algorithm identifiers (SIGNATURE_HASH_ALGORITHMS notify, RFC 8420 IDENTITY)
HASH_SHA1, HASH_SHA256, HASH_SHA384, HASH_SHA512, HASH_IDENTITY = 1, 2, 3, 4, 5
SUPPORTED_HASHES: tuple[int, ...] = (HASH_SHA256, HASH_SHA384, HASH_SHA512, HASH_IDENTITY)

# IKEv2 authentication methods (RFC 7296 3.8, RFC 4754, RFC 7427)
AUTH_RSA_DIGITAL_SIGNATURE = 1
AUTH_ECDSA_SHA256_P256 = 9
AUTH_ECDSA_SHA384_P384 = 10
AUTH_ECDSA_SHA512_P521 = 11
AUTH_DIGITAL_SIGNATURE = 14
# IKEv1 Phase 1 authentication methods (RFC 2409 appendix A, RFC 4754)
V1_RSA_SIG = 3
V1_ECDSA_SHA256_P256 = 9
V1_ECDSA_SHA384_P384 = 10
V1_ECDSA_SHA512_P521 = 11

_HASHES: dict[int, Callable[[], hashes.HashAlgorithm]] = {
    HASH_SHA1: hashes.SHA1,
    HASH_SHA256: hashes.SHA256,
    HASH_SHA384: hashes.SHA384,
    HASH_SHA512: hashes.SHA512,
}
_HASH_NAMES = {
    HASH_SHA1: "SHA-1",
    HASH_SHA256: "SHA-256",
    HASH_SHA384: "SHA-384",
    HASH_SHA512: "SHA-512",
}

# OIDs
_OID_HASH = {
    "1.3.14.3.2.26": HASH_SHA1,
    "2.16.840.1.101.3.4.2.1": HASH_SHA256,
    "2.16.840.1.101.3.4.2.2": HASH_SHA384,
    "2.16.840.1.101.3.4.2.3": HASH_SHA512,
}
_HASH_OID = {v: k for k, v in _OID_HASH.items()}
_OID_RSA_PKCS1 = {
    "1.2.840.113549.1.1.5": HASH_SHA1,
    "1.2.840.113549.1.1.11": HASH_SHA256,
    "1.2.840.113549.1.1.12": HASH_SHA384,
    "1.2.840.113549.1.1.13": HASH_SHA512,
}
_RSA_PKCS1_OID = {v: k for k, v in _OID_RSA_PKCS1.items()}
_OID_ECDSA = {
    "1.2.840.10045.4.1": HASH_SHA1,
    "1.2.840.10045.4.3.2": HASH_SHA256,
    "1.2.840.10045.4.3.3": HASH_SHA384,
    "1.2.840.10045.4.3.4": HASH_SHA512,
}
_ECDSA_OID = {v: k for k, v in _OID_ECDSA.items()}
_OID_RSASSA_PSS = "1.2.840.113549.1.1.10"
_OID_MGF1 = "1.2.840.113549.1.1.8"
_OID_ED25519 = "1.3.101.112"
_OID_ED448 = "1.3.101.113"

# curve name -> (IKEv2/IKEv1 ECDSA method, hash of RFC 4754, field octets)
_CURVES: dict[str, tuple[int, int, int]] = {
    "secp256r1": (AUTH_ECDSA_SHA256_P256, HASH_SHA256, 32),
    "secp384r1": (AUTH_ECDSA_SHA384_P384, HASH_SHA384, 48),
    "secp521r1": (AUTH_ECDSA_SHA512_P521, HASH_SHA512, 66),
}
_METHOD_CURVE = {v[0]: k for k, v in _CURVES.items()}


@dataclass(frozen=True, slots=True)
class Scheme:
    """A parsed or chosen RFC 7427 signature scheme."""

    kind: str  # "rsa-pkcs1", "rsa-pss", "ecdsa", "ed25519", "ed448"
    hash_id: int  # RFC 7427 hash number (IDENTITY for EdDSA)
    algid: bytes  # DER AlgorithmIdentifier
    mgf_hash: int = 0  # RSASSA-PSS only
    salt: int = 0  # RSASSA-PSS only

    @property
    def name(self) -> str:
        if self.kind in ("ed25519", "ed448"):
            return self.kind.capitalize()
        base = {"rsa-pkcs1": "RSA PKCS#1 v1.5", "rsa-pss": "RSASSA-PSS", "ecdsa": "ECDSA"}
        return f"{base[self.kind]} with {_HASH_NAMES[self.hash_id]}"


# ---------------------------------------------------------------- AlgorithmIdentifiers


def _hash_algid(hash_id: int) -> bytes:
    return der.sequence(der.oid(_HASH_OID[hash_id]), der.encode(der.NULL, b""))


def rsa_pkcs1_algid(hash_id: int) -> bytes:
    """sha1/sha256/sha384/sha512WithRSAEncryption with NULL parameters (RFC 4055)."""
    return der.sequence(der.oid(_RSA_PKCS1_OID[hash_id]), der.encode(der.NULL, b""))


def ecdsa_algid(hash_id: int) -> bytes:
    """ecdsa-with-SHA1/SHA256/SHA384/SHA512, parameters absent (RFC 5758 3.2)."""
    return der.sequence(der.oid(_ECDSA_OID[hash_id]))


def eddsa_algid(kind: str = "ed25519") -> bytes:
    """id-Ed25519 / id-Ed448, parameters absent (RFC 8410 3, RFC 8420)."""
    return der.sequence(der.oid(_OID_ED25519 if kind == "ed25519" else _OID_ED448))


def rsa_pss_algid(hash_id: int, salt: int | None = None, mgf_hash: int | None = None) -> bytes:
    """RSASSA-PSS with explicit RSASSA-PSS-params (RFC 4055 3.1): hashAlgorithm,
    maskGenAlgorithm MGF1 with its hash, saltLength (default: the hash length); the
    trailerField is left at its default."""
    mgf_hash = mgf_hash or hash_id
    if salt is None:
        salt = _HASHES[hash_id]().digest_size
    params = der.sequence(
        der.encode(0xA0, _hash_algid(hash_id)),
        der.encode(0xA1, der.sequence(der.oid(_OID_MGF1), _hash_algid(mgf_hash))),
        der.encode(0xA2, der.integer(salt)),
    )
    return der.sequence(der.oid(_OID_RSASSA_PSS), params)


def _hash_from_algid(tlv: der.Tlv) -> int:
    parts = der.children(tlv.value) if tlv.tag == der.SEQUENCE else []
    if not parts:
        raise ValueError("bad hash AlgorithmIdentifier")
    h = _OID_HASH.get(der.read_oid(parts[0]))
    if h is None:
        raise ValueError(f"unsupported hash {der.read_oid(parts[0])}")
    if len(parts) > 2 or (len(parts) == 2 and parts[1].tag != der.NULL):
        raise ValueError("unexpected hash parameters")
    return h


def _parse_pss_params(params: der.Tlv | None) -> tuple[int, int, int]:
    """(hash, mgf1 hash, salt) of RSASSA-PSS-params; absent fields take the defaults
    (SHA-1, MGF1 with SHA-1, 20); the trailerField must be 1."""
    h, mgf, salt = HASH_SHA1, HASH_SHA1, 20
    if params is None:
        return h, mgf, salt
    if params.tag != der.SEQUENCE:
        raise ValueError("RSASSA-PSS parameters must be a SEQUENCE")
    last = -1
    for field in der.children(params.value):
        num = field.tag - 0xA0
        if not 0 <= num <= 3 or num <= last:
            raise ValueError("bad RSASSA-PSS parameter field")
        last = num
        inner = der.read_one(field.value)
        if num == 0:
            h = _hash_from_algid(inner)
        elif num == 1:
            parts = der.children(inner.value) if inner.tag == der.SEQUENCE else []
            if len(parts) != 2 or der.read_oid(parts[0]) != _OID_MGF1:
                raise ValueError("unsupported mask generation function")
            mgf = _hash_from_algid(parts[1])
        elif num == 2:
            salt = der.read_integer(inner)
            if not 0 <= salt <= 1024:
                raise ValueError("bad RSASSA-PSS salt length")
        elif der.read_integer(inner) != 1:
            raise ValueError("unsupported RSASSA-PSS trailer field")
    return h, mgf, salt


def parse_algid(algid: bytes) -> Scheme:
    """The signature scheme of a DER AlgorithmIdentifier; ValueError if unknown/malformed."""
    tlv = der.read_one(algid, der.SEQUENCE)
    parts = der.children(tlv.value)
    if not 1 <= len(parts) <= 2:
        raise ValueError("bad AlgorithmIdentifier")
    oid = der.read_oid(parts[0])
    params = parts[1] if len(parts) == 2 else None
    no_params = params is None or (params.tag == der.NULL and not params.value)
    if oid in _OID_RSA_PKCS1:
        if not no_params:
            raise ValueError("unexpected parameters for PKCS#1 v1.5")
        return Scheme("rsa-pkcs1", _OID_RSA_PKCS1[oid], algid)
    if oid in _OID_ECDSA:
        if not no_params:
            raise ValueError("unexpected parameters for ECDSA")
        return Scheme("ecdsa", _OID_ECDSA[oid], algid)
    if oid in (_OID_ED25519, _OID_ED448):
        if params is not None:
            raise ValueError("unexpected parameters for EdDSA")
        return Scheme("ed25519" if oid == _OID_ED25519 else "ed448", HASH_IDENTITY, algid)
    if oid == _OID_RSASSA_PSS:
        h, mgf, salt = _parse_pss_params(params)
        return Scheme("rsa-pss", h, algid, mgf, salt)
    raise ValueError(f"unsupported signature algorithm {oid}")


# ---------------------------------------------------------------- low-level sign/verify


def _rs_to_fixed(der_sig: bytes, size: int) -> bytes:
    r, s = utils.decode_dss_signature(der_sig)
    return r.to_bytes(size, "big") + s.to_bytes(size, "big")


def _fixed_to_der(sig: bytes, size: int) -> bytes:
    if len(sig) != 2 * size:
        raise SignatureInvalid(f"ECDSA signature is {len(sig)} octets, expected {2 * size}")
    r = int.from_bytes(sig[:size], "big")
    s = int.from_bytes(sig[size:], "big")
    return utils.encode_dss_signature(r, s)


def _pss(scheme: Scheme) -> padding.PSS:
    return padding.PSS(mgf=padding.MGF1(_HASHES[scheme.mgf_hash]()), salt_length=scheme.salt)


def _sign_scheme(key: Any, scheme: Scheme, octets: bytes) -> bytes:
    if scheme.kind == "rsa-pkcs1":
        return key.sign(octets, padding.PKCS1v15(), _HASHES[scheme.hash_id]())
    if scheme.kind == "rsa-pss":
        return key.sign(octets, _pss(scheme), _HASHES[scheme.hash_id]())
    if scheme.kind == "ecdsa":
        return key.sign(octets, ec.ECDSA(_HASHES[scheme.hash_id]()))
    return key.sign(octets)  # EdDSA


_KEY_FITS: dict[str, tuple[type, ...]] = {
    "rsa-pkcs1": (rsa.RSAPublicKey,),
    "rsa-pss": (rsa.RSAPublicKey,),
    "ecdsa": (ec.EllipticCurvePublicKey,),
    "ed25519": (ed25519.Ed25519PublicKey,),
    "ed448": (ed448.Ed448PublicKey,),
}


def _verify_scheme(key: Any, scheme: Scheme, sig: bytes, octets: bytes) -> None:
    if not isinstance(key, _KEY_FITS[scheme.kind]):
        raise SignatureInvalid(f"a {_key_kind(key)} key cannot verify a {scheme.name} signature")
    try:
        if scheme.kind == "rsa-pkcs1":
            key.verify(sig, octets, padding.PKCS1v15(), _HASHES[scheme.hash_id]())
        elif scheme.kind == "rsa-pss":
            key.verify(sig, octets, _pss(scheme), _HASHES[scheme.hash_id]())
        elif scheme.kind == "ecdsa":
            key.verify(sig, octets, ec.ECDSA(_HASHES[scheme.hash_id]()))
        else:
            key.verify(sig, octets)
    except (InvalidSignature, ValueError, UnsupportedAlgorithm):
        raise SignatureInvalid(f"{scheme.name} signature does not verify")


def _key_kind(key: Any) -> str:
    if isinstance(key, rsa.RSAPublicKey | rsa.RSAPrivateKey):
        return "RSA"
    if isinstance(key, ec.EllipticCurvePublicKey | ec.EllipticCurvePrivateKey):
        return f"ECDSA ({key.curve.name})"
    if isinstance(key, ed25519.Ed25519PublicKey | ed25519.Ed25519PrivateKey):
        return "Ed25519"
    if isinstance(key, ed448.Ed448PublicKey | ed448.Ed448PrivateKey):
        return "Ed448"
    return type(key).__name__


# ---------------------------------------------------------------- IKEv2


def _rsa_hash_order(bits: int) -> tuple[int, ...]:
    if bits <= 3072:
        return (HASH_SHA256, HASH_SHA384, HASH_SHA512)
    if bits <= 7680:
        return (HASH_SHA384, HASH_SHA512, HASH_SHA256)
    return (HASH_SHA512, HASH_SHA384, HASH_SHA256)


def candidate_schemes(
    private_key: Any, peer_hashes: Collection[int], *, rsa_pss: bool = False
) -> list[Scheme]:
    """The RFC 7427 schemes we would use with this key, best first, limited to the hashes the
    peer announced."""
    peer = {int(h) for h in peer_hashes}
    out: list[Scheme] = []
    if isinstance(private_key, rsa.RSAPrivateKey):
        for h in _rsa_hash_order(private_key.key_size):
            if h in peer:
                if rsa_pss:
                    out.append(Scheme("rsa-pss", h, rsa_pss_algid(h), h, _HASHES[h]().digest_size))
                out.append(Scheme("rsa-pkcs1", h, rsa_pkcs1_algid(h)))
    elif isinstance(private_key, ec.EllipticCurvePrivateKey):
        own = _CURVES.get(private_key.curve.name, (0, HASH_SHA512, 0))[1]
        for h in (HASH_SHA256, HASH_SHA384, HASH_SHA512):
            if h >= own and h in peer:
                out.append(Scheme("ecdsa", h, ecdsa_algid(h)))
    elif isinstance(private_key, ed25519.Ed25519PrivateKey):
        if HASH_IDENTITY in peer:
            out.append(Scheme("ed25519", HASH_IDENTITY, eddsa_algid("ed25519")))
    elif isinstance(private_key, ed448.Ed448PrivateKey) and HASH_IDENTITY in peer:
        out.append(Scheme("ed448", HASH_IDENTITY, eddsa_algid("ed448")))
    return out


def sign_v2(
    private_key: Any, octets: bytes, peer_hashes: Collection[int], *, rsa_pss: bool = False
) -> tuple[int, bytes]:
    """(AUTH method, AUTH data) signing the IKEv2 signed octets.

    With ``peer_hashes`` (the peer's SIGNATURE_HASH_ALGORITHMS) method 14 is used when a scheme
    fits, else the legacy method for the key: 1 for RSA, 9/10/11 for ECDSA P-256/384/521;
    EdDSA without the IDENTITY hash raises SignatureInvalid."""
    schemes = candidate_schemes(private_key, peer_hashes, rsa_pss=rsa_pss) if peer_hashes else []
    if schemes:
        scheme = schemes[0]
        sig = _sign_scheme(private_key, scheme, octets)
        return AUTH_DIGITAL_SIGNATURE, bytes([len(scheme.algid)]) + scheme.algid + sig
    if isinstance(private_key, rsa.RSAPrivateKey):
        return AUTH_RSA_DIGITAL_SIGNATURE, private_key.sign(
            octets, padding.PKCS1v15(), hashes.SHA1()
        )
    if isinstance(private_key, ec.EllipticCurvePrivateKey):
        curve = _CURVES.get(private_key.curve.name)
        if curve is None:
            raise SignatureInvalid(
                f"ECDSA key on {private_key.curve.name} needs RFC 7427 signature authentication"
            )
        method, h, size = curve
        sig = private_key.sign(octets, ec.ECDSA(_HASHES[h]()))
        return method, _rs_to_fixed(sig, size)
    if isinstance(private_key, ed25519.Ed25519PrivateKey | ed448.Ed448PrivateKey):
        raise SignatureInvalid(
            f"{_key_kind(private_key)} keys need RFC 7427 signature authentication with the "
            "IDENTITY hash (RFC 8420), which the peer did not announce"
        )
    raise SignatureInvalid(f"unsupported private key type {_key_kind(private_key)}")


def parse_auth_data(data: bytes) -> tuple[Scheme, bytes]:
    """(scheme, signature) of method 14 AUTH data; SignatureInvalid if malformed/unknown."""
    if len(data) < 2:
        raise SignatureInvalid("AUTH data too short for a signature")
    n = data[0]
    if n == 0 or 1 + n > len(data):
        raise SignatureInvalid("bad AlgorithmIdentifier length in AUTH data")
    try:
        scheme = parse_algid(bytes(data[1 : 1 + n]))
    except ValueError as e:
        raise SignatureInvalid(f"unknown AlgorithmIdentifier in AUTH data: {e}")
    return scheme, bytes(data[1 + n :])


def verify_v2(public_key: Any, method: int, data: bytes, octets: bytes) -> None:
    """Check IKEv2 AUTH data of ``method`` (1, 9, 10, 11 or 14) over ``octets`` with the
    peer's public key; raises SignatureInvalid with the reason."""
    data = bytes(data)
    if method == AUTH_RSA_DIGITAL_SIGNATURE:
        _verify_scheme(public_key, Scheme("rsa-pkcs1", HASH_SHA1, b""), data, octets)
        return
    if method in _METHOD_CURVE:
        curve = _METHOD_CURVE[method]
        if not isinstance(public_key, ec.EllipticCurvePublicKey) or public_key.curve.name != curve:
            raise SignatureInvalid(
                f"AUTH method {method} needs an ECDSA key on {curve}, "
                f"the certificate has {_key_kind(public_key)}"
            )
        _, h, size = _CURVES[curve]
        _verify_scheme(public_key, Scheme("ecdsa", h, b""), _fixed_to_der(data, size), octets)
        return
    if method == AUTH_DIGITAL_SIGNATURE:
        scheme, sig = parse_auth_data(data)
        _verify_scheme(public_key, scheme, sig, octets)
        return
    raise SignatureInvalid(f"unsupported AUTH method {method} for public key authentication")


# ---------------------------------------------------------------- IKEv1


def v1_auth_method(key: Any) -> int:
    """IKEv1 Phase 1 authentication method for a key: 3 RSA, 9/10/11 ECDSA P-256/384/521."""
    if isinstance(key, rsa.RSAPrivateKey | rsa.RSAPublicKey):
        return V1_RSA_SIG
    if isinstance(key, ec.EllipticCurvePrivateKey | ec.EllipticCurvePublicKey):
        curve = _CURVES.get(key.curve.name)
        if curve is None:
            raise SignatureInvalid(f"no IKEv1 authentication method for ECDSA on {key.curve.name}")
        return curve[0]
    raise SignatureInvalid(f"no IKEv1 authentication method for {_key_kind(key)} keys")


def _emsa_pkcs1_null(hash_value: bytes, k: int) -> bytes:
    """EMSA-PKCS1-v1_5 encoding with the hash in place of the DigestInfo (RFC 8017 9.2
    without step 2): 00 01 FF..FF 00 || hash, at least 8 FF octets."""
    if len(hash_value) > k - 11:
        raise SignatureInvalid("hash too long for the RSA key")
    return b"\x00\x01" + b"\xff" * (k - 3 - len(hash_value)) + b"\x00" + hash_value


def _rsa_private_op(key: rsa.RSAPrivateKey, m: int) -> int:
    """m^d mod n with CRT and multiplicative blinding (random r, m' = m r^e)."""
    priv = key.private_numbers()
    pub = priv.public_numbers
    n, e = pub.n, pub.e
    while True:
        r = secrets.randbelow(n - 2) + 2
        if math.gcd(r, n) == 1:
            break
    blinded = (m * pow(r, e, n)) % n
    s1 = pow(blinded, priv.dmp1, priv.p)
    s2 = pow(blinded, priv.dmq1, priv.q)
    h = (priv.iqmp * (s1 - s2)) % priv.p
    s = (s2 + h * priv.q) % n
    return (s * pow(r, -1, n)) % n


def _sign_v1_rsa(key: rsa.RSAPrivateKey, hash_value: bytes) -> bytes:
    k = (key.key_size + 7) // 8
    em = _emsa_pkcs1_null(hash_value, k)
    m = int.from_bytes(em, "big")
    s = _rsa_private_op(key, m)
    pub = key.public_key()
    if pow(s, pub.public_numbers().e, pub.public_numbers().n) != m:
        raise SignatureInvalid("RSA signature computation failed its check")
    sig = s.to_bytes(k, "big")
    _verify_v1_rsa(pub, hash_value, sig)
    return sig


def _verify_v1_rsa(key: Any, hash_value: bytes, sig: bytes) -> None:
    if not isinstance(key, rsa.RSAPublicKey):
        raise SignatureInvalid(f"IKEv1 RSA signature needs an RSA key, not {_key_kind(key)}")
    if len(sig) != (key.key_size + 7) // 8:
        raise SignatureInvalid("RSA signature has the wrong length for the key")
    try:
        recovered = key.recover_data_from_signature(sig, padding.PKCS1v15(), None)
    except (InvalidSignature, ValueError):
        raise SignatureInvalid("RSA signature does not verify")
    if not hmac.compare_digest(recovered, bytes(hash_value)):
        raise SignatureInvalid("RSA signature does not verify")


_PREHASH_BY_LEN: dict[int, Callable[[], hashes.HashAlgorithm]] = {
    16: hashes.MD5,
    20: hashes.SHA1,
    28: hashes.SHA224,
    32: hashes.SHA256,
    48: hashes.SHA384,
    64: hashes.SHA512,
}


def _prehashed(hash_value: bytes) -> ec.ECDSA:
    alg = _PREHASH_BY_LEN.get(len(hash_value))
    if alg is None:
        raise SignatureInvalid(f"cannot use a {len(hash_value)}-octet hash with ECDSA")
    return ec.ECDSA(utils.Prehashed(alg()))


def sign_v1(private_key: Any, hash_value: bytes) -> bytes:
    """IKEv1 SIG payload data over HASH_I/HASH_R (see the module docstring)."""
    hash_value = bytes(hash_value)
    if isinstance(private_key, rsa.RSAPrivateKey):
        return _sign_v1_rsa(private_key, hash_value)
    if isinstance(private_key, ec.EllipticCurvePrivateKey):
        v1_auth_method(private_key)
        size = _CURVES[private_key.curve.name][2]
        return _rs_to_fixed(private_key.sign(hash_value, _prehashed(hash_value)), size)
    v1_auth_method(private_key)  # raises with the reason
    raise SignatureInvalid(f"cannot sign IKEv1 with {_key_kind(private_key)}")


def verify_v1(public_key: Any, method: int, hash_value: bytes, sig: bytes) -> None:
    """Check IKEv1 SIG data for auth ``method`` (3, 9, 10, 11); SignatureInvalid on failure."""
    hash_value, sig = bytes(hash_value), bytes(sig)
    if method == V1_RSA_SIG:
        _verify_v1_rsa(public_key, hash_value, sig)
        return
    curve = _METHOD_CURVE.get(method)
    if curve is None:
        raise SignatureInvalid(f"unsupported IKEv1 signature method {method}")
    if not isinstance(public_key, ec.EllipticCurvePublicKey) or public_key.curve.name != curve:
        raise SignatureInvalid(
            f"IKEv1 method {method} needs an ECDSA key on {curve}, not {_key_kind(public_key)}"
        )
    der_sig = _fixed_to_der(sig, _CURVES[curve][2])
    try:
        public_key.verify(der_sig, hash_value, _prehashed(hash_value))
    except (InvalidSignature, ValueError):
        raise SignatureInvalid("ECDSA signature does not verify")
