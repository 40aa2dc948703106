"""Distinguished names and IKE identities against certificates.

- ``dn_text`` writes a Name as strongSwan does: RDNs in ASN.1 order (most significant first),
  ``C=CH, O=Org, CN=gw``, with strongSwan's short attribute names.
- ``cert_matches_identity`` follows strongSwan's x509 ``has_subject``: an ID_DER_ASN1_DN
  equals the subject (or a directoryName subjectAltName), compared RDN by RDN on
  (attribute type, value), so PrintableString and UTF8String encodings of the same text match;
  FQDN / RFC822 / IPv4 / IPv6 identities must be in the subjectAltName (a CN equal to the FQDN is
  not enough); a KEY_ID matches the subjectKeyIdentifier or the SHA-1 of the public key
  (of the DER SubjectPublicKeyInfo, or of the subjectPublicKey bits).
"""

from __future__ import annotations

import hashlib
import ipaddress
from collections.abc import Callable
from typing import TYPE_CHECKING

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from ikeagent.crypto.pki import der

if TYPE_CHECKING:  # imported lazily: the config package imports this package
    from ikeagent.config.model import Identity

ID_IPV4_ADDR = 1
ID_FQDN = 2
ID_RFC822_ADDR = 3
ID_IPV6_ADDR = 5
ID_DER_ASN1_DN = 9
ID_KEY_ID = 11

# strongSwan's short names; they parse back with ikeagent.config.identity
_SHORT_NAMES: dict[str, str] = {
    "2.5.4.6": "C",
    "2.5.4.8": "ST",
    "2.5.4.7": "L",
    "2.5.4.10": "O",
    "2.5.4.11": "OU",
    "2.5.4.3": "CN",
    "2.5.4.4": "SN",
    "2.5.4.5": "serialNumber",
    "2.5.4.12": "T",
    "2.5.4.42": "G",
    "2.5.4.43": "I",
    "2.5.4.46": "dnQualifier",
    "2.5.4.65": "pseudonym",
    "1.2.840.113549.1.9.1": "E",
    "0.9.2342.19200300.100.1.25": "DC",
    "0.9.2342.19200300.100.1.1": "UID",
}
_CASELESS_TAGS = {der.PRINTABLE_STRING}
_EMAIL_OID = "1.2.840.113549.1.9.1"

# one attribute: (oid, tag, text or None, encoded value)
_Attr = tuple[str, int, str | None, bytes]


def _parse_name(data: bytes) -> list[list[_Attr]]:
    """The RDNs of a DER Name, each a list of its attributes."""
    rdns: list[list[_Attr]] = []
    for rdn in der.children(der.read_one(data, der.SEQUENCE).value):
        if rdn.tag != der.SET:
            raise ValueError("an RDN must be a SET")
        attrs: list[_Attr] = []
        for atv in der.children(rdn.value):
            parts = der.children(atv.value) if atv.tag == der.SEQUENCE else []
            if len(parts) != 2:
                raise ValueError("bad AttributeTypeAndValue")
            oid = der.read_oid(parts[0])
            value = parts[1]
            attrs.append((oid, value.tag, der.read_string(value), value.encoded))
        if not attrs:
            raise ValueError("empty RDN")
        rdns.append(sorted(attrs, key=lambda a: (a[0], a[3])))
    return rdns


def _attr_equal(a: _Attr, b: _Attr) -> bool:
    if a[0] != b[0]:
        return False
    if a[2] is None or b[2] is None:
        return a[3] == b[3]
    if a[2] == b[2]:
        return True
    # strongSwan compares PrintableStrings (and e-mail addresses) without case
    caseless = (a[1] in _CASELESS_TAGS and b[1] in _CASELESS_TAGS) or a[0] == _EMAIL_OID
    return caseless and a[2].casefold() == b[2].casefold()


def dn_equal(a: bytes, b: bytes) -> bool:
    """Whether two DER Names are the same RDN by RDN, ignoring the string types."""
    try:
        ra, rb = _parse_name(a), _parse_name(b)
    except ValueError:
        return False
    if len(ra) != len(rb):
        return False
    for x, y in zip(ra, rb, strict=True):
        if len(x) != len(y) or not all(_attr_equal(p, q) for p, q in zip(x, y, strict=True)):
            return False
    return True


def _escape(text: str) -> str:
    out = text.replace("\\", "\\\\").replace(",", "\\,").replace(";", "\\;").replace('"', '\\"')
    return out


def dn_text(name: x509.Name) -> str:
    """The Name as strongSwan prints it: ``C=CH, O=Org, CN=gw`` (first RDN first)."""
    parts: list[str] = []
    for rdn in name.rdns:
        for attr in rdn:
            key = _SHORT_NAMES.get(attr.oid.dotted_string, attr.oid.dotted_string)
            value = attr.value
            if isinstance(value, bytes):
                parts.append(f"{key}=#{value.hex()}")
            else:
                parts.append(f"{key}={_escape(value)}")
    return ", ".join(parts)


