# Copyright: contributors to the ikelab.ipsec collection
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""X.509 names and checks for the keygen module's certificates (needs ``cryptography``).

Pure functions over ``cryptography.x509``: subjectAltNames from IKE identities, distinguished
names in strongSwan's order (``C=CH, O=Org, CN=gw``, most significant first), building a CA
or an end-entity certificate, and the checks that decide whether an existing certificate is
kept (``reissue_reason``) or whether a certificate made elsewhere is acceptable
(``check_provided``). Every problem is a ``CertError`` naming the module's field. The files
and the backend are in ``cert_files``.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import secrets
from collections.abc import Sequence
from typing import Any

from ansible_collections.ikelab.ipsec.plugins.module_utils.keys import KeyFileError, fingerprint

RENEW_DAYS = 30
CA_DAYS = 3650
CERT_DAYS = 730
BACKDATE = dt.timedelta(minutes=5)  # tolerate clocks a little behind the controller's


class CertError(KeyFileError):
    """A certificate or its parameters are not acceptable; the message starts with the field."""

    def __init__(self, field_name: str, reason: str) -> None:
        super().__init__(f"{field_name}: {reason}")
        self.field = field_name
        self.reason = reason


def _x509() -> Any:
    try:
        from cryptography import x509
    except ImportError:
        raise KeyFileError("cryptography is needed for certificates and is not installed")
    return x509


# --- names ---------------------------------------------------------------------------------------

_SAN_PREFIXES = {"dns": "DNS", "ip": "IP", "email": "email", "rfc822": "email"}


def san_text(value: str, field_name: str = "subject_alt_names") -> str:
    """One subjectAltName in canonical text, ``DNS:gw.example``, ``IP:192.0.2.1``,
    ``email:gw@example``. Accepts those prefixes or a bare IKE identity (an IP address, an
    address with ``@`` is an email, ``@fqdn`` or anything else an FQDN)."""
    if not isinstance(value, str) or not value.strip():
        raise CertError(field_name, "entries must be non-empty strings")
    text = value.strip()
    kind, sep, rest = text.partition(":")
    if sep and kind.lower() in _SAN_PREFIXES and rest:
        kind, text = _SAN_PREFIXES[kind.lower()], rest.strip()
    else:
        try:
            ipaddress.ip_address(text)
            kind = "IP"
        except ValueError:
            if text.startswith("@") and "@" not in text[1:]:
                kind, text = "DNS", text[1:]
            else:
                kind = "email" if "@" in text else "DNS"
    if kind == "IP":
        try:
            text = str(ipaddress.ip_address(text))
        except ValueError:
            raise CertError(field_name, f"{value!r} is not an IP address")
    elif kind == "DNS" and (not text or any(c.isspace() or c in ",=/" for c in text)):
        raise CertError(field_name, f"{value!r} is not a DNS name")
    elif kind == "email" and (text.count("@") != 1 or text.startswith("@")):
        raise CertError(field_name, f"{value!r} is not an email address")
    return f"{kind}:{text.lower() if kind == 'DNS' else text}"


def general_name(text: str) -> Any:
    x509 = _x509()
    kind, value = text.partition(":")[::2]
    if kind == "IP":
        return x509.IPAddress(ipaddress.ip_address(value))
    if kind == "email":
        return x509.RFC822Name(value)
    return x509.DNSName(value)


def sans_of(cert: Any) -> list[str]:
    """The certificate's DNS, IP and email subjectAltNames in canonical text (sorted)."""
    x509 = _x509()
    try:
        ext = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return []
    out = [f"DNS:{n.lower()}" for n in ext.get_values_for_type(x509.DNSName)]
    out += [f"IP:{a}" for a in ext.get_values_for_type(x509.IPAddress)]
    out += [f"email:{e}" for e in ext.get_values_for_type(x509.RFC822Name)]
    return sorted(out)


