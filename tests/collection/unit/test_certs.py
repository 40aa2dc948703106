"""module_utils.certs and cert_files: the keygen module's CA and certificates (generation,
idempotence, reissue reasons, check mode, modes, provided certificates accepted or refused
naming the field), and never any key material in results or diffs."""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import stat
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.x509.oid import NameOID

from ansible_collections.ikelab.ipsec.plugins.module_utils import certs
from ansible_collections.ikelab.ipsec.plugins.module_utils.cert_files import (
    CertError,
    CertFile,
    CertParams,
)
from ansible_collections.ikelab.ipsec.plugins.module_utils.keys import fingerprint

NOW = dt.datetime(2026, 6, 1, 12, 0, tzinfo=dt.UTC)


def mode_of(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def run(params: CertParams, check: bool = False, now: dt.datetime = NOW) -> tuple[bool, dict, dict]:
    """What the module does: (changed, result, diff)."""
    backend = CertFile(params, clock=lambda: now)
    changed = backend.needs_change()
    if changed and not check:
        backend.apply()
    return changed, backend.dump(), backend.diff()


def ca_params(d: Path, **kw: Any) -> CertParams:
    return CertParams("ca", str(d / "ca.crt"), str(d / "ca.key"), common_name="Lab CA", **kw)


def cert_params(
    d: Path, sans: tuple[str, ...] = ("gw1.example", "192.0.2.11"), **kw: Any
) -> CertParams:
    kw.setdefault("ca_cert", str(d / "ca.crt"))
    kw.setdefault("ca_key", str(d / "ca.key"))
    return CertParams(
        "certificate", str(d / "gw1.crt"), str(d / "gw1.key"), subject_alt_names=sans, **kw
    )


def load(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


def key_forms(path: Path) -> list[str]:
    """Every way key material could leak: the PEM body lines, the raw private value."""
    pem = path.read_bytes()
    key = serialization.load_pem_private_key(pem, password=None)
    forms = [line for line in pem.decode().splitlines() if not line.startswith("-----")]
    if isinstance(key, ec.EllipticCurvePrivateKey):
        forms.append(f"{key.private_numbers().private_value:x}")
    return forms


def assert_no_key_material(key_files: list[Path], *outputs: object) -> None:
    text = json.dumps(outputs, default=repr)
    for path in key_files:
        for form in key_forms(path):
            assert form not in text


@pytest.fixture
def pki(tmp_path: Path) -> Path:
    run(ca_params(tmp_path))
    return tmp_path


# --- a CA ---------------------------------------------------------------------------------------


def test_ca_is_self_signed_with_ca_constraints_and_modes(tmp_path: Path) -> None:
    changed, result, diff = run(ca_params(tmp_path))
    assert changed and result["changes"] == ["generate_key", "issue"]
    crt, key = tmp_path / "ca.crt", tmp_path / "ca.key"
    assert (mode_of(crt), mode_of(key)) == (0o644, 0o600)
    assert key.read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----\n")  # PKCS#8, unencrypted
    ca = load(crt)
    ca.verify_directly_issued_by(ca)  # self-signed
    bc = ca.extensions.get_extension_for_class(x509.BasicConstraints)
    assert bc.critical and bc.value.ca and bc.value.path_length == 0
    ku = ca.extensions.get_extension_for_class(x509.KeyUsage).value
    assert ku.key_cert_sign and ku.crl_sign
    assert ca.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "Lab CA"
    assert isinstance(ca.public_key(), ec.EllipticCurvePublicKey)  # the default ecdsa-p256
    assert ca.not_valid_after_utc - NOW == dt.timedelta(days=3650)
    # the fingerprint is SHA-256 over the certificate's DER
    der = ca.public_bytes(serialization.Encoding.DER)
    assert result["fingerprint"] == fingerprint(der) == diff["after"]["fingerprint"]
    assert result["subject"] == result["issuer"] == "CN=Lab CA"
    assert result["mode"] == "0644" and result["key_mode"] == "0600"
    assert diff["before"] == {"state": "absent"}
    assert_no_key_material([key], result, diff)


def test_second_run_changes_nothing(pki: Path) -> None:
    before = (pki / "ca.crt").read_bytes(), (pki / "ca.key").read_bytes()
    changed, result, _ = run(ca_params(pki))
    assert not changed and result["changes"] == []
    assert ((pki / "ca.crt").read_bytes(), (pki / "ca.key").read_bytes()) == before
    run(cert_params(pki))
    changed, result, _ = run(cert_params(pki))
    assert not changed and result["reissued_reason"] is None


@pytest.mark.parametrize("key_type", ["ecdsa-p384", "ed25519", "rsa"])
def test_other_key_types(tmp_path: Path, key_type: str) -> None:
    run(ca_params(tmp_path, key_type=key_type, bits=2048))
    _, result, _ = run(cert_params(tmp_path, key_type=key_type, bits=2048))
    assert result["key_type"] == key_type
    load(tmp_path / "gw1.crt").verify_directly_issued_by(load(tmp_path / "ca.crt"))


# --- certificates issued by the CA ---------------------------------------------------------------


def test_certificate_carries_the_identities_and_is_signed_by_the_ca(pki: Path) -> None:
    sans = ("gw1.example", "192.0.2.11", "gw1@example.org", "2001:db8::1", "@gw1.lab")
    changed, result, diff = run(cert_params(pki, sans=sans))
    assert changed
    crt, ca = load(pki / "gw1.crt"), load(pki / "ca.crt")
    crt.verify_directly_issued_by(ca)
    san = crt.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["gw1.example", "gw1.lab"]
    assert san.get_values_for_type(x509.IPAddress) == [
        ipaddress.ip_address("192.0.2.11"),
        ipaddress.ip_address("2001:db8::1"),
    ]
    assert san.get_values_for_type(x509.RFC822Name) == ["gw1@example.org"]
    assert not crt.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    aki = crt.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
    ski = ca.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    assert aki.key_identifier == ski.digest
    # the subject defaults to CN=<first identity>
    assert result["subject"] == "CN=gw1.example" and result["issuer"] == "CN=Lab CA"
    assert result["subject_alt_names"] == sorted(
        [
            "DNS:gw1.example",
            "DNS:gw1.lab",
            "IP:192.0.2.11",
            "IP:2001:db8::1",
            "email:gw1@example.org",
        ]
    )
    assert crt.not_valid_after_utc - NOW == dt.timedelta(days=730)
    assert (mode_of(pki / "gw1.crt"), mode_of(pki / "gw1.key")) == (0o644, 0o600)
    assert_no_key_material([pki / "gw1.key", pki / "ca.key"], result, diff)


def test_subject_in_strongswan_order(pki: Path) -> None:
    run(cert_params(pki, subject="C=CH, O=Lab\\, Inc, CN=gw1"))
    crt = load(pki / "gw1.crt")
    assert [a.oid for a in crt.subject] == [
        NameOID.COUNTRY_NAME,
        NameOID.ORGANIZATION_NAME,
        NameOID.COMMON_NAME,
    ]
    assert certs.dn_text(crt.subject) == "C=CH, O=Lab\\, Inc, CN=gw1"


def _reissued(pki: Path, params: CertParams, now: dt.datetime = NOW) -> tuple[dict, dict]:
    key_before = (pki / "gw1.key").read_bytes()
    changed, result, _ = run(params, now=now)
    assert changed and result["changes"] == ["issue"]
    assert (pki / "gw1.key").read_bytes() == key_before  # the key is kept
    assert result["key_generated"] is False and result["generated"] is True
    return result, {}


def test_changed_identities_reissue_with_the_same_key(pki: Path) -> None:
    run(cert_params(pki))
    result, _ = _reissued(pki, cert_params(pki, sans=("gw1.example",)))
    assert result["reissued_reason"] == (
        "the subjectAltNames are [DNS:gw1.example, IP:192.0.2.11], want [DNS:gw1.example]"
    )
    assert result["subject_alt_names"] == ["DNS:gw1.example"]


def test_changed_subject_reissues(pki: Path) -> None:
    run(cert_params(pki))
    result, _ = _reissued(pki, cert_params(pki, common_name="gateway one"))
    assert result["reissued_reason"] == "the subject is 'CN=gw1.example', want 'CN=gateway one'"


def test_a_new_ca_reissues_every_certificate(pki: Path) -> None:
    run(cert_params(pki))
    run(ca_params(pki, force=True))  # a new CA key, same name
    result, _ = _reissued(pki, cert_params(pki))
    assert result["reissued_reason"] == (
        "the certificate its signature does not verify with the key of 'CN=Lab CA' (the given CA)"
    )
    load(pki / "gw1.crt").verify_directly_issued_by(load(pki / "ca.crt"))


def test_another_ca_name_reissues(pki: Path) -> None:
    run(cert_params(pki))
    other = pki / "other"
    other.mkdir()
    run(CertParams("ca", str(other / "ca.crt"), str(other / "ca.key"), common_name="Other CA"))
    params = cert_params(pki, ca_cert=str(other / "ca.crt"), ca_key=str(other / "ca.key"))
    result, _ = _reissued(pki, params)
    assert result["reissued_reason"] == (
        "the certificate is issued by 'CN=Lab CA', not by 'CN=Other CA' (the given CA)"
    )


def test_expiry_within_the_renew_margin_reissues(pki: Path) -> None:
    run(cert_params(pki, validity_days=100))
    later = NOW + dt.timedelta(days=69)
    changed, _, _ = run(cert_params(pki, validity_days=100), now=later)
    assert not changed  # 31 days left, margin 30
    later = NOW + dt.timedelta(days=71)
    result, _ = _reissued(pki, cert_params(pki, validity_days=100), now=later)
    assert result["reissued_reason"].startswith("the certificate expires on 2026-09-09 12:00:00")
    assert result["reissued_reason"].endswith("within the renew margin of 30 days")
    assert load(pki / "gw1.crt").not_valid_after_utc == later + dt.timedelta(days=100)


def test_validity_days_alone_reissue_nothing(pki: Path) -> None:
    run(cert_params(pki))
    changed, _, _ = run(cert_params(pki, validity_days=90))
    assert not changed


def test_a_key_of_another_type_makes_a_new_key_and_certificate(pki: Path) -> None:
    run(cert_params(pki))
    changed, result, _ = run(cert_params(pki, key_type="ed25519"))
    assert changed and result["changes"] == ["generate_key", "issue"]
    assert (
        result["regenerated_reason"]
        == "invalid private key: wrong key type: ecdsa-p256, want ed25519"
    )
    assert result["reissued_reason"] == (
        "a new private key (invalid private key: wrong key type: ecdsa-p256, want ed25519)"
    )
    assert isinstance(load(pki / "gw1.crt").public_key(), ed25519.Ed25519PublicKey)


def test_force_makes_a_new_key_and_certificate(pki: Path) -> None:
    _, first, _ = run(cert_params(pki))
    changed, result, _ = run(cert_params(pki, force=True))
    assert changed and result["reissued_reason"] == "a new private key (forced)"
    assert result["public_key_fingerprint"] != first["public_key_fingerprint"]


def test_a_certificate_for_another_key_is_reissued(pki: Path) -> None:
    run(cert_params(pki))
    other = ec.generate_private_key(ec.SECP256R1())
    (pki / "gw1.key").write_bytes(
        other.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    result, _ = _reissued(pki, cert_params(pki))
    assert result["reissued_reason"] == "the certificate is not for the private key"
    assert (
        load(pki / "gw1.crt").public_key().public_numbers() == other.public_key().public_numbers()
    )


def test_an_unreadable_certificate_is_reissued(pki: Path) -> None:
    run(cert_params(pki))
    (pki / "gw1.crt").write_bytes(b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")
    result, _ = _reissued(pki, cert_params(pki))
    assert result["reissued_reason"].startswith("invalid certificate: ")


def test_loose_modes_are_fixed_without_reissuing(pki: Path) -> None:
    _, first, _ = run(cert_params(pki))
    (pki / "gw1.key").chmod(0o644)
    (pki / "gw1.crt").chmod(0o600)
    changed, result, diff = run(cert_params(pki))
    assert changed and result["changes"] == ["key_mode", "cert_mode"]
    assert (mode_of(pki / "gw1.crt"), mode_of(pki / "gw1.key")) == (0o644, 0o600)
    assert result["fingerprint"] == first["fingerprint"]
    assert (diff["before"]["key_mode"], diff["after"]["key_mode"]) == ("0644", "0600")


# --- check mode ---------------------------------------------------------------------------------


def test_check_mode_writes_nothing(tmp_path: Path) -> None:
    changed, result, diff = run(ca_params(tmp_path), check=True)
    assert changed and list(tmp_path.iterdir()) == []
    assert result["fingerprint"] is None and result["generated"] is True
    assert diff["after"]["fingerprint"] == "(new certificate)"


def test_check_mode_reports_the_reissue_without_doing_it(pki: Path) -> None:
    run(cert_params(pki))
    before = {p.name: p.read_bytes() for p in pki.iterdir()}
    changed, result, diff = run(cert_params(pki, sans=("gw1.example",)), check=True)
    assert changed and result["changes"] == ["issue"]
    assert result["reissued_reason"].startswith("the subjectAltNames are")
    assert result["fingerprint"] is None
    assert {p.name: p.read_bytes() for p in pki.iterdir()} == before
    assert diff["before"]["subject_alt_names"] == ["DNS:gw1.example", "IP:192.0.2.11"]
    assert diff["after"]["subject_alt_names"] == ["DNS:gw1.example"]
    assert diff["after"]["fingerprint"] == "(new certificate)"
    assert diff["after"]["public_key_fingerprint"] == diff["before"]["public_key_fingerprint"]


# --- certificates made elsewhere (provided) --------------------------------------------------------


def provided(d: Path, sans: tuple[str, ...] = ("gw1.example",), **kw: Any) -> CertParams:
    kw.setdefault("ca_cert", str(d / "ca.crt"))
    return CertParams(
        "certificate",
        kw.pop("path", str(d / "gw1.crt")),
        kw.pop("private_key_path", str(d / "gw1.key")),
        subject_alt_names=sans,
        provided=True,
        **kw,
    )


def test_a_good_provided_certificate_is_accepted_and_nothing_changes(pki: Path) -> None:
    run(cert_params(pki))
    before = {p.name: (p.read_bytes(), mode_of(p)) for p in pki.iterdir()}
    changed, result, diff = run(provided(pki, sans=("gw1.example", "IP:192.0.2.11")))
    assert not changed and result["changes"] == [] and result["provided"] is True
    assert result["fingerprint"] == fingerprint(
        load(pki / "gw1.crt").public_bytes(serialization.Encoding.DER)
    )
    assert {p.name: (p.read_bytes(), mode_of(p)) for p in pki.iterdir()} == before
    assert_no_key_material([pki / "gw1.key"], result, diff)


def _refused(params: CertParams, field: str, text: str, d: Path) -> None:
    before = {p.name: p.read_bytes() for p in d.iterdir() if p.is_file()}
    with pytest.raises(CertError) as e:
        run(params)
    assert e.value.field == field, str(e.value)
    assert str(e.value).startswith(f"{field}: ") and text in str(e.value), str(e.value)
    assert {p.name: p.read_bytes() for p in d.iterdir() if p.is_file()} == before


def test_provided_with_the_wrong_key_names_private_key_path(pki: Path) -> None:
    run(cert_params(pki))
    run(CertParams("ca", str(pki / "x.crt"), str(pki / "x.key"), common_name="X"))
    _refused(
        provided(pki, private_key_path=str(pki / "x.key")),
        "private_key_path",
        "the key does not match the certificate in path",
        pki,
    )


def test_provided_from_another_ca_names_path(pki: Path) -> None:
    run(cert_params(pki))
    run(CertParams("ca", str(pki / "x.crt"), str(pki / "x.key"), common_name="Other CA"))
    _refused(
        provided(pki, ca_cert=str(pki / "x.crt")),
        "path",
        "does not chain to ca_cert: 'CN=gw1.example' is issued by 'CN=Lab CA', not by 'CN=Other CA'",
        pki,
    )


def test_provided_without_the_identity_names_subject_alt_names(pki: Path) -> None:
    run(cert_params(pki))
    _refused(
        provided(pki, sans=("gw2.example",)),
        "subject_alt_names",
        "lacks the subjectAltName DNS:gw2.example (it has [DNS:gw1.example, IP:192.0.2.11])",
        pki,
    )


def test_provided_dn_identity_must_be_the_subject(pki: Path) -> None:
    run(cert_params(pki, subject="O=Lab, CN=gw1"))
    changed, _, _ = run(provided(pki, sans=("O=Lab, CN=gw1",)))
    assert not changed
    _refused(provided(pki, sans=("O=Lab, CN=gw2",)), "subject_alt_names", "its subject is", pki)


def test_provided_expired_certificate_names_path(pki: Path) -> None:
    run(cert_params(pki, validity_days=10, renew_days=1))
    later = NOW + dt.timedelta(days=11)
    with pytest.raises(CertError, match=r"^path: certificate 'CN=gw1.example' expired on"):
        run(provided(pki), now=later)


@pytest.mark.parametrize(
    ("missing", "field"),
    [("gw1.crt", "path"), ("gw1.key", "private_key_path"), ("ca.crt", "ca_cert")],
)
def test_provided_missing_files_name_their_field(pki: Path, missing: str, field: str) -> None:
    run(cert_params(pki))
    (pki / missing).unlink()
    _refused(provided(pki), field, "does not exist", pki)


def test_provided_chain_through_an_intermediate(pki: Path) -> None:
    """An intermediate CA after the host's certificate in the file: the chain reaches ca_cert."""
    root = load(pki / "ca.crt")
    root_key = serialization.load_pem_private_key((pki / "ca.key").read_bytes(), None)
    inter_key = ec.generate_private_key(ec.SECP256R1())
    inter = certs.build(certs.parse_dn("CN=Intermediate"), inter_key, 100, NOW)
    # re-sign the intermediate by the root (build() makes CAs self-signed)
    inter = (
        x509.CertificateBuilder()
        .subject_name(inter.subject)
        .issuer_name(root.subject)
        .public_key(inter_key.public_key())
        .serial_number(7)
        .not_valid_before(NOW - dt.timedelta(days=1))
        .not_valid_after(NOW + dt.timedelta(days=100))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(inter_key.public_key()), False)
        .sign(root_key, hashes.SHA256())
    )
    host_key = ec.generate_private_key(ec.SECP256R1())
    host = certs.build(certs.parse_dn("CN=gw9"), host_key, 50, NOW, ["DNS:gw9"], (inter, inter_key))
    (pki / "gw9.pem").write_bytes(certs.cert_pem(host) + certs.cert_pem(inter))
    (pki / "gw9.key").write_bytes(
        host_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    params = provided(
        pki, sans=("gw9",), path=str(pki / "gw9.pem"), private_key_path=str(pki / "gw9.key")
    )
    changed, result, _ = run(params)
    assert not changed and result["issuer"] == "CN=Intermediate"
    # without the intermediate in the file the chain stops short
    (pki / "gw9.pem").write_bytes(certs.cert_pem(host))
    _refused(params, "path", "'CN=gw9' is issued by 'CN=Intermediate', not by 'CN=Lab CA'", pki)


# --- parameters --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"type": "ca"}, "common_name"),
        ({"type": "ca", "common_name": "x", "subject_alt_names": ("a",)}, "subject_alt_names"),
        ({"type": "ca", "common_name": "x", "ca_cert": "/x"}, "ca_cert"),
        ({"type": "certificate", "subject_alt_names": ("a",), "ca_key": "/k"}, "ca_cert"),
        ({"type": "certificate", "subject_alt_names": ("a",), "ca_cert": "/c"}, "ca_key"),
        ({"type": "certificate", "ca_cert": "/c", "ca_key": "/k"}, "subject_alt_names"),
        ({"type": "ca", "common_name": "x", "subject": "CN=x"}, "subject"),
        ({"type": "ca", "common_name": "x", "validity_days": 10, "renew_days": 10}, "renew_days"),
        ({"type": "ca", "common_name": "x", "key_type": "dsa"}, "key_type"),
        ({"type": "ca", "subject": "CN=x, XX=y"}, "subject"),
        ({"type": "ca", "common_name": "x", "provided": True}, "provided"),
        ({"type": "certificate", "provided": True}, "ca_cert"),
        ({"type": "certificate", "provided": True, "ca_cert": "/c", "ca_key": "/k"}, "ca_key"),
        (
            {
                "type": "certificate",
                "subject_alt_names": ("IP:300.1.1.1",),
                "ca_cert": "/c",
                "ca_key": "/k",
            },
            "subject_alt_names",
        ),
    ],
)
def test_bad_parameters_name_the_field(tmp_path: Path, params: dict, field: str) -> None:
    with pytest.raises(CertError) as e:
        CertFile(
            CertParams(
                path=str(tmp_path / "c.crt"), private_key_path=str(tmp_path / "c.key"), **params
            )
        )
    assert e.value.field == field, str(e.value)
    assert list(tmp_path.iterdir()) == []


def test_the_ca_key_must_match_the_ca_certificate(pki: Path) -> None:
    run(CertParams("ca", str(pki / "x.crt"), str(pki / "x.key"), common_name="X"))
    with pytest.raises(CertError, match="^ca_key: does not match the certificate in ca_cert"):
        CertFile(cert_params(pki, ca_key=str(pki / "x.key")))


def test_a_host_certificate_cannot_sign(pki: Path) -> None:
    run(cert_params(pki))
    with pytest.raises(CertError, match="^ca_cert: 'CN=gw1.example' is not a CA certificate"):
        CertFile(
            CertParams(
                "certificate",
                str(pki / "gw2.crt"),
                str(pki / "gw2.key"),
                subject_alt_names=("gw2",),
                ca_cert=str(pki / "gw1.crt"),
                ca_key=str(pki / "gw1.key"),
            )
        )


@pytest.mark.parametrize(
    ("given", "canonical"),
    [
        ("gw1.Example", "DNS:gw1.example"),
        ("@gw1", "DNS:gw1"),
        ("192.0.2.1", "IP:192.0.2.1"),
        ("2001:DB8::1", "IP:2001:db8::1"),
        ("IP:192.0.2.1", "IP:192.0.2.1"),
        ("dns:a.b", "DNS:a.b"),
        ("gw@example.org", "email:gw@example.org"),
        ("email:gw@example.org", "email:gw@example.org"),
    ],
)
def test_identities_become_subject_alt_names(given: str, canonical: str) -> None:
    assert certs.san_text(given) == canonical
