"""Loading certificates, CRLs and private keys from PEM/DER files; key file modes."""

from __future__ import annotations

import os

import pytest
from cryptography.hazmat.primitives import serialization
from pki_factory import key, make_cert, make_crl, name

from ikeagent.crypto.pki import (
    KeyFileExposed,
    PkiError,
    load_certificates,
    load_crl,
    load_private_key,
    spki_der,
)

PEM = serialization.Encoding.PEM
DER = serialization.Encoding.DER


@pytest.fixture(scope="module")
def ca():
    return make_cert(name("Files CA"), key("p256", 5), ca=True)


@pytest.fixture(scope="module")
def leaf(ca):
    return make_cert(name("files-leaf"), key("p256", 6), ca)


def _write(path, data: bytes, mode: int = 0o600) -> str:
    path.write_bytes(data)
    os.chmod(path, mode)
    return str(path)


def test_pem_single_and_bundle_in_order(tmp_path, ca, leaf):
    one = _write(tmp_path / "leaf.pem", leaf.cert.public_bytes(PEM))
    assert load_certificates(one) == [leaf.cert]
    bundle = _write(
        tmp_path / "bundle.pem",
        b"comment line\n" + leaf.cert.public_bytes(PEM) + ca.cert.public_bytes(PEM),
    )
    assert load_certificates(bundle) == [leaf.cert, ca.cert]


def test_der_certificate(tmp_path, leaf):
    p = _write(tmp_path / "leaf.der", leaf.cert.public_bytes(DER))
    assert load_certificates(p) == [leaf.cert]


def test_bad_certificate_names_file(tmp_path):
    p = _write(tmp_path / "junk.pem", b"\x30\x03\x02\x01\x01")
    with pytest.raises(PkiError, match="junk.pem"):
        load_certificates(p)
    with pytest.raises(PkiError, match="missing.pem"):
        load_certificates(tmp_path / "missing.pem")


def test_crl_pem_and_der(tmp_path, ca):
    crl = make_crl(ca, [(7, ca.cert.not_valid_before_utc)])
    p1 = _write(tmp_path / "ca.crl", crl.public_bytes(PEM))
    p2 = _write(tmp_path / "ca.der", crl.public_bytes(DER))
    assert load_crl(p1) == crl
    assert load_crl(p2) == crl
    bad = _write(tmp_path / "bad.crl", b"not a crl")
    with pytest.raises(PkiError, match="bad.crl"):
        load_crl(bad)


@pytest.mark.parametrize("kind", ["rsa", "p256", "ed25519"])
@pytest.mark.parametrize(
    "enc,fmt",
    [
        (PEM, serialization.PrivateFormat.PKCS8),
        (DER, serialization.PrivateFormat.PKCS8),
        (PEM, serialization.PrivateFormat.TraditionalOpenSSL),
        (DER, serialization.PrivateFormat.TraditionalOpenSSL),
    ],
)
def test_private_key_formats(tmp_path, kind, enc, fmt):
    k = key(kind)
    if kind == "ed25519" and fmt == serialization.PrivateFormat.TraditionalOpenSSL:
        pytest.skip("Ed25519 has no traditional format")
    data = k.private_bytes(enc, fmt, serialization.NoEncryption())
    p = _write(tmp_path / "gw.key", data)
    loaded = load_private_key(p)
    assert spki_der(loaded) == spki_der(k.public_key())


def test_encrypted_private_key(tmp_path):
    k = key("p256")
    data = k.private_bytes(
        PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"s3cret-pass"),
    )
    p = _write(tmp_path / "enc.key", data)
    assert spki_der(load_private_key(p, b"s3cret-pass")) == spki_der(k)
    with pytest.raises(PkiError, match="enc.key") as e:
        load_private_key(p, b"wrong-pass")
    assert "wrong-pass" not in str(e.value) and "s3cret" not in str(e.value)
    with pytest.raises(PkiError, match="passphrase"):
        load_private_key(p)


def test_passphrase_for_unencrypted_key_is_ignored(tmp_path):
    k = key("p256")
    data = k.private_bytes(PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    p = _write(tmp_path / "plain.key", data)
    assert spki_der(load_private_key(p, b"unused")) == spki_der(k)


def test_exposed_key_refused_before_reading(tmp_path):
    k = key("p256")
    data = k.private_bytes(PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    p = _write(tmp_path / "gw.key", data, 0o644)
    with pytest.raises(KeyFileExposed) as e:
        load_private_key(p)
    assert str(e.value) == f"{p} is readable by others (mode 0644); chmod 600 it"
    for mode in (0o640, 0o604, 0o660, 0o610, 0o601):
        os.chmod(p, mode)
        with pytest.raises(KeyFileExposed, match=f"mode {mode:04o}"):
            load_private_key(p)
    os.chmod(p, 0o400)
    assert spki_der(load_private_key(p)) == spki_der(k)
    os.chmod(p, 0o600)
    assert spki_der(load_private_key(p)) == spki_der(k)


def test_not_a_key_message_has_no_content(tmp_path):
    p = _write(
        tmp_path / "odd.key", b"-----BEGIN PRIVATE KEY-----\nQUJD\n-----END PRIVATE KEY-----\n"
    )
    with pytest.raises(PkiError, match="odd.key") as e:
        load_private_key(p)
    assert "QUJD" not in str(e.value)


def test_spki_der_matches_certificate(leaf):
    assert spki_der(leaf.key.public_key()) == leaf.cert.public_key().public_bytes(
        DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    assert spki_der(leaf.key) == spki_der(leaf.cert.public_key())