def _attributes() -> dict[str, Any]:
    from cryptography.x509.oid import NameOID

    return {
        "C": NameOID.COUNTRY_NAME,
        "ST": NameOID.STATE_OR_PROVINCE_NAME,
        "L": NameOID.LOCALITY_NAME,
        "O": NameOID.ORGANIZATION_NAME,
        "OU": NameOID.ORGANIZATIONAL_UNIT_NAME,
        "CN": NameOID.COMMON_NAME,
        "E": NameOID.EMAIL_ADDRESS,
        "EMAILADDRESS": NameOID.EMAIL_ADDRESS,
        "DC": NameOID.DOMAIN_COMPONENT,
        "SN": NameOID.SURNAME,
        "SERIALNUMBER": NameOID.SERIAL_NUMBER,
    }


def parse_dn(text: str, field_name: str = "subject") -> Any:
    """A distinguished name in strongSwan's order, ``C=CH, O=Org, CN=gw`` (``\\,`` escapes a
    comma in a value)."""
    x509 = _x509()
    if not isinstance(text, str) or "=" not in text:
        raise CertError(field_name, "must be a distinguished name like 'O=Lab, CN=gw'")
    parts, current, escaped = [], "", False
    for ch in text:
        if escaped:
            current, escaped = current + ch, False
        elif ch == "\\":
            escaped = True
        elif ch == ",":
            parts.append(current)
            current = ""
        else:
            current += ch
    parts.append(current)
    attrs = _attributes()
    rdns = []
    for part in parts:
        key, sep, value = part.partition("=")
        key, value = key.strip(), value.strip()
        if not sep or not value or key.upper() not in attrs:
            raise CertError(
                field_name,
                f"{part.strip()!r} is not an attribute like CN=name "
                f"(known: {', '.join(k for k in attrs if k != 'EMAILADDRESS')})",
            )
        try:
            rdns.append(x509.NameAttribute(attrs[key.upper()], value))
        except ValueError as e:
            raise CertError(field_name, f"{part.strip()!r}: {e}")
    return x509.Name(rdns)


def dn_text(name: Any) -> str:
    """``C=CH, O=Org, CN=gw``: most significant first, as strongSwan prints it."""
    short = {oid: key for key, oid in reversed(list(_attributes().items()))}
    return ", ".join(
        f"{short.get(a.oid, a.oid.dotted_string)}={str(a.value).replace(',', chr(92) + ',')}"
        for a in name
    )


def same_name(a: Any, b: Any) -> bool:
    """Attribute by attribute, ignoring the string types (PrintableString, UTF8String)."""
    return [(x.oid, str(x.value)) for x in a] == [(x.oid, str(x.value)) for x in b]


def is_dn(identity: str) -> bool:
    return "=" in identity


# --- keys and fingerprints -------------------------------------------------------------------------


def spki(key: Any) -> bytes:
    from cryptography.hazmat.primitives import serialization

    pub = key.public_key() if hasattr(key, "private_bytes") else key
    return pub.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def cert_fingerprint(cert: Any) -> str:
    """``SHA256:<base64>`` of the certificate's DER (the keys' fingerprint format)."""
    from cryptography.hazmat.primitives import serialization

    return fingerprint(cert.public_bytes(serialization.Encoding.DER))


def cert_pem(cert: Any) -> bytes:
    from cryptography.hazmat.primitives import serialization

    return cert.public_bytes(serialization.Encoding.PEM)


def load_certs(data: bytes) -> list[Any]:
    """Every certificate of a PEM file (or one DER certificate); ValueError if none."""
    x509 = _x509()
    if b"-----BEGIN" in data:
        certs = x509.load_pem_x509_certificates(data)
    else:
        certs = [x509.load_der_x509_certificate(data)]
    if not certs:
        raise ValueError("no certificate")
    return certs


