"""A throw-away PKI for tests: CAs, intermediates, end-entity certificates and CRLs.

Everything is made with `cryptography` and written as PEM into one directory:
``<name>.pem`` (certificate), ``<name>.key`` (PKCS#8 private key, mode 0600) and
``<ca name>.crl``.  Validity defaults to one day ago until one year ahead of the real
current time; ``expired()`` and ``not_yet_valid()`` give windows for the failure cases.

    pki = TestPki(tmp_path / "pki")
    root = pki.ca("Lab Root CA")
    gw = pki.issue(root, "gw-a.example", sans=["gw-a.example", "192.0.2.1"])
    crl_path = pki.revoke(root, gw)
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

KEY_TYPES = ("rsa", "rsa4096", "ecdsa-p256", "ecdsa-p384", "ed25519")

PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey

_DAY = dt.timedelta(days=1)
_YEAR = dt.timedelta(days=365)


def now() -> dt.datetime:
    """The real current time, UTC, to the second."""
    return dt.datetime.now(dt.UTC).replace(microsecond=0)


def expired() -> tuple[dt.datetime, dt.datetime]:
    """A validity window that ended a day ago."""
    t = now()
    return t - 30 * _DAY, t - _DAY


def not_yet_valid() -> tuple[dt.datetime, dt.datetime]:
    """A validity window that starts in a day."""
    t = now()
    return t + _DAY, t + _YEAR


def generate_key(key_type: str) -> PrivateKey:
    """A fresh private key of `key_type` (one of KEY_TYPES)."""
    if key_type == "rsa":
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)
    if key_type == "rsa4096":
        return rsa.generate_private_key(public_exponent=65537, key_size=4096)
    if key_type == "ecdsa-p256":
        return ec.generate_private_key(ec.SECP256R1())
    if key_type == "ecdsa-p384":
        return ec.generate_private_key(ec.SECP384R1())
    if key_type == "ed25519":
        return ed25519.Ed25519PrivateKey.generate()
    raise ValueError(f"unknown key type {key_type!r}; one of {', '.join(KEY_TYPES)}")


def _hash_for(key: PrivateKey) -> hashes.HashAlgorithm | None:
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return None
    if isinstance(key, ec.EllipticCurvePrivateKey) and key.curve.key_size >= 384:
        return hashes.SHA384()
    return hashes.SHA256()


def _san(value: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(value))
    except ValueError:
        pass
    if "@" in value:
        return x509.RFC822Name(value)
    return x509.DNSName(value)


def _file_stem(name: str) -> str:
    stem = re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-.")
    return stem or "cert"


@dataclass(frozen=True, slots=True)
class Issued:
    """A certificate with its key, as objects and as the PEM files written."""

    name: str
    cert: x509.Certificate
    key: PrivateKey = field(repr=False)
    cert_path: Path
    key_path: Path
    issuer: Issued | None = field(default=None, repr=False)

    @property
    def subject_dn(self) -> str:
        """RFC 4514 text of the subject (reversed order against strongSwan's)."""
        return self.cert.subject.rfc4514_string()

    @property
    def der(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.DER)

    def chain(self) -> list[Issued]:
        """This certificate and its issuers up to (and including) the root."""
        out: list[Issued] = []
        node: Issued | None = self
        while node is not None:
            out.append(node)
            node = node.issuer
        return out


class TestPki:
    """A directory of test certificates; every object made here is also a PEM file there."""

    __test__ = False  # not a pytest test class

    def __init__(self, directory: Path | str) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self._revoked: dict[str, list[x509.RevokedCertificate]] = {}
        self._used: set[str] = set()

    # -- making certificates ------------------------------------------------------------

    def ca(
        self,
        name: str = "Lab Root CA",
        key_type: str = "rsa",
        *,
        not_before: dt.datetime | None = None,
        not_after: dt.datetime | None = None,
        path_length: int | None = None,
    ) -> Issued:
        """A self-signed root CA with subject ``O=ikelab, CN=<name>``."""
        return self._make(
            None, name, key_type, (), not_before, not_after, is_ca=True, path_length=path_length
        )

    def intermediate(
        self,
        issuer: Issued,
        name: str = "Lab Intermediate CA",
        key_type: str = "rsa",
        *,
        not_before: dt.datetime | None = None,
        not_after: dt.datetime | None = None,
        path_length: int | None = None,
    ) -> Issued:
        """A CA certificate signed by `issuer`."""
        return self._make(
            issuer, name, key_type, (), not_before, not_after, is_ca=True, path_length=path_length
        )

    def issue(
        self,
        issuer: Issued,
        subject_cn: str,
        sans: Sequence[str] = (),
        key_type: str = "rsa",
        *,
        not_before: dt.datetime | None = None,
        not_after: dt.datetime | None = None,
        ca: bool = False,
    ) -> Issued:
        """A certificate for `subject_cn` signed by `issuer`.

        `sans` hold FQDNs, IP addresses (v4/v6) and e-mail addresses (anything with '@').
        """
        return self._make(issuer, subject_cn, key_type, sans, not_before, not_after, is_ca=ca)

    def revoke(
        self,
        issuer: Issued,
        *certs: Issued,
        this_update: dt.datetime | None = None,
        next_update: dt.datetime | None = None,
    ) -> Path:
        """Revoke `certs` (may be none) and (re)write the CRL of `issuer`; its path."""
        t = now()
        entries = self._revoked.setdefault(issuer.name, [])
        for cert in certs:
            entries.append(
                x509.RevokedCertificateBuilder()
                .serial_number(cert.cert.serial_number)
                .revocation_date(t - dt.timedelta(hours=1))
                .build()
            )
        return self.crl(issuer, this_update=this_update, next_update=next_update)

    def crl(
        self,
        issuer: Issued,
        *,
        this_update: dt.datetime | None = None,
        next_update: dt.datetime | None = None,
    ) -> Path:
        """Write the CRL of `issuer` with what is revoked so far; its path."""
        t = now()
        builder = (
            x509.CertificateRevocationListBuilder()
            .issuer_name(issuer.cert.subject)
            .last_update(this_update or t - dt.timedelta(hours=1))
            .next_update(next_update or t + 30 * _DAY)
            .add_extension(x509.CRLNumber(len(self._revoked.get(issuer.name, ())) + 1), False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer.key.public_key()),
                False,
            )
        )
        for entry in self._revoked.get(issuer.name, ()):
            builder = builder.add_revoked_certificate(entry)
        crl = builder.sign(issuer.key, _hash_for(issuer.key))
        path = self.directory / f"{_file_stem(issuer.name)}.crl"
        path.write_bytes(crl.public_bytes(serialization.Encoding.PEM))
        return path

    def chain_file(self, *certs: Issued, name: str = "chain") -> Path:
        """Several certificates concatenated into one PEM file."""
        path = self.directory / f"{_file_stem(name)}.pem"
        path.write_bytes(b"".join(c.cert.public_bytes(serialization.Encoding.PEM) for c in certs))
        return path

    # -- internals ------------------------------------------------------------------------

    def _stem(self, name: str) -> str:
        stem = base = _file_stem(name)
        n = 1
        while stem in self._used:
            n += 1
            stem = f"{base}-{n}"
        self._used.add(stem)
        return stem

    def _make(
        self,
        issuer: Issued | None,
        cn: str,
        key_type: str,
        sans: Sequence[str],
        not_before: dt.datetime | None,
        not_after: dt.datetime | None,
        *,
        is_ca: bool,
        path_length: int | None = None,
    ) -> Issued:
        key = generate_key(key_type)
        t = now()
        subject = x509.Name(
            [
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, "ikelab"),
                x509.NameAttribute(NameOID.COMMON_NAME, cn),
            ]
        )
        signer_key = issuer.key if issuer else key
        builder = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(issuer.cert.subject if issuer else subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(not_before or t - _DAY)
            .not_valid_after(not_after or t + _YEAR)
            .add_extension(
                x509.BasicConstraints(ca=is_ca, path_length=path_length if is_ca else None),
                critical=True,
            )
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(signer_key.public_key()),
                False,
            )
        )
        if is_ca:
            builder = builder.add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=True,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
        else:
            builder = builder.add_extension(
                x509.ExtendedKeyUsage(
                    [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
                ),
                critical=False,
            )
        if sans:
            builder = builder.add_extension(
                x509.SubjectAlternativeName([_san(s) for s in sans]), critical=False
            )
        cert = builder.sign(signer_key, _hash_for(signer_key))
        stem = self._stem(cn)
        cert_path = self.directory / f"{stem}.pem"
        key_path = self.directory / f"{stem}.key"
        cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        write_key(key, key_path)
        return Issued(cn, cert, key, cert_path, key_path, issuer)


def write_key(key: PrivateKey, path: Path, mode: int = 0o600) -> Path:
    """Write `key` as unencrypted PKCS#8 PEM with `mode` (created with it, then chmod)."""
    data = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
    os.chmod(path, mode)
    return path
