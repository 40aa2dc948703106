"""A throw-away PKI for the PKI primitive tests: fresh keys, CAs, leaves and CRLs built with
``cryptography`` at fixed dates (2030-01-01 is "now" unless a test says otherwise)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import NameOID

NOW = dt.datetime(2030, 1, 1, tzinfo=dt.UTC)
NOW_TS = NOW.timestamp()
DAY = dt.timedelta(days=1)

_KEY_CACHE: dict[str, list[Any]] = {}


def new_key(kind: str) -> Any:
    if kind == "rsa":
        return rsa.generate_private_key(65537, 2048)
    if kind == "rsa3072":
        return rsa.generate_private_key(65537, 3072)
    if kind == "p256":
        return ec.generate_private_key(ec.SECP256R1())
    if kind == "p384":
        return ec.generate_private_key(ec.SECP384R1())
    if kind == "p521":
        return ec.generate_private_key(ec.SECP521R1())
    if kind == "ed25519":
        return ed25519.Ed25519PrivateKey.generate()
    raise ValueError(kind)


def key(kind: str, index: int = 0) -> Any:
    """The index-th cached key of a kind (RSA generation is slow; keys stay fresh per run)."""
    pool = _KEY_CACHE.setdefault(kind, [])
    while len(pool) <= index:
        pool.append(new_key(kind))
    return pool[index]


def name(cn: str, o: str | None = "Lab") -> x509.Name:
    attrs = []
    if o:
        attrs.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, o))
    attrs.append(x509.NameAttribute(NameOID.COMMON_NAME, cn))
    return x509.Name(attrs)


def _hash_for(issuer_key: Any) -> hashes.HashAlgorithm | None:
    if isinstance(issuer_key, ed25519.Ed25519PrivateKey):
        return None
    return hashes.SHA256()


@dataclass
class Issued:
    cert: x509.Certificate
    key: Any = field(repr=False)

    @property
    def subject(self) -> x509.Name:
        return self.cert.subject


def make_cert(
    subject: x509.Name | str,
    key_: Any,
    issuer: Issued | None = None,
    *,
    ca: bool | None = False,
    path_len: int | None = None,
    not_before: dt.datetime | None = None,
    not_after: dt.datetime | None = None,
    san: Sequence[x509.GeneralName] = (),
    key_usage: x509.KeyUsage | None = None,
    ski: bool = True,
    aki: bool = True,
    serial: int | None = None,
    hash_alg: hashes.HashAlgorithm | None = None,
    rsa_padding: Any = None,
) -> Issued:
    if isinstance(subject, str):
        subject = name(subject)
    signer_key = issuer.key if issuer else key_
    issuer_name = issuer.cert.subject if issuer else subject
    b = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer_name)
        .public_key(key_.public_key())
        .serial_number(serial if serial is not None else x509.random_serial_number())
        .not_valid_before(not_before or NOW - 30 * DAY)
        .not_valid_after(not_after or NOW + 365 * DAY)
    )
    if ca is not None:
        b = b.add_extension(
            x509.BasicConstraints(ca=ca, path_length=path_len if ca else None), True
        )
    if key_usage is None and ca:
        key_usage = x509.KeyUsage(
            digital_signature=False,
            content_commitment=False,
            key_encipherment=False,
            data_encipherment=False,
            key_agreement=False,
            key_cert_sign=True,
            crl_sign=True,
            encipher_only=False,
            decipher_only=False,
        )
    if key_usage is not None:
        b = b.add_extension(key_usage, True)
    if san:
        b = b.add_extension(x509.SubjectAlternativeName(list(san)), False)
    if ski:
        b = b.add_extension(x509.SubjectKeyIdentifier.from_public_key(key_.public_key()), False)
    if aki and issuer is not None:
        b = b.add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer.key.public_key()), False
        )
    alg = hash_alg if hash_alg is not None else _hash_for(signer_key)
    kwargs = {"rsa_padding": rsa_padding} if rsa_padding is not None else {}
    return Issued(b.sign(signer_key, alg, **kwargs), key_)


def make_crl(
    issuer: Issued,
    revoked: Sequence[tuple[int, dt.datetime]] = (),
    *,
    this_update: dt.datetime | None = None,
    next_update: dt.datetime | None = None,
    signer: Any = None,
) -> x509.CertificateRevocationList:
    b = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(issuer.cert.subject)
        .last_update(this_update or NOW - DAY)
        .next_update(next_update or NOW + 7 * DAY)
    )
    for serial, when in revoked:
        b = b.add_revoked_certificate(
            x509.RevokedCertificateBuilder().serial_number(serial).revocation_date(when).build()
        )
    k = signer or issuer.key
    return b.sign(k, _hash_for(k))


@dataclass
class Chain:
    root: Issued
    inter: Issued
    leaf: Issued


def make_chain(kind: str, leaf_san: Sequence[x509.GeneralName] = ()) -> Chain:
    root = make_cert(name(f"{kind} Root CA"), key(kind, 0), ca=True)
    inter = make_cert(name(f"{kind} Sub CA"), key(kind, 1), root, ca=True, path_len=0)
    leaf = make_cert(
        name("gw-b"),
        key(kind, 2),
        inter,
        san=leaf_san or [x509.DNSName("gw-b.example")],
    )
    return Chain(root, inter, leaf)