def load_key(data: bytes) -> Any:
    """A PEM (or DER) private key; ValueError says why not (an encrypted key is refused)."""
    from cryptography.hazmat.primitives import serialization

    loader = (
        serialization.load_pem_private_key
        if b"-----BEGIN" in data
        else serialization.load_der_private_key
    )
    try:
        return loader(data, password=None)
    except TypeError:
        raise ValueError("the private key is encrypted (give an unencrypted key)")
    except Exception as e:  # ValueError, UnsupportedAlgorithm, ...
        raise ValueError(f"not a private key ({type(e).__name__})")


def _hash_for(key: Any) -> Any:
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519

    if isinstance(key, ed25519.Ed25519PrivateKey | ed448.Ed448PrivateKey):
        return None
    if isinstance(key, ec.EllipticCurvePrivateKey) and key.curve.key_size > 256:
        return hashes.SHA384()
    return hashes.SHA256()


# --- building ---------------------------------------------------------------------------------------


def build(
    subject: Any,
    key: Any,
    days: int,
    now: dt.datetime,
    sans: Sequence[str] = (),
    issuer: tuple[Any, Any] | None = None,
) -> Any:
    """A CA certificate (``issuer`` None: self-signed, basicConstraints cA, keyCertSign) or an
    end-entity certificate signed by ``issuer`` = (CA certificate, CA key) with ``sans``."""
    x509 = _x509()
    pub = key.public_key()
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .public_key(pub)
        .serial_number(secrets.randbits(159) | 1 << 158)  # positive, 20 octets, unpredictable
        .not_valid_before(now - BACKDATE)
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(pub), critical=False)
    )
    usage = dict.fromkeys(
        (
            "content_commitment",
            "key_encipherment",
            "data_encipherment",
            "key_agreement",
            "key_cert_sign",
            "crl_sign",
            "encipher_only",
            "decipher_only",
        ),
        False,
    )
    if issuer is None:
        builder = builder.issuer_name(subject).add_extension(
            x509.BasicConstraints(ca=True, path_length=0), critical=True
        )
        usage |= {"key_cert_sign": True, "crl_sign": True}
        signer = key
    else:
        ca_cert, signer = issuer
        ski = ca_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
        builder = (
            builder.issuer_name(ca_cert.subject)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski),
                critical=False,
            )
        )
        if sans:
            builder = builder.add_extension(
                x509.SubjectAlternativeName([general_name(s) for s in sans]), critical=False
            )
    builder = builder.add_extension(x509.KeyUsage(digital_signature=True, **usage), critical=True)
    return builder.sign(signer, _hash_for(signer))


# --- checks -----------------------------------------------------------------------------------------


def _utc(value: dt.datetime) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S UTC")


def issued_by(cert: Any, ca: Any) -> str | None:
    """None when ``ca`` issued ``cert`` (names and signature), else why not."""
    if not same_name(cert.issuer, ca.subject):
        return f"is issued by '{dn_text(cert.issuer)}', not by '{dn_text(ca.subject)}'"
    try:
        cert.verify_directly_issued_by(ca)
    except Exception:  # InvalidSignature, ValueError, TypeError (unsupported key)
        return f"its signature does not verify with the key of '{dn_text(ca.subject)}'"
    return None


def is_ca(cert: Any) -> bool:
    x509 = _x509()
    try:
        bc = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
    except x509.ExtensionNotFound:
        return False
    return bool(bc.ca)


def validity_problem(cert: Any, now: dt.datetime, renew_days: int = 0) -> str | None:
    if cert.not_valid_before_utc > now:
        return f"is not valid before {_utc(cert.not_valid_before_utc)}"
    if cert.not_valid_after_utc <= now:
        return f"expired on {_utc(cert.not_valid_after_utc)}"
    if cert.not_valid_after_utc - dt.timedelta(days=renew_days) <= now:
        return (
            f"expires on {_utc(cert.not_valid_after_utc)}, within the renew margin of "
            f"{renew_days} days"
        )
    return None


