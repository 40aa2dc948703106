"""Signature authentication of Phase 1 (RFC 2409 5.1, RFC 4754; CERT and CR payloads of
RFC 2408 3.9/3.10), as strongSwan's charon does it:

- the Authentication Method attribute names the key: 3 RSA signatures, 9/10/11 ECDSA with
  SHA-256/384/512 on P-256/P-384/P-521; both sides use the one method of the chosen transform;
- SKEYID = prf(Ni_b | Nr_b, g^xy);
- HASH_I/HASH_R are computed with the negotiated hash for RSA, but with HMAC-SHA-256/384/512
  (the method's hash) for ECDSA (charon's keymat_v1 ``prf_auth``); SIG is the RSA PKCS#1 v1.5
  type 1 signature of that HASH without DigestInfo, or ECDSA over the HASH as digest (r | s);
- CR (encoding 4) carries the DER subject DN of each CA we trust for the peer (none: one empty
  CR, which still asks for the certificate); CERT (encoding 4) our certificate, then each
  intermediate as one more CERT (Aggressive Mode carries only one CERT in charon).

Certificates are validated with ``ikeagent.engine.pubkey_auth`` (shared with IKEv2).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa

from ikeagent.config.model import AuthMethod, ConnectionConfig, Identity
from ikeagent.crypto.pki.errors import PkiError
from ikeagent.crypto.v1.iana import AuthMethod as V1Auth
from ikeagent.crypto.v1.iana import IkeHash
from ikeagent.wire import v1 as w1

if TYPE_CHECKING:
    from ikeagent.engine.ikev1.engine import V1Engine
    from ikeagent.engine.ikev1.sa import V1Sa

CERT_X509_SIGNATURE = 4  # RFC 2408 3.9 certificate encoding

SIGNATURE_METHODS = frozenset(
    {
        V1Auth.RSA_SIGNATURES,
        V1Auth.ECDSA_SHA256_P256,
        V1Auth.ECDSA_SHA384_P384,
        V1Auth.ECDSA_SHA512_P521,
    }
)

METHOD_NAMES = {
    V1Auth.PRE_SHARED_KEY: "pre-shared key",
    V1Auth.RSA_SIGNATURES: "RSA signatures",
    V1Auth.ECDSA_SHA256_P256: "ECDSA-256 signatures",
    V1Auth.ECDSA_SHA384_P384: "ECDSA-384 signatures",
    V1Auth.ECDSA_SHA512_P521: "ECDSA-521 signatures",
}

# RFC 4754 (as charon computes it): the HASH signed with ECDSA is made with the method's hash
_AUTH_HASH = {
    V1Auth.ECDSA_SHA256_P256: IkeHash.SHA2_256,
    V1Auth.ECDSA_SHA384_P384: IkeHash.SHA2_384,
    V1Auth.ECDSA_SHA512_P521: IkeHash.SHA2_512,
}

_CURVES = {"secp256r1": 9, "secp384r1": 10, "secp521r1": 11}


def method_name(method: int) -> str:
    return METHOD_NAMES.get(method, f"authentication method {method}")


def is_signature(method: int | None) -> bool:
    return method in SIGNATURE_METHODS


def key_problem(public_key: Any) -> str | None:
    """Why a certificate key cannot authenticate IKEv1 (None: it can)."""
    if isinstance(public_key, ed25519.Ed25519PublicKey | ed448.Ed448PublicKey):
        name = "Ed25519" if isinstance(public_key, ed25519.Ed25519PublicKey) else "Ed448"
        return (
            f"the certificate's key is {name}, which IKEv1 cannot use (it defines RSA and "
            "ECDSA P-256/P-384/P-521 signatures only); use an RSA or ECDSA certificate, or "
            "version: 2"
        )
    if isinstance(public_key, ec.EllipticCurvePublicKey) and public_key.curve.name not in _CURVES:
        return (
            f"the certificate's key is ECDSA on {public_key.curve.name}: IKEv1 (RFC 4754) "
            "defines P-256, P-384 and P-521 only"
        )
    if not isinstance(public_key, rsa.RSAPublicKey | ec.EllipticCurvePublicKey):
        return f"the certificate's key ({type(public_key).__name__}) cannot sign IKEv1 messages"
    return None


def _key_method(public_key: Any) -> int:
    from ikeagent.crypto.pki.signatures import v1_auth_method

    return int(v1_auth_method(public_key))


def conn_method(conn: ConnectionConfig) -> int | None:
    """The Authentication Method attribute the connection offers / accepts (None: none)."""
    local, remote = conn.local.auth, conn.remote.auth
    if local is AuthMethod.PSK and remote is AuthMethod.PSK:
        return int(V1Auth.PRE_SHARED_KEY)
    if local is AuthMethod.PUBKEY and remote is AuthMethod.PUBKEY and conn.local.certs:
        key = conn.local.certs[0].public_key()
        if key_problem(key) is not None:
            return None
        try:
            return _key_method(key)
        except PkiError:
            return None
    return None


def method_problem(conn: ConnectionConfig) -> str:
    """Why ``conn_method`` gives None, for the log."""
    if conn.local.auth is not conn.remote.auth:
        return (
            "IKEv1 authenticates both peers with one method: local.auth and remote.auth must "
            "both be psk or both pubkey"
        )
    if not conn.local.certs:
        return "auth pubkey needs our certificate (local.certs)"
    return f"local.certs: {key_problem(conn.local.certs[0].public_key()) or 'unusable key'}"


def auth_hash_id(sa: V1Sa) -> int:
    """The hash of the prf that makes HASH_I/HASH_R (RFC 4754 for ECDSA, else negotiated)."""
    assert sa.transform is not None
    return int(_AUTH_HASH.get(sa.transform.auth_method, sa.transform.hash_id))


def _der(cert: Any) -> bytes:
    return cert.public_bytes(serialization.Encoding.DER)


def cert_requests(conn: ConnectionConfig) -> list[w1.Payload]:
    """CR payloads for the CAs we trust for the peer (one empty CR without any)."""
    cas = [c for c in conn.remote.cacerts]
    if not cas:
        return [w1.CertificateRequest(CERT_X509_SIGNATURE, b"")]
    return [w1.CertificateRequest(CERT_X509_SIGNATURE, c.subject.public_bytes()) for c in cas]


def cert_payloads(conn: ConnectionConfig, *, max_certs: int | None = None) -> list[w1.Payload]:
    certs = list(conn.local.certs)
    if max_certs is not None:
        certs = certs[:max_certs]
    return [w1.Certificate(CERT_X509_SIGNATURE, _der(c)) for c in certs]


def signer(eng: V1Engine, sa: V1Sa) -> Any:
    """Our private key; PkiError with the reason (no key, refused key file, wrong key)."""
    from ikeagent.engine.pubkey_auth import local_signer

    assert sa.conn is not None
    return local_signer(sa.conn)


def sign(sa: V1Sa, key: Any, hash_value: bytes) -> w1.Signature:
    from ikeagent.crypto.pki.signatures import sign_v1

    return w1.Signature(sign_v1(key, hash_value))


def verify_peer(
    eng: V1Engine, sa: V1Sa, payloads: list, remote_id: Identity, expected: bytes
) -> str | None:
    """Check the peer's certificate (chain, dates, CRLs, identity, pin) and its SIG over the
    HASH we expect; None when both hold, else the reason for the log."""
    from ikeagent.crypto.pki.names import describe
    from ikeagent.crypto.pki.signatures import verify_v1
    from ikeagent.engine.pubkey_auth import peer_certificate

    assert sa.conn is not None and sa.transform is not None
    certs = [
        p.data
        for p in payloads
        if isinstance(p, w1.Certificate) and int(p.encoding) == CERT_X509_SIGNATURE
    ]
    sig = next((p for p in payloads if isinstance(p, w1.Signature)), None)
    if sig is None:
        return "the peer's message has no SIG payload"
    try:
        cert = peer_certificate(sa.conn, certs, remote_id, eng.core.wall_time())
    except PkiError as exc:
        return f"certificate refused: {exc}"
    method = sa.transform.auth_method
    try:
        verify_v1(cert.public_key(), method, expected, sig.data)
    except PkiError as exc:
        return f"signature of {describe(cert)} does not verify ({method_name(method)}): {exc}"
    sa.peer_cert = cert
    return None
