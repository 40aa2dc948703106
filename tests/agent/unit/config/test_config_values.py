"""Traffic selectors and identities in strongSwan's string forms."""

from __future__ import annotations

import ipaddress

import pytest

from ikeagent.config.errors import Invalid
from ikeagent.config.identity import IDType, dn_to_der, parse_identity
from ikeagent.config.selectors import parse_ts
from ikeagent.dataplane.base import TrafficSelector


def _ts(net: str, proto: int = 0, lo: int = 0, hi: int = 65535) -> TrafficSelector:
    return TrafficSelector(ipaddress.ip_network(net), proto, lo, hi)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("10.1.0.0/24", _ts("10.1.0.0/24")),
        ("10.1.0.5", _ts("10.1.0.5/32")),
        ("2001:db8::/64", _ts("2001:db8::/64")),
        ("10.1.0.0/24[tcp/443]", _ts("10.1.0.0/24", 6, 443, 443)),
        ("10.1.0.0/24[17/1000-2000]", _ts("10.1.0.0/24", 17, 1000, 2000)),
        ("10.1.0.0/24[udp]", _ts("10.1.0.0/24", 17)),
        ("10.1.0.0/24[udp/%any]", _ts("10.1.0.0/24", 17)),
        ("10.1.0.0/24[tcp/https]", _ts("10.1.0.0/24", 6, 443, 443)),
        # ICMP type 8 in the high byte, any code (RFC 4301 section 4.4.1.1)
        ("0.0.0.0/0[icmp/8]", _ts("0.0.0.0/0", 1, 0x0800, 0x08FF)),
        ("%any", _ts("0.0.0.0/0")),
        ("%any6", _ts("::/0")),
    ],
)
def test_traffic_selectors(text, expected):
    assert parse_ts(text) == expected


def test_traffic_selector_str_round_trips():
    for text in ("10.1.0.0/24", "10.1.0.0/24[6/443]", "10.1.0.0/24[17/1000-2000]"):
        assert str(parse_ts(text)) == text


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("dynamic", "not supported"),
        ("10.1.0.1/24", "host bits"),
        ("10.1.0.1-10.1.0.9", "ranges"),
        ("10.1.0.0/24[tcp/70000]", "out of range"),
        ("10.1.0.0/24[bogus]", "unknown protocol"),
        ("10.1.0.0/24[/443]", "needs a protocol"),
        ("10.1.0.0/24[tcp/500-400]", "empty"),
        ("10.1.0.0/33", "bad subnet"),
    ],
)
def test_bad_traffic_selectors(text, words):
    with pytest.raises(Invalid, match=words):
        parse_ts(text)


@pytest.mark.parametrize(
    ("text", "id_type", "data"),
    [
        ("192.0.2.1", IDType.ID_IPV4_ADDR, bytes([192, 0, 2, 1])),
        ("2001:db8::1", IDType.ID_IPV6_ADDR, ipaddress.IPv6Address("2001:db8::1").packed),
        ("@gw.example", IDType.ID_FQDN, b"gw.example"),
        ("gw.example", IDType.ID_FQDN, b"gw.example"),
        ("@192.0.2.1", IDType.ID_FQDN, b"192.0.2.1"),  # "@" forces FQDN, as in strongSwan
        ("user@example.org", IDType.ID_RFC822_ADDR, b"user@example.org"),
        ("@@user@example.org", IDType.ID_RFC822_ADDR, b"user@example.org"),
        ("@#0a0b0c", IDType.ID_KEY_ID, b"\x0a\x0b\x0c"),
        ("fqdn:x.example", IDType.ID_FQDN, b"x.example"),
        ("keyid:0102", IDType.ID_KEY_ID, b"\x01\x02"),
    ],
)
def test_identities(text, id_type, data):
    ident = parse_identity(text)
    assert (ident.text, ident.id_type, ident.data) == (text, id_type, data)


def test_any_identity_is_none():
    assert parse_identity("%any") is None


def test_distinguished_name_is_der_in_written_order():
    ident = parse_identity("C=CH, O=strongSwan Project, CN=gw-b.example")
    assert ident.id_type == IDType.ID_DER_ASN1_DN
    # Name ::= SEQUENCE OF RDN (RFC 5280 4.1.2.4), DER per X.690; each RDN a SET of one
    # SEQUENCE {OID 2.5.4.x, PrintableString (tag 0x13)}, in the order written (C first).
    c = bytes.fromhex("310b3009060355040613024348")
    o = bytes.fromhex("311b3019060355040a1312") + b"strongSwan Project"
    cn = bytes.fromhex("311530130603550403130c") + b"gw-b.example"
    assert ident.data == bytes([0x30, len(c + o + cn)]) + c + o + cn
    assert dn_to_der("/C=CH/O=strongSwan Project/CN=gw-b.example") == ident.data


def test_distinguished_name_utf8_and_escapes():
    der = dn_to_der(r"CN=M\, Müller, O=x")
    assert "M, Müller".encode() in der
    assert b"\x0c" in der  # UTF8String tag for the non-printable value


@pytest.mark.parametrize(
    "text", ["C=CHE, CN=x", "XX=1, CN=x", "C=CH, CN", "ipv4:999.1.1.1", "@#abc", "keyid:zz"]
)
def test_bad_identities(text):
    with pytest.raises(Invalid):
        parse_identity(text)
