"""IKE identities on the wire <-> the config's Identity, and matching.

Distinguished names (ID_DER_ASN1_DN) are shown as strongSwan writes them ("C=CH, O=Org, CN=gw")
and compared attribute by attribute, ignoring the ASN.1 string types (a DN configured as text
is PrintableString, a certificate subject often UTF8String)."""

from __future__ import annotations

import ipaddress

from ikeagent.config.model import Identity
from ikeagent.crypto.pki.names import dn_equal
from ikeagent.wire.v2 import IdType


def identity_from_wire(id_type: int, data: bytes) -> Identity:
    t = int(id_type)
    try:
        if t == IdType.ID_IPV4_ADDR and len(data) == 4:
            text = str(ipaddress.IPv4Address(data))
        elif t == IdType.ID_IPV6_ADDR and len(data) == 16:
            text = str(ipaddress.IPv6Address(data))
        elif t in (IdType.ID_FQDN, IdType.ID_RFC822_ADDR):
            text = data.decode("utf-8", "replace")
        elif t == IdType.ID_DER_ASN1_DN:
            rdns = dn_attributes(data)
            text = dn_string(rdns) if rdns else "DN:" + data.hex()
        elif t == IdType.ID_KEY_ID:
            text = "@#" + data.hex()
        else:
            text = f"({IdType(t).name}) " + data.hex()
    except Exception:  # noqa: BLE001 - peer input; any decoding failure renders as hex
        text = f"({t}) " + data.hex()
    return Identity(text=text, id_type=t, data=bytes(data))


def same_identity(a: Identity | None, b: Identity | None) -> bool:
    if a is None or b is None:
        return False
    if a.id_type != b.id_type:
        return False
    if a.data == b.data:
        return True
    return a.id_type == IdType.ID_DER_ASN1_DN and dn_equal(a.data, b.data)


def matches(configured: Identity | None, received: Identity) -> bool:
    """A configured remote identity (None = any) against the one the peer sent."""
    if configured is None or configured.text in ("%any", "*"):
        return True
    return same_identity(configured, received)


# ---- DER distinguished names (X.501 Name: SEQUENCE OF SET OF AttributeTypeAndValue) --------

# strongSwan's abbreviations for the usual attribute types
_DN_NAMES = {
    "2.5.4.3": "CN",
    "2.5.4.4": "SN",
    "2.5.4.5": "serialNumber",
    "2.5.4.6": "C",
    "2.5.4.7": "L",
    "2.5.4.8": "ST",
    "2.5.4.10": "O",
    "2.5.4.11": "OU",
    "2.5.4.12": "T",
    "2.5.4.42": "G",
    "2.5.4.43": "I",
    "2.5.4.46": "dnQualifier",
    "2.5.4.65": "pseudonym",
    "1.2.840.113549.1.9.1": "E",
    "0.9.2342.19200300.100.1.1": "UID",
    "0.9.2342.19200300.100.1.25": "DC",
}
_STRING_TAGS = {0x0C, 0x13, 0x14, 0x16, 0x1A, 0x1E, 0x1C}  # UTF8 Printable T61 IA5 Visible BMP Univ


def _tlv(data: bytes, pos: int) -> tuple[int, bytes, int]:
    """(tag, value, end) of the DER element at ``pos``; ValueError when malformed."""
    if pos + 2 > len(data):
        raise ValueError("truncated")
    tag, n = data[pos], data[pos + 1]
    pos += 2
    if n & 0x80:
        k = n & 0x7F
        if not 1 <= k <= 3 or pos + k > len(data):
            raise ValueError("bad length")
        n = int.from_bytes(data[pos : pos + k], "big")
        pos += k
    if pos + n > len(data):
        raise ValueError("truncated")
    return tag, data[pos : pos + n], pos + n


def _oid(value: bytes) -> str:
    if not value:
        raise ValueError("empty OID")
    arcs: list[int] = []
    cur = 0
    for b in value:
        cur = (cur << 7) | (b & 0x7F)
        if not b & 0x80:
            arcs.append(cur)
            cur = 0
    first = min(arcs[0] // 40, 2)
    return ".".join(str(a) for a in (first, arcs[0] - 40 * first, *arcs[1:]))


def _text(tag: int, value: bytes) -> str:
    if tag == 0x1E:
        return value.decode("utf-16-be", "replace")
    if tag == 0x1C:
        return value.decode("utf-32-be", "replace")
    if tag in _STRING_TAGS:
        return value.decode("utf-8" if tag == 0x0C else "latin-1", "replace")
    return "#" + value.hex()


def dn_attributes(data: bytes) -> tuple[tuple[str, str], ...] | None:
    """The (OID, text) attributes of a DER Name in order (for display); None if the bytes
    are not a Name."""
    try:
        tag, body, end = _tlv(data, 0)
        if tag != 0x30 or end != len(data):
            return None
        out: list[tuple[str, str]] = []
        pos = 0
        while pos < len(body):
            tag, rdn, pos = _tlv(body, pos)
            if tag != 0x31:
                return None
            i = 0
            while i < len(rdn):
                tag, atv, i = _tlv(rdn, i)
                if tag != 0x30:
                    return None
                otag, oid, j = _tlv(atv, 0)
                vtag, value, k = _tlv(atv, j)
                if otag != 0x06 or k != len(atv):
                    return None
                out.append((_oid(oid), _text(vtag, value)))
        return tuple(out)
    except (ValueError, IndexError):
        return None


def dn_string(attributes: tuple[tuple[str, str], ...]) -> str:
    """A DN as strongSwan prints it: ``C=CH, O=Org, CN=gw`` (first RDN first)."""
    return ", ".join(f"{_DN_NAMES.get(oid, oid)}={value}" for oid, value in attributes)
