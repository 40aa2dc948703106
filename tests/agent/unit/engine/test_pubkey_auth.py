"""ikeagent.engine.pubkey_auth: the peer's certificate (chain, dates, revocation, identity, pin)
and our signing key, as both IKE versions use them."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from ikeagent.config.identity import parse_identity
from ikeagent.config.model import AuthConfig, AuthMethod, ConnectionConfig, PrivateKey
from ikeagent.crypto.pki import load_crl, spki_der
from ikeagent.crypto.pki.errors import CertificateInvalid, PkiError
from ikeagent.engine.pubkey_auth import cert_der, local_signer, peer_certificate, trust_policy
from ikelab_testing.pki import TestPki, expired, not_yet_valid
from ikelab_testing.pki import now as pki_now


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> TestPki:
    return TestPki(Path(tmp_path_factory.mktemp("pki")))


@pytest.fixture(scope="module")
def root(pki: TestPki):
    return pki.ca("Unit Root CA", "ecdsa-p256")


def _conn(**remote) -> ConnectionConfig:
    return ConnectionConfig(
        name="c",
        version=2,
        local_addrs=(),
        remote_addrs=(),
        proposals=(),
        local=AuthConfig(),
        remote=AuthConfig(auth=AuthMethod.PUBKEY, **remote),
        children={},
    )


FQDN = parse_identity("gw-b.example")


def now() -> float:
    """POSIX seconds of the test PKI's clock, which its certificates are valid around."""
    return pki_now().timestamp()


def test_valid_chain_with_intermediate(pki: TestPki, root) -> None:
    inter = pki.intermediate(root, "Unit Sub CA", "ecdsa-p256")
    ee = pki.issue(inter, "gw-b.example", sans=["gw-b.example"], key_type="ecdsa-p256")
    conn = _conn(cacerts=(root.cert,))
    got = peer_certificate(conn, [ee.der, inter.der], FQDN, now())
    assert cert_der(got) == ee.der
    # without the intermediate the chain does not reach the anchor
    with pytest.raises(CertificateInvalid, match="not a trusted CA"):
        peer_certificate(conn, [ee.der], FQDN, now())


@pytest.mark.parametrize(
    ("window", "reason"), [(expired, "expired on"), (not_yet_valid, "not valid before")]
)
def test_dates(pki: TestPki, root, window, reason: str) -> None:
    nb, na = window()
    ee = pki.issue(root, "gw-b.example", sans=["gw-b.example"], not_before=nb, not_after=na)
    with pytest.raises(CertificateInvalid, match=reason):
        peer_certificate(_conn(cacerts=(root.cert,)), [ee.der], FQDN, now())


def test_untrusted_ca_and_revoked(pki: TestPki, root) -> None:
    other = pki.ca("Other CA")
    ee = pki.issue(other, "gw-b.example", sans=["gw-b.example"])
    with pytest.raises(CertificateInvalid, match="not a trusted CA"):
        peer_certificate(_conn(cacerts=(root.cert,)), [ee.der], FQDN, now())
    bad = pki.issue(root, "gw-b.example", sans=["gw-b.example"], key_type="ecdsa-p256")
    crl = load_crl(pki.revoke(root, bad))
    conn = _conn(cacerts=(root.cert,), crls=(crl,))
    assert trust_policy(conn).crls == (crl,)
    with pytest.raises(CertificateInvalid, match="revoked"):
        peer_certificate(conn, [bad.der], FQDN, now())


def test_identity_must_be_in_certificate(pki: TestPki, root) -> None:
    ee = pki.issue(root, "gw-x.example", sans=["gw-x.example", "192.0.2.9"])
    conn = _conn(cacerts=(root.cert,))
    with pytest.raises(CertificateInvalid, match="identity 'gw-b.example' is not in certificate"):
        peer_certificate(conn, [ee.der], FQDN, now())
    assert peer_certificate(conn, [ee.der], parse_identity("192.0.2.9"), now())
    # the subject DN, written with other string types than the certificate's
    dn = parse_identity("O=ikelab, CN=gw-x.example")
    assert peer_certificate(conn, [ee.der], dn, now())


def test_pinned_certificate(pki: TestPki, root) -> None:
    ee = pki.issue(root, "gw-b.example", sans=["gw-b.example"])
    other = pki.issue(root, "gw-b.example", sans=["gw-b.example"])
    # pinned without CA certificates: trusted as it is
    conn = _conn(certs=(ee.cert,))
    assert cert_der(peer_certificate(conn, [ee.der], FQDN, now())) == ee.der
    with pytest.raises(CertificateInvalid, match="not the certificate configured"):
        peer_certificate(conn, [other.der], FQDN, now())
    with pytest.raises(CertificateInvalid, match="expired on"):
        peer_certificate(conn, [ee.der], FQDN, now() + 2 * 365 * 86400)
    # a peer that sends no CERT payload is checked with the pinned certificate of its identity
    assert cert_der(peer_certificate(conn, [], FQDN, now())) == ee.der
    with pytest.raises(CertificateInvalid, match="none in remote.certs names 'gw-z.example'"):
        peer_certificate(conn, [], parse_identity("gw-z.example"), now())


def test_garbage_and_missing_certificates(root) -> None:
    conn = _conn(cacerts=(root.cert,))
    with pytest.raises(CertificateInvalid, match="no certificate"):
        peer_certificate(conn, [], FQDN, now())
    with pytest.raises(CertificateInvalid, match="not valid DER"):
        peer_certificate(conn, [b"\x30\x03\x02\x01\x01"], FQDN, now())
    with pytest.raises(CertificateInvalid, match="no CA certificates"):
        peer_certificate(_conn(), [root.der], FQDN, now())


def test_local_signer(pki: TestPki, root) -> None:
    ee = pki.issue(root, "gw-a.example", sans=["gw-a.example"], key_type="ed25519")
    good = PrivateKey("k", str(ee.key_path), ee.key, spki_der(ee.key))
    base = _conn()
    conn = replace(base, local=AuthConfig(auth=AuthMethod.PUBKEY, certs=(ee.cert,), key=good))
    assert local_signer(conn) is ee.key

    def with_key(key: PrivateKey | None, certs=(ee.cert,)) -> ConnectionConfig:
        return replace(conn, local=replace(conn.local, key=key, certs=certs))

    with pytest.raises(PkiError, match="no certificate"):
        local_signer(with_key(good, certs=()))
    with pytest.raises(PkiError, match="no private key for our certificate O=ikelab, CN=gw-a"):
        local_signer(with_key(None))
    refused = PrivateKey("k", "/x/k.pem", None, problem="/x/k.pem is readable by others")
    with pytest.raises(PkiError, match="refused: /x/k.pem is readable by others"):
        local_signer(with_key(refused))
    stranger = pki.issue(root, "other", key_type="ed25519")
    wrong = PrivateKey("w", "/x/w.pem", stranger.key, spki_der(stranger.key))
    with pytest.raises(PkiError, match="does not belong"):
        local_signer(with_key(wrong))
