"""DN text, subject identities and identity matching against certificates."""

from __future__ import annotations

import hashlib
import ipaddress

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.name import _ASN1Type
from cryptography.x509.oid import NameOID
from pki_factory import key, make_cert, name

from ikeagent.config.identity import dn_to_der, parse_identity
from ikeagent.config.model import Identity
from ikeagent.crypto.pki.names import (
    cert_matches_identity,
    describe,
    dn_equal,
    dn_text,
    subject_identity,
)


def _utf8_name(**kw: str) -> x509.Name:
    oids = {"C": NameOID.COUNTRY_NAME, "O": NameOID.ORGANIZATION_NAME, "CN": NameOID.COMMON_NAME}
    return x509.Name(
        [x509.NameAttribute(oids[k], v, _type=_ASN1Type.UTF8String) for k, v in kw.items()]
    )


@pytest.fixture(scope="module")
def ca():
    return make_cert(name("Names CA"), key("p256", 7), ca=True)


@pytest.fixture(scope="module")
def gw(ca):
    subject = x509.Name(
        [
            x509.NameAttribute(NameOID.COUNTRY_NAME, "CH"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Lab Org", _type=_ASN1Type.UTF8String),
            x509.NameAttribute(NameOID.COMMON_NAME, "gw-b.example", _type=_ASN1Type.UTF8String),
        ]
    )
    san = [
        x509.DNSName("gw-b.example"),
        x509.DNSName("alt.example"),
        x509.RFC822Name("admin@example.org"),
        x509.IPAddress(ipaddress.ip_address("192.0.2.7")),
        x509.IPAddress(ipaddress.ip_address("2001:db8::7")),
        x509.DirectoryName(_utf8_name(O="Alt", CN="alt-dn")),
    ]
    return make_cert(subject, key("p256", 8), ca, san=san, serial=0x1A2B)


def test_dn_text_strongswan_order_and_names(gw):
    assert dn_text(gw.cert.subject) == "C=CH, O=Lab Org, CN=gw-b.example"
    n = x509.Name(
        [
            x509.NameAttribute(NameOID.DOMAIN_COMPONENT, "example"),
            x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, "a, b"),
            x509.NameAttribute(NameOID.EMAIL_ADDRESS, "x@example"),
            x509.NameAttribute(NameOID.SERIAL_NUMBER, "42"),
        ]
    )
    assert dn_text(n) == r"DC=example, OU=a\, b, E=x@example, serialNumber=42"


def test_dn_text_round_trips_through_config_parser(gw):
    text = dn_text(gw.cert.subject)
    ident = parse_identity(text)
    assert ident is not None and ident.id_type == 9
    # the config encodes PrintableString, the certificate UTF8String: still the same DN
    assert ident.data != gw.cert.subject.public_bytes()
    assert cert_matches_identity(gw.cert, ident)


def test_subject_identity_is_exact_subject_der(gw):
    ident = subject_identity(gw.cert)
    assert ident.id_type == 9
    assert ident.data == gw.cert.subject.public_bytes()
    assert ident.text == "C=CH, O=Lab Org, CN=gw-b.example"
    assert cert_matches_identity(gw.cert, ident)


def test_dn_string_types_and_case():
    printable = dn_to_der("C=CH, O=Lab, CN=gw")
    utf8 = _utf8_name(C="CH", O="Lab", CN="gw").public_bytes()
    assert printable != utf8
    assert dn_equal(printable, utf8)
    assert dn_equal(printable, dn_to_der("C=ch, O=LAB, CN=GW"))  # PrintableString: no case
    assert not dn_equal(utf8, _utf8_name(C="CH", O="LAB", CN="gw").public_bytes())
    assert not dn_equal(printable, dn_to_der("C=CH, CN=gw, O=Lab"))  # order matters
    assert not dn_equal(printable, dn_to_der("C=CH, O=Lab"))
    assert not dn_equal(printable, dn_to_der("C=CH, O=Lab, CN=gw2"))
    assert not dn_equal(printable, b"\x30\x03\x31\x01")  # malformed


@pytest.mark.parametrize(
    "text,expected",
    [
        ("gw-b.example", True),
        ("GW-B.Example", True),
        ("alt.example", True),
        ("other.example", False),
        ("admin@example.org", True),
        ("Admin@Example.org", True),
        ("root@example.org", False),
        ("192.0.2.7", True),
        ("192.0.2.8", False),
        ("2001:db8::7", True),
        ("2001:db8::8", False),
        ("C=CH, O=Lab Org, CN=gw-b.example", True),
        ("C=CH, O=Lab Org, CN=other", False),
        ("O=Alt, CN=alt-dn", True),  # directoryName subjectAltName
    ],
)
def test_identity_matching(gw, text, expected):
    ident = parse_identity(text)
    assert cert_matches_identity(gw.cert, ident) is expected


def test_fqdn_equal_to_cn_without_san_is_not_enough(ca):
    leaf = make_cert(name("cn-only.example"), key("p256", 9), ca)
    assert not cert_matches_identity(leaf.cert, parse_identity("cn-only.example"))
    assert not cert_matches_identity(leaf.cert, parse_identity("user@cn-only.example"))
    assert cert_matches_identity(leaf.cert, parse_identity("O=Lab, CN=cn-only.example"))


def test_email_is_not_an_fqdn(gw):
    assert not cert_matches_identity(
        gw.cert, Identity("admin@example.org", 2, b"admin@example.org")
    )
    assert not cert_matches_identity(gw.cert, Identity("gw-b.example", 3, b"gw-b.example"))


def test_ip_type_length_mismatch(gw):
    assert not cert_matches_identity(
        gw.cert, Identity("x", 1, ipaddress.ip_address("2001:db8::7").packed)
    )


def test_key_id(gw):
    spki = gw.cert.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    ski = gw.cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value.digest
    assert cert_matches_identity(gw.cert, Identity("k", 11, hashlib.sha1(spki).digest()))
    assert cert_matches_identity(gw.cert, Identity("k", 11, ski))
    assert not cert_matches_identity(gw.cert, Identity("k", 11, b"\x00" * 20))
    assert not cert_matches_identity(gw.cert, Identity("k", 11, b""))


def test_unknown_type_matches_nothing(gw):
    assert not cert_matches_identity(gw.cert, Identity("x", 13, b""))


def test_describe(gw):
    assert (
        describe(gw.cert)
        == "C=CH, O=Lab Org, CN=gw-b.example (serial 1a:2b, issuer O=Lab, CN=Names CA)"
    )


def test_a_long_serial_survives_the_log_redaction():
    from ikeagent.crypto.pki.names import serial_text
    from ikeagent.runtime.logging import redact

    class _Cert:
        serial_number = int("7f" + "a5" * 19, 16)  # 20 octets, the RFC 5280 maximum

    text = serial_text(_Cert())  # type: ignore[arg-type]
    assert text.startswith("7f:a5:") and len(text.split(":")) == 20
    assert redact(f"certificate (serial {text})") == f"certificate (serial {text})"


def test_dn_text_of_der_reads_wire_dns_and_refuses_garbage():
    from ikeagent.config.identity import parse_identity
    from ikeagent.crypto.pki.names import dn_text_of_der

    ident = parse_identity("C=CH, O=Lab\\, Org, CN=gw-b.example")
    assert dn_text_of_der(ident.data) == "C=CH, O=Lab\\, Org, CN=gw-b.example"
    assert dn_text_of_der(b"\x30\x03abc") is None
    assert dn_text_of_der(b"") is None
