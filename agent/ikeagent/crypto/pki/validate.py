"""Certificate chain validation: from the peer's end-entity certificate up to a configured CA.

The chain is built from the end entity: each issuer is looked up among the trust anchors first,
then among the intermediates (typically the peer's extra CERT payloads), by subject name
(RDN by RDN, string types ignored) and, when both carry them, authorityKeyIdentifier =
subjectKeyIdentifier. A candidate is taken when its key verifies the signature. Every
certificate's dates are checked, every issuer must be a CA (basicConstraints cA; keyUsage
keyCertSign when keyUsage is present; pathLenConstraint), and each certificate below an anchor
is checked against the CRLs of its issuer. Building stops at a configured anchor, which is
trusted as it is (no self-signature needed). At most ``MAX_CHAIN`` certificates.

Revocation policies (swanctl's ``revocation``):

- ``relaxed``: CRLs with a bad signature or not yet valid are ignored, a stale CRL (nextUpdate
  past) still counts; no CRL at all is fine.
- ``strict``: every certificate below the anchor needs a usable CRL of its issuer (valid
  signature, thisUpdate <= now <= nextUpdate); a CRL with a bad signature is an error.
- ``ifuri``: ``strict`` for certificates with a cRLDistributionPoints extension, else ``relaxed``.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, ed25519, rsa
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import ExtensionOID

from ikeagent.crypto.pki.errors import CertificateInvalid
from ikeagent.crypto.pki.names import dn_equal, dn_text, serial_text, subject_der

MAX_CHAIN = 8
REVOCATION_POLICIES = ("relaxed", "strict", "ifuri")
_DER = Encoding.DER

# critical extensions we understand (name constraints and policies are accepted, not enforced)
_KNOWN_CRITICAL = {
    ExtensionOID.BASIC_CONSTRAINTS,
    ExtensionOID.KEY_USAGE,
    ExtensionOID.EXTENDED_KEY_USAGE,
    ExtensionOID.SUBJECT_ALTERNATIVE_NAME,
    ExtensionOID.ISSUER_ALTERNATIVE_NAME,
    ExtensionOID.SUBJECT_KEY_IDENTIFIER,
    ExtensionOID.AUTHORITY_KEY_IDENTIFIER,
    ExtensionOID.CERTIFICATE_POLICIES,
    ExtensionOID.POLICY_CONSTRAINTS,
    ExtensionOID.INHIBIT_ANY_POLICY,
    ExtensionOID.NAME_CONSTRAINTS,
    ExtensionOID.CRL_DISTRIBUTION_POINTS,
}


@dataclass(frozen=True, slots=True)
class TrustPolicy:
    """What the peer's chain must lead to: the configured CA certificates (``remote.cacerts``),
    the CRLs to check against and the revocation policy (relaxed, strict or ifuri)."""

    anchors: tuple[x509.Certificate, ...]
    crls: tuple[x509.CertificateRevocationList, ...] = ()
    revocation: str = "relaxed"


def _name(cert: x509.Certificate) -> str:
    return dn_text(cert.subject)


def _when(t: dt.datetime) -> str:
    return t.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _ext(cert: x509.Certificate | x509.CertificateRevocationList, cls: type) -> Any:
    try:
        return cert.extensions.get_extension_for_class(cls).value
    except x509.ExtensionNotFound:
        return None
    except ValueError as e:
        raise CertificateInvalid(f"malformed {cls.__name__} extension: {e}")


def _check_dates(cert: x509.Certificate, now: dt.datetime) -> None:
    if now < cert.not_valid_before_utc:
        raise CertificateInvalid(
            f"certificate '{_name(cert)}' is not valid before {_when(cert.not_valid_before_utc)}"
        )
    if now > cert.not_valid_after_utc:
        raise CertificateInvalid(
            f"certificate '{_name(cert)}' expired on {_when(cert.not_valid_after_utc)}"
        )


def _check_critical(cert: x509.Certificate) -> None:
    try:
        exts = list(cert.extensions)
    except ValueError as e:
        raise CertificateInvalid(f"certificate has malformed extensions: {e}")
    for ext in exts:
        if ext.critical and ext.oid not in _KNOWN_CRITICAL:
            raise CertificateInvalid(
                f"certificate '{_name(cert)}' has an unsupported critical extension "
                f"{ext.oid.dotted_string}"
            )


def signed_by(cert: x509.Certificate, public_key: Any) -> bool:
    """Whether ``public_key`` verifies the certificate's signature (RSA PKCS#1 v1.5 and PSS,
    ECDSA, Ed25519, Ed448, DSA)."""
    sig, tbs = cert.signature, cert.tbs_certificate_bytes
    try:
        params = cert.signature_algorithm_parameters
        if isinstance(public_key, rsa.RSAPublicKey):
            public_key.verify(sig, tbs, params, cert.signature_hash_algorithm)
        elif isinstance(public_key, ec.EllipticCurvePublicKey):
            if not isinstance(params, ec.ECDSA):
                return False
            public_key.verify(sig, tbs, params)
        elif isinstance(public_key, ed25519.Ed25519PublicKey | ed448.Ed448PublicKey):
            if cert.signature_hash_algorithm is not None:
                return False
            public_key.verify(sig, tbs)
        elif isinstance(public_key, dsa.DSAPublicKey):
            public_key.verify(sig, tbs, cert.signature_hash_algorithm)
        else:
            return False
    except (InvalidSignature, UnsupportedAlgorithm, TypeError, ValueError):
        return False
    return True


def _key_ids_compatible(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    try:
        aki = _ext(cert, x509.AuthorityKeyIdentifier)
        ski = _ext(issuer, x509.SubjectKeyIdentifier)
    except CertificateInvalid:
        return True  # let the signature decide
    if aki is None or ski is None or aki.key_identifier is None:
        return True
    return aki.key_identifier == ski.digest


def _check_ca(issuer: x509.Certificate, below: int, anchor: bool) -> None:
    """``below``: how many CA certificates lie between the issuer and the end entity."""
    bc = _ext(issuer, x509.BasicConstraints)
    self_signed = dn_equal(issuer.issuer.public_bytes(), subject_der(issuer))
    if bc is None:
        # a configured X.509v1 root without extensions is accepted as a CA (as strongSwan)
        if not (anchor and self_signed and issuer.version == x509.Version.v1):
            raise CertificateInvalid(
                f"issuer '{_name(issuer)}' is not a CA (no basicConstraints cA)"
            )
    elif not bc.ca:
        raise CertificateInvalid(
            f"issuer '{_name(issuer)}' is not a CA (basicConstraints cA false)"
        )
    ku = _ext(issuer, x509.KeyUsage)
    if ku is not None and not ku.key_cert_sign:
        raise CertificateInvalid(
            f"issuer '{_name(issuer)}' may not sign certificates (keyUsage without keyCertSign)"
        )
    if bc is not None and bc.path_length is not None and below > bc.path_length:
        raise CertificateInvalid(
            f"path length constraint of '{_name(issuer)}' exceeded "
            f"({below} CA certificate(s) below it, at most {bc.path_length} allowed)"
        )


def _strict_for(cert: x509.Certificate, policy: str) -> bool:
    if policy == "strict":
        return True
    if policy == "ifuri":
        try:
            return _ext(cert, x509.CRLDistributionPoints) is not None
        except CertificateInvalid:
            return True
    return False


def _check_revocation(
    cert: x509.Certificate,
    issuer: x509.Certificate,
    crls: Sequence[x509.CertificateRevocationList],
    policy: str,
    now: dt.datetime,
) -> None:
    strict = _strict_for(cert, policy)
    issuer_name = subject_der(issuer)
    usable = False
    problems: list[str] = []
    for crl in crls:
        if not dn_equal(crl.issuer.public_bytes(), issuer_name):
            continue
        try:
            good_sig = crl.is_signature_valid(issuer.public_key())
        except (TypeError, ValueError, UnsupportedAlgorithm):
            good_sig = False
        if not good_sig:
            problem = f"the CRL of '{_name(issuer)}' has a bad signature"
            if strict:
                raise CertificateInvalid(f"{problem} (checking '{_name(cert)}')")
            problems.append(problem)
            continue
        this_update = crl.last_update_utc
        next_update = crl.next_update_utc
        if this_update > now:
            problems.append(
                f"the CRL of '{_name(issuer)}' is not valid before {_when(this_update)}"
            )
            continue
        revoked = crl.get_revoked_certificate_by_serial_number(cert.serial_number)
        if revoked is not None:
            raise CertificateInvalid(
                f"certificate '{_name(cert)}' (serial {serial_text(cert)}) is revoked "
                f"(CRL of '{_name(issuer)}', since {_when(revoked.revocation_date_utc)})"
            )
        if next_update is not None and next_update < now:
            problems.append(
                f"the CRL of '{_name(issuer)}' is stale (next update {_when(next_update)})"
            )
            continue
        usable = True
    if strict and not usable:
        detail = "; ".join(problems) if problems else f"no CRL of '{_name(issuer)}' is configured"
        raise CertificateInvalid(
            f"revocation status of certificate '{_name(cert)}' is unknown (strict): {detail}"
        )


def _find_issuer(
    cert: x509.Certificate,
    anchors: Sequence[x509.Certificate],
    intermediates: Sequence[x509.Certificate],
    used: set[bytes],
) -> tuple[x509.Certificate, bool]:
    issuer_name = cert.issuer.public_bytes()
    mismatched: x509.Certificate | None = None
    for pool, is_anchor in ((anchors, True), (intermediates, False)):
        for cand in pool:
            der_bytes = cand.public_bytes(_DER)
            if der_bytes in used and not is_anchor:
                continue  # a loop, or the certificate itself
            if not dn_equal(subject_der(cand), issuer_name):
                continue
            if not _key_ids_compatible(cert, cand):
                mismatched = mismatched or cand
                continue
            if signed_by(cert, cand.public_key()):
                return cand, is_anchor
            mismatched = mismatched or cand
    if mismatched is not None:
        raise CertificateInvalid(
            f"signature on certificate '{_name(cert)}' does not verify with the key of "
            f"'{_name(mismatched)}'"
        )
    raise CertificateInvalid(
        f"certificate '{_name(cert)}' is issued by '{dn_text(cert.issuer)}', "
        "which is not a trusted CA"
    )


def validate_chain(
    end_entity: x509.Certificate,
    intermediates: Sequence[x509.Certificate],
    policy: TrustPolicy,
    now: float,
) -> list[x509.Certificate]:
    """Validate ``end_entity`` up to one of ``policy.anchors``; ``now`` in POSIX seconds.

    Returns ``[end_entity, intermediates..., anchor]``; raises CertificateInvalid with the
    reason. An end entity that is itself exactly a configured anchor validates alone."""
    if policy.revocation not in REVOCATION_POLICIES:
        raise CertificateInvalid(f"unknown revocation policy {policy.revocation!r}")
    if not policy.anchors:
        raise CertificateInvalid("no CA certificates are configured to validate against")
    when = dt.datetime.fromtimestamp(now, dt.UTC)
    anchor_ders = {a.public_bytes(_DER) for a in policy.anchors}

    _check_critical(end_entity)
    _check_dates(end_entity, when)
    chain = [end_entity]
    if end_entity.public_bytes(_DER) in anchor_ders:
        return chain
    used = {end_entity.public_bytes(_DER)}
    current = end_entity
    while True:
        if len(chain) >= MAX_CHAIN:
            raise CertificateInvalid(
                f"certificate chain of '{_name(end_entity)}' is longer than {MAX_CHAIN} "
                "certificates"
            )
        issuer, is_anchor = _find_issuer(current, policy.anchors, intermediates, used)
        _check_critical(issuer)
        _check_ca(issuer, below=len(chain) - 1, anchor=is_anchor)
        _check_dates(issuer, when)
        _check_revocation(current, issuer, policy.crls, policy.revocation, when)
        chain.append(issuer)
        if is_anchor:
            return chain
        used.add(issuer.public_bytes(_DER))
        current = issuer