def reissue_reason(
    cert: Any,
    key: Any,
    subject: Any,
    sans: Sequence[str],
    now: dt.datetime,
    renew_days: int,
    ca: Any = None,
) -> str | None:
    """Why the existing ``cert`` cannot be kept for ``key`` (None: keep it). ``ca`` None: the
    certificate is a self-signed CA."""
    if spki(cert.public_key()) != spki(key):
        return "the certificate is not for the private key"
    if ca is None:
        if not is_ca(cert):
            return "the certificate is not a CA certificate (basicConstraints cA)"
        problem = issued_by(cert, cert)
        if problem:
            return f"the certificate is not self-signed: it {problem}"
    else:
        problem = issued_by(cert, ca)
        if problem:
            return f"the certificate {problem} (the given CA)"
    if not same_name(cert.subject, subject):
        return f"the subject is '{dn_text(cert.subject)}', want '{dn_text(subject)}'"
    have, want = sans_of(cert), sorted(sans)
    if have != want:
        return (
            f"the subjectAltNames are [{', '.join(have)}], want [{', '.join(want)}]"
            if ca is not None
            else "a CA certificate with subjectAltNames"
        )
    problem = validity_problem(cert, now, renew_days)
    if problem:
        return f"the certificate {problem}"
    return None


def chain_to(leaf: Any, intermediates: Sequence[Any], ca: Any) -> str | None:
    """None when ``leaf`` chains to the anchor ``ca`` (through ``intermediates``), else why."""
    current, seen = leaf, 0
    while seen <= len(intermediates):
        if issued_by(current, ca) is None:
            return None
        step = next((c for c in intermediates if issued_by(current, c) is None), None)
        if step is None or not is_ca(step):
            break
        current, seen = step, seen + 1
    return f"'{dn_text(current.subject)}' {issued_by(current, ca)} (the CA in ca_cert)"


def identity_problem(cert: Any, identity: str) -> str | None:
    """None when the certificate carries the IKE identity (a DN as its subject, else in its
    subjectAltNames), else why not."""
    if is_dn(identity):
        want = parse_dn(identity, "subject_alt_names")
        if same_name(cert.subject, want):
            return None
        return f"its subject is '{dn_text(cert.subject)}', not the identity '{dn_text(want)}'"
    wanted = san_text(identity)
    have = sans_of(cert)
    if wanted in have:
        return None
    return f"it lacks the subjectAltName {wanted} (it has [{', '.join(have) or 'none'}])"


def check_provided(
    certs: Sequence[Any], key: Any, ca: Any, identities: Sequence[str], now: dt.datetime
) -> None:
    """A certificate made elsewhere: the key is its key, it chains to ``ca``, it is valid now
    and carries every identity. Raises ``CertError`` naming the field."""
    leaf = certs[0]
    if spki(leaf.public_key()) != spki(key):
        raise CertError(
            "private_key_path",
            f"the key does not match the certificate in path (key {fingerprint(spki(key))}, "
            f"certificate's key {fingerprint(spki(leaf.public_key()))})",
        )
    problem = chain_to(leaf, certs[1:], ca)
    if problem:
        raise CertError("path", f"does not chain to ca_cert: {problem}")
    problem = validity_problem(ca, now)
    if problem:
        raise CertError("ca_cert", f"the CA certificate {problem}")
    for cert in certs:
        problem = validity_problem(cert, now)
        if problem:
            raise CertError("path", f"certificate '{dn_text(cert.subject)}' {problem}")
    for identity in identities:
        problem = identity_problem(leaf, identity)
        if problem:
            raise CertError(
                "subject_alt_names", f"the certificate does not carry {identity!r}: {problem}"
            )


def describe(cert: Any) -> dict[str, Any]:
    """What the result shows of a certificate (all public)."""
    return {
        "fingerprint": cert_fingerprint(cert),
        "subject": dn_text(cert.subject),
        "issuer": dn_text(cert.issuer),
        "subject_alt_names": sans_of(cert),
        "serial": f"{cert.serial_number:x}",
        "not_before": _utc(cert.not_valid_before_utc),
        "not_after": _utc(cert.not_valid_after_utc),
        "public_key_fingerprint": fingerprint(spki(cert.public_key())),
    }