def dn_text_of_der(data: bytes) -> str | None:
    """A DER Name (an ID_DER_ASN1_DN from the wire) as ``dn_text`` writes it; None when the
    bytes are not a Name."""
    try:
        rdns = _parse_name(bytes(data))
    except (ValueError, IndexError):
        return None
    parts = []
    for rdn in rdns:
        for oid, _tag, text, encoded in rdn:
            key = _SHORT_NAMES.get(oid, oid)
            parts.append(
                f"{key}={_escape(text)}" if text is not None else f"{key}=#{encoded.hex()}"
            )
    return ", ".join(parts)


def subject_der(cert: x509.Certificate) -> bytes:
    """The subject Name exactly as encoded in the certificate."""
    try:
        fields = der.children(der.read_one(cert.tbs_certificate_bytes, der.SEQUENCE).value)
        idx = 5 if fields and fields[0].tag == 0xA0 else 4
        subject = fields[idx]
        if subject.tag != der.SEQUENCE:
            raise ValueError("subject is not a SEQUENCE")
        return subject.encoded
    except (ValueError, IndexError):
        return cert.subject.public_bytes()


def subject_identity(cert: x509.Certificate) -> Identity:
    """ID_DER_ASN1_DN with the certificate's subject (its text as strongSwan prints it)."""
    from ikeagent.config.model import Identity

    return Identity(dn_text(cert.subject), ID_DER_ASN1_DN, subject_der(cert))


def _san(cert: x509.Certificate) -> x509.SubjectAlternativeName | None:
    try:
        return cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return None
    except ValueError:  # a malformed extension matches nothing
        return None


def _match_dn(cert: x509.Certificate, data: bytes) -> bool:
    if dn_equal(subject_der(cert), data):
        return True
    san = _san(cert)
    return bool(san) and any(
        dn_equal(n.public_bytes(), data) for n in san.get_values_for_type(x509.DirectoryName)
    )


def _text(data: bytes) -> str | None:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return None


def _match_fqdn(cert: x509.Certificate, data: bytes) -> bool:
    want = _text(data)
    san = _san(cert)
    if want is None or not san:
        return False
    want = want.rstrip(".").casefold()
    return any(n.rstrip(".").casefold() == want for n in san.get_values_for_type(x509.DNSName))


def _match_email(cert: x509.Certificate, data: bytes) -> bool:
    want = _text(data)
    san = _san(cert)
    if want is None or not san:
        return False
    want = want.casefold()
    return any(n.casefold() == want for n in san.get_values_for_type(x509.RFC822Name))


def _match_ip(cert: x509.Certificate, data: bytes) -> bool:
    san = _san(cert)
    if not san or len(data) not in (4, 16):
        return False
    want = ipaddress.ip_address(data)
    return any(a == want for a in san.get_values_for_type(x509.IPAddress))


def _match_keyid(cert: x509.Certificate, data: bytes) -> bool:
    if not data:
        return False
    try:
        ski = cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
        if ski.digest == data:
            return True
    except (x509.ExtensionNotFound, ValueError):
        pass
    spki = cert.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    if hashlib.sha1(spki).digest() == data:
        return True
    try:  # SHA-1 of the subjectPublicKey BIT STRING content (RFC 5280 4.2.1.2 method 1)
        bits = der.children(der.read_one(spki, der.SEQUENCE).value)[1]
        return bits.tag == der.BIT_STRING and hashlib.sha1(bits.value[1:]).digest() == data
    except (ValueError, IndexError):
        return False


_MATCHERS: dict[int, Callable[[x509.Certificate, bytes], bool]] = {
    ID_DER_ASN1_DN: _match_dn,
    ID_FQDN: _match_fqdn,
    ID_RFC822_ADDR: _match_email,
    ID_IPV4_ADDR: _match_ip,
    ID_IPV6_ADDR: _match_ip,
    ID_KEY_ID: _match_keyid,
}


def cert_matches_identity(cert: x509.Certificate, ident: Identity) -> bool:
    """Whether the certificate vouches for the IKE identity (see the module docstring)."""
    matcher = _MATCHERS.get(int(ident.id_type))
    if matcher is None:
        return False
    if ident.id_type == ID_IPV4_ADDR and len(ident.data) != 4:
        return False
    if ident.id_type == ID_IPV6_ADDR and len(ident.data) != 16:
        return False
    return matcher(cert, bytes(ident.data))


def describe(cert: x509.Certificate) -> str:
    """``CN=gw-b (serial 1a:2b, issuer CN=Lab CA)`` for logs and error messages."""
    return f"{dn_text(cert.subject)} (serial {serial_text(cert)}, issuer {dn_text(cert.issuer)})"


def serial_text(cert: x509.Certificate) -> str:
    """The serial number as colon-separated hex octets, as strongSwan and OpenSSL show it
    (which also keeps the log redaction from mistaking a 20-octet serial for key material)."""
    serial = cert.serial_number
    sign = "-" if serial < 0 else ""
    raw = abs(serial).to_bytes(max(1, (abs(serial).bit_length() + 7) // 8), "big")
    return sign + ":".join(f"{b:02x}" for b in raw)
