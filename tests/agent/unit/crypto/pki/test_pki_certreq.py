"""CERTREQ key IDs (RFC 7296 3.7: SHA-1 of the CA's DER SubjectPublicKeyInfo)."""

from __future__ import annotations

import hashlib

from cryptography.hazmat.primitives import serialization
from pki_factory import key, make_cert, name

from ikeagent.crypto.pki import ca_keyid, certreq_data, requested


def test_keyid_is_sha1_of_spki():
    ca = make_cert(name("CR CA"), key("p256", 0), ca=True)
    spki = ca.key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    assert ca_keyid(ca.cert) == hashlib.sha1(spki).digest()
    assert len(ca_keyid(ca.cert)) == 20


def test_data_and_requested():
    a = make_cert(name("CR A"), key("p256", 0), ca=True).cert
    b = make_cert(name("CR B"), key("rsa", 0), ca=True).cert
    c = make_cert(name("CR C"), key("ed25519", 0), ca=True).cert
    data = certreq_data([a, b, a])
    assert data == ca_keyid(a) + ca_keyid(b)
    assert requested([a, b, c], data) == [a, b]
    assert requested([a, b, c], ca_keyid(c) + b"\x01\x02") == [c]  # partial key ID ignored
    assert requested([a, b, c], b"") == []
    assert requested([a, b], b"\x00" * 40) == []
