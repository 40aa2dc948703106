"""IKE identities from strongSwan's string forms (``identification_create_from_string``).

Rules, in order:

- ``%any`` (or an empty string) is "any identity" and parses to ``None``.
- An explicit type prefix ``ipv4:``, ``ipv6:``, ``fqdn:``, ``email:``/``rfc822:``,
  ``keyid:`` (hex) or ``asn1dn:`` (DN string) forces the type.
- ``@#<hex>`` is a KEY_ID with the given bytes; ``@@user@host`` an RFC822_ADDR; ``@name`` an
  FQDN (taken literally, without the ``@``).
- An IPv4 or IPv6 literal is ID_IPV4_ADDR / ID_IPV6_ADDR with the packed address.
- A string containing ``=`` is a Distinguished Name (``C=CH, O=Org, CN=gw``, in ASN.1 order
  as strongSwan writes it, or ``/C=CH/O=Org/CN=gw``), encoded as DER with
  ``cryptography.x509.Name``; values are PrintableString when they fit, as strongSwan encodes
  them, else UTF8String (email and DC are IA5String).
- Otherwise a string containing ``@`` is an RFC822_ADDR, and anything else an FQDN.

ID Type numbers are those of IKEv2 (RFC 7296 section 3.5), which IKEv1 shares (RFC 2407 4.6.2.1).
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable
from typing import TYPE_CHECKING

from ikeagent.config.errors import Invalid
from ikeagent.config.model import Identity
from ikeagent.wire.v2.enums import IdType

if TYPE_CHECKING:
    from cryptography.x509.oid import ObjectIdentifier

# the ID types are the wire's IANA registry (RFC 7296 3.5); the old name stays for callers
IDType = IdType


# strongSwan's RDN abbreviations (and the usual long names), lower-cased.
# cryptography (for DER) is imported only when a DN is given: the table names NameOID members,
# so the Ansible controller can validate configurations without it.
_RDN_OIDS: dict[str, str] = {
    "c": "COUNTRY_NAME",
    "st": "STATE_OR_PROVINCE_NAME",
    "s": "STATE_OR_PROVINCE_NAME",
    "l": "LOCALITY_NAME",
    "o": "ORGANIZATION_NAME",
    "ou": "ORGANIZATIONAL_UNIT_NAME",
    "cn": "COMMON_NAME",
    "e": "EMAIL_ADDRESS",
    "email": "EMAIL_ADDRESS",
    "emailaddress": "EMAIL_ADDRESS",
    "sn": "SURNAME",
    "serialnumber": "SERIAL_NUMBER",
    "g": "GIVEN_NAME",
    "gn": "GIVEN_NAME",
    "givenname": "GIVEN_NAME",
    "t": "TITLE",
    "title": "TITLE",
    "dc": "DOMAIN_COMPONENT",
    "uid": "USER_ID",
    "dnq": "DN_QUALIFIER",
    "dnqualifier": "DN_QUALIFIER",
    "pseudonym": "PSEUDONYM",
    "i": "INITIALS",
    "initials": "INITIALS",
}
_IA5_OIDS = {"EMAIL_ADDRESS", "DOMAIN_COMPONENT"}
_PRINTABLE = re.compile(r"^[A-Za-z0-9 '()+,\-./:=?]*$")
_HEX = re.compile(r"^(?:[0-9a-fA-F]{2})+$")


def _split_dn(text: str) -> list[str]:
    """Split a DN string into ``key=value`` parts at unescaped ``,`` (or ``/`` when it starts
    with one), honouring backslash escapes and double quotes."""
    sep = "/" if text.startswith("/") else ","
    body = text[1:] if sep == "/" else text
    parts: list[str] = []
    cur: list[str] = []
    quoted = False
    i = 0
    while i < len(body):
        ch = body[i]
        if ch == "\\" and i + 1 < len(body):
            cur.append(body[i + 1])
            i += 2
            continue
        if ch == '"':
            quoted = not quoted
        elif (ch == sep or (sep == "," and ch == ";")) and not quoted:
            parts.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
        i += 1
    if quoted:
        raise Invalid("unterminated quote in distinguished name")
    parts.append("".join(cur))
    return [p.strip() for p in parts]


def _rdn_oid(key: str) -> ObjectIdentifier:
    from cryptography.x509.oid import NameOID, ObjectIdentifier

    name = _RDN_OIDS.get(key.lower())
    if name is not None:
        return getattr(NameOID, name)
    if re.fullmatch(r"\d+(\.\d+)+", key):
        return ObjectIdentifier(key)
    raise Invalid(f"unknown attribute {key!r} in distinguished name")


def dn_to_der(text: str) -> bytes:
    """DER encoding of a strongSwan-style DN string (first RDN most significant)."""
    from cryptography import x509
    from cryptography.x509.name import _ASN1Type
    from cryptography.x509.oid import NameOID

    ia5 = {getattr(NameOID, name) for name in _IA5_OIDS}
    rdns: list[x509.RelativeDistinguishedName] = []
    for part in _split_dn(text):
        if not part:
            continue
        key, eq, value = part.partition("=")
        if not eq or not key.strip():
            raise Invalid(f"bad RDN {part!r} in distinguished name (want KEY=value)")
        oid = _rdn_oid(key.strip())
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] == '"':
            value = value[1:-1]
        if oid in ia5:
            kind = _ASN1Type.IA5String
        elif _PRINTABLE.match(value):
            kind = _ASN1Type.PrintableString
        else:
            kind = _ASN1Type.UTF8String
        try:
            attr = x509.NameAttribute(oid, value, _type=kind)
        except ValueError as e:
            raise Invalid(f"bad value for {key.strip()} in distinguished name: {e}")
        rdns.append(x509.RelativeDistinguishedName([attr]))
    if not rdns:
        raise Invalid("empty distinguished name")
    return x509.Name(rdns).public_bytes()


def _ipv4(text: str) -> Identity:
    try:
        return Identity(text, IDType.ID_IPV4_ADDR, ipaddress.IPv4Address(text).packed)
    except ValueError:
        raise Invalid(f"{text!r} is not an IPv4 address")


def _ipv6(text: str) -> Identity:
    try:
        return Identity(text, IDType.ID_IPV6_ADDR, ipaddress.IPv6Address(text).packed)
    except ValueError:
        raise Invalid(f"{text!r} is not an IPv6 address")


def _fqdn(text: str) -> Identity:
    if not text:
        raise Invalid("empty FQDN identity")
    return Identity(text, IDType.ID_FQDN, text.encode())


def _rfc822(text: str) -> Identity:
    if not text:
        raise Invalid("empty RFC822 identity")
    return Identity(text, IDType.ID_RFC822_ADDR, text.encode())


def _keyid(text: str) -> Identity:
    hexpart = text[2:] if text.lower().startswith("0x") else text
    hexpart = hexpart.replace(":", "")
    if not _HEX.match(hexpart):
        raise Invalid("a key id must be an even number of hex digits")
    return Identity(text, IDType.ID_KEY_ID, bytes.fromhex(hexpart))


def _dn(text: str) -> Identity:
    return Identity(text, IDType.ID_DER_ASN1_DN, dn_to_der(text))


_PREFIXES: dict[str, Callable[[str], Identity]] = {
    "ipv4": _ipv4,
    "ipv6": _ipv6,
    "fqdn": _fqdn,
    "email": _rfc822,
    "rfc822": _rfc822,
    "userfqdn": _rfc822,
    "keyid": _keyid,
    "asn1dn": _dn,
}


def parse_identity(text: str) -> Identity | None:
    """Parse an identity string as strongSwan does; ``None`` for ``%any``. Raises Invalid."""
    if not isinstance(text, str):
        raise Invalid(f"an identity must be a string, not {type(text).__name__}")
    text = text.strip()
    if text in ("", "%any", "%any6"):
        return None
    prefix, colon, rest = text.partition(":")
    if colon and prefix.lower() in _PREFIXES:
        ident = _PREFIXES[prefix.lower()](rest)
        return Identity(text, ident.id_type, ident.data)
    if text.startswith("@#"):
        ident = _keyid(text[2:])
        return Identity(text, ident.id_type, ident.data)
    if text.startswith("@@"):
        return Identity(text, IDType.ID_RFC822_ADDR, _rfc822(text[2:]).data)
    if text.startswith("@"):
        return Identity(text, IDType.ID_FQDN, _fqdn(text[1:]).data)
    try:
        addr = ipaddress.ip_address(text)
    except ValueError:
        pass
    else:
        kind = IDType.ID_IPV4_ADDR if addr.version == 4 else IDType.ID_IPV6_ADDR
        return Identity(text, kind, addr.packed)
    if "=" in text:
        return _dn(text)
    if "@" in text:
        return _rfc822(text)
    return _fqdn(text)


def identity_of_address(addr: str) -> Identity:
    """The default local identity: the IP address the IKE SA runs over."""
    ident = parse_identity(addr)
    if ident is None or ident.id_type not in (IDType.ID_IPV4_ADDR, IDType.ID_IPV6_ADDR):
        raise Invalid(f"{addr!r} is not an IP address")
    return ident
