"""Certificate authentication shared by both IKE versions: the peer's certificate from its CERT
payloads (chain, dates, revocation, identity, pin) and our signing key.

Both functions raise with a reason a log line can carry as it is (never key material):

    cert = peer_certificate(conn, [cert.data for cert in cert_payloads], remote_id, now)
    key = local_signer(conn)
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from ikeagent.config.model import AuthMethod, ConnectionConfig, Identity
from ikeagent.crypto.pki.errors import CertificateInvalid, PkiError
from ikeagent.crypto.pki.files import spki_der
from ikeagent.crypto.pki.names import cert_matches_identity, describe
from ikeagent.crypto.pki.validate import TrustPolicy, validate_chain

__all__ = [
    "cert_der",
    "local_signer",
    "parse_certificates",
    "peer_certificate",
    "trust_policy",
    "wants_pubkey",
]

MAX_PEER_CERTS = 8  # end entity + intermediates; more is a peer flooding us


def wants_pubkey(auth: Any) -> bool:
    """Whether an AuthConfig authenticates with certificates."""
    return auth.auth is AuthMethod.PUBKEY


def trust_policy(conn: ConnectionConfig) -> TrustPolicy:
    """The TrustPolicy of the connection's remote round: its CA certificates, and its pinned
    peer certificates (``remote.certs``), which are trusted as they are."""
    r = conn.remote
    return TrustPolicy(anchors=(*r.cacerts, *r.certs), crls=tuple(r.crls), revocation=r.revocation)


def cert_der(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.DER)


def parse_certificates(certs: Sequence[bytes]) -> list[x509.Certificate]:
    """The peer's CERT payload contents (DER X.509), in order. CertificateInvalid if one is
    not a certificate or there are none or too many."""
    if not certs:
        raise CertificateInvalid("peer sent no certificate")
    if len(certs) > MAX_PEER_CERTS:
        raise CertificateInvalid(f"peer sent {len(certs)} certificates (at most {MAX_PEER_CERTS})")
    out: list[x509.Certificate] = []
    for n, der in enumerate(certs, 1):
        try:
            out.append(x509.load_der_x509_certificate(bytes(der)))
        except ValueError as e:
            raise CertificateInvalid(f"peer's certificate #{n} is not valid DER X.509: {e}")
    return out


def peer_certificate(
    conn: ConnectionConfig, certs: Sequence[bytes], remote_id: Identity, now: float
) -> x509.Certificate:
    """The peer's end-entity certificate (``certs[0]``; the others are intermediates),
    validated against ``conn.remote``: the chain to one of ``cacerts`` with CRLs and the
    revocation policy at ``now`` (POSIX seconds); the pinned ``remote.certs`` if any (a pinned
    certificate is trusted as it is, its dates still checked); and
    ``remote_id`` (the IDi/IDr the peer sent) named by the certificate. Raises
    CertificateInvalid with the reason."""
    remote = conn.remote
    if not certs and remote.certs:
        # a peer that sends no certificate (charon's send_cert = never) is checked against
        # the pinned one that names its identity
        pinned = [c for c in remote.certs if cert_matches_identity(c, remote_id)]
        if not pinned:
            raise CertificateInvalid(
                f"peer sent no certificate and none in remote.certs names '{remote_id}'"
            )
        validate_chain(pinned[0], (), trust_policy(conn), now)
        return pinned[0]
    parsed = parse_certificates(certs)
    ee, intermediates = parsed[0], parsed[1:]
    if remote.certs:
        mine = cert_der(ee)
        if not any(cert_der(c) == mine for c in remote.certs):
            raise CertificateInvalid(
                f"certificate {describe(ee)} is not the certificate configured in remote.certs"
            )
    validate_chain(ee, intermediates, trust_policy(conn), now)
    if not cert_matches_identity(ee, remote_id):
        raise CertificateInvalid(f"identity '{remote_id}' is not in certificate {describe(ee)}")
    return ee


def local_signer(conn: ConnectionConfig) -> Any:
    """The private key to sign our AUTH with (``cryptography`` key object). PkiError with the
    reason when there is no certificate, no key, the key was refused at load (e.g. a file
    readable by others), or it does not belong to ``local.certs[0]``."""
    local = conn.local
    if not local.certs:
        raise PkiError(f"connection '{conn.name}' has no certificate (local.certs)")
    pk = local.key
    if pk is None:
        raise PkiError(f"no private key for our certificate {describe(local.certs[0])}")
    if pk.problem:
        raise PkiError(f"private key '{pk.name}' was refused: {pk.problem}")
    if pk.key is None:
        raise PkiError(f"private key '{pk.name}' is not loaded")
    want = spki_der(local.certs[0].public_key())
    have = pk.spki or spki_der(pk.key)
    if have != want:
        raise PkiError(
            f"private key '{pk.name}' does not belong to our certificate {describe(local.certs[0])}"
        )
    return pk.key
