"""Certificate authentication in IKEv2: CERT/CERTREQ payloads (RFC 7296 3.6, 3.7), the
SIGNATURE_HASH_ALGORITHMS notify (RFC 7427 4) and signature AUTH payloads (RFC 7296 3.8,
RFC 4754, RFC 7427). Failures raise PkiError with a reason for the log."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

from ikeagent.config.model import AuthConfig, AuthMethod, ConnectionConfig, Identity
from ikeagent.crypto.pki.certreq import certreq_data
from ikeagent.crypto.pki.errors import CertificateInvalid, PkiError, SignatureInvalid
from ikeagent.crypto.pki.names import describe, subject_identity
from ikeagent.crypto.pki.signatures import SUPPORTED_HASHES, sign_v2, verify_v2
from ikeagent.engine.ikev2.child_create import notify
from ikeagent.engine.ikev2.identities import matches
from ikeagent.engine.pubkey_auth import cert_der, local_signer, peer_certificate
from ikeagent.wire import v2 as w

if TYPE_CHECKING:
    from ikeagent.engine.ikev2.sa import IkeSa

X509 = w.CertEncoding.X509_CERT_SIGNATURE
PSK_METHOD = w.AuthMethod.SHARED_KEY_MESSAGE_INTEGRITY_CODE
SIGNATURE_METHODS = frozenset(
    {
        w.AuthMethod.RSA_DIGITAL_SIGNATURE,
        w.AuthMethod.ECDSA_SHA256_P256,
        w.AuthMethod.ECDSA_SHA384_P384,
        w.AuthMethod.ECDSA_SHA512_P521,
        w.AuthMethod.DIGITAL_SIGNATURE,
    }
)
MAX_HASH_IDS = 32  # a SIGNATURE_HASH_ALGORITHMS list longer than this is cut


def method_class(method: int) -> AuthMethod | None:
    """The configured auth (psk/pubkey) an AUTH method belongs to; None for others (EAP...)."""
    if int(method) == PSK_METHOD:
        return AuthMethod.PSK
    if int(method) in SIGNATURE_METHODS:
        return AuthMethod.PUBKEY
    return None


def method_name(method: int) -> str:
    return f"{w.AuthMethod(int(method)).name} ({int(method)})"


def uses_pubkey(conns: Iterable[ConnectionConfig]) -> bool:
    return any(
        c.local.auth is AuthMethod.PUBKEY or c.remote.auth is AuthMethod.PUBKEY for c in conns
    )


# ---- IKE_SA_INIT ----------------------------------------------------------------------------


def hash_notify() -> w.Notify:
    """N(SIGNATURE_HASH_ALGORITHMS) listing the hashes we can sign and verify with."""
    return notify(
        w.NotifyType.SIGNATURE_HASH_ALGORITHMS,
        b"".join(h.to_bytes(2, "big") for h in SUPPORTED_HASHES),
    )


def peer_hashes(payloads: Sequence[w.Payload]) -> tuple[int, ...]:
    """The hash IDs of the peer's SIGNATURE_HASH_ALGORITHMS notify (empty: none sent)."""
    n = w.find_notify(payloads, w.NotifyType.SIGNATURE_HASH_ALGORITHMS)
    if n is None:
        return ()
    data = bytes(n.data[: 2 * MAX_HASH_IDS])
    return tuple(int.from_bytes(data[i : i + 2], "big") for i in range(0, len(data) - 1, 2))


def certreq(anchors: Sequence[Any]) -> w.CertificateRequest | None:
    """CERTREQ with the SHA-1 key IDs of ``anchors`` (deduplicated); None when there are none."""
    unique: dict[bytes, Any] = {}
    for a in anchors:
        unique.setdefault(cert_der(a), a)
    if not unique:
        return None
    return w.CertificateRequest(X509, certreq_data(list(unique.values())))


def responder_certreq(conns: Iterable[ConnectionConfig]) -> w.CertificateRequest | None:
    """The responder's CERTREQ in IKE_SA_INIT: the CAs of every candidate wanting pubkey."""
    return certreq(
        [a for c in conns if c.remote.auth is AuthMethod.PUBKEY for a in c.remote.cacerts]
    )


# ---- IKE_AUTH -------------------------------------------------------------------------------


def default_identity(local: AuthConfig) -> Identity | None:
    """With pubkey and no ``local.id``: the certificate's subject DN (as strongSwan)."""
    if local.id is None and local.auth is AuthMethod.PUBKEY and local.certs:
        return subject_identity(local.certs[0])
    return local.id


def cert_payloads(conn: ConnectionConfig) -> list[w.Certificate]:
    """Our certificate and the intermediates configured after it, as CERT payloads."""
    return [w.Certificate(X509, cert_der(c)) for c in conn.local.certs]


def sign(conn: ConnectionConfig, sa: IkeSa, octets: bytes) -> w.Authentication:
    """Our signature AUTH payload; PkiError when the key is missing/refused or cannot sign
    for what the peer supports."""
    key = local_signer(conn)
    method, data = sign_v2(key, octets, sa.peer_hashes)
    return w.Authentication(w.AuthMethod(method), data)


def check_method(conn: ConnectionConfig, auth: w.Authentication) -> None:
    """The peer's AUTH method must be of the class configured in ``remote.auth``."""
    got = method_class(auth.method)
    want = conn.remote.auth
    if got is want:
        return
    used = (
        "a pre-shared key"
        if got is AuthMethod.PSK
        else "a signature"
        if got is AuthMethod.PUBKEY
        else f"AUTH method {method_name(auth.method)}"
    )
    raise PkiError(f"peer authenticated with {used}, but remote.auth is {want.value}")


def received_certs(payloads: Sequence[w.Payload]) -> list[bytes]:
    """The X.509 contents of the peer's CERT payloads, in order (other encodings ignored)."""
    certs = w.payloads_of(payloads, w.Certificate)
    x509s = [bytes(c.data) for c in certs if int(c.encoding) == X509]
    if certs and not x509s:
        kinds = ", ".join(sorted({w.CertEncoding(int(c.encoding)).name for c in certs}))
        raise CertificateInvalid(f"peer sent no X.509 certificate (CERT encodings: {kinds})")
    return x509s


def verify(
    conn: ConnectionConfig,
    payloads: Sequence[w.Payload],
    remote_id: Identity,
    auth: w.Authentication,
    octets: bytes,
    now: float,
) -> Any:
    """The peer's validated end-entity certificate once its signature AUTH verifies over
    ``octets``; PkiError with the reason otherwise."""
    check_method(conn, auth)
    if not matches(conn.remote.id, remote_id):
        raise CertificateInvalid(
            f"peer identity '{remote_id}' does not match remote.id '{conn.remote.id}'"
        )
    cert = peer_certificate(conn, received_certs(payloads), remote_id, now)
    try:
        verify_v2(cert.public_key(), int(auth.method), bytes(auth.data), octets)
    except SignatureInvalid as e:
        raise SignatureInvalid(
            f"signature does not verify with certificate {describe(cert)}: {e}"
        ) from None
    return cert
