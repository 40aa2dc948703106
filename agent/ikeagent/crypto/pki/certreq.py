"""CERTREQ Certification Authority data (RFC 7296 3.7, encoding 4 X.509 Certificate -
Signature): a concatenation of SHA-1 hashes of the trusted CAs' DER SubjectPublicKeyInfo."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

from cryptography import x509
from cryptography.hazmat.primitives import serialization

KEYID_LEN = 20


def ca_keyid(cert: x509.Certificate) -> bytes:
    """SHA-1 of the CA certificate's DER SubjectPublicKeyInfo."""
    spki = cert.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return hashlib.sha1(spki).digest()


def certreq_data(anchors: Iterable[x509.Certificate]) -> bytes:
    """The Certification Authority field naming every anchor (duplicates once, in order)."""
    seen: list[bytes] = []
    for cert in anchors:
        kid = ca_keyid(cert)
        if kid not in seen:
            seen.append(kid)
    return b"".join(seen)


def requested(anchors: Iterable[x509.Certificate], data: bytes) -> list[x509.Certificate]:
    """The anchors whose key ID appears in a received CERTREQ's Certification Authority field
    (in the order of ``anchors``); trailing octets that do not form a whole key ID are ignored."""
    data = bytes(data)
    wanted = {data[i : i + KEYID_LEN] for i in range(0, len(data) - KEYID_LEN + 1, KEYID_LEN)}
    return [a for a in anchors if ca_keyid(a) in wanted]
