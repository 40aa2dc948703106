"""A minimal DER reader/writer for the few structures the PKI code handles itself
(AlgorithmIdentifiers of RFC 7427, Names compared RDN by RDN, the subject of a TBSCertificate).

Only definite lengths in minimal form are accepted; anything else raises ValueError.
"""

from __future__ import annotations

from dataclasses import dataclass

SEQUENCE = 0x30
SET = 0x31
OID = 0x06
NULL = 0x05
INTEGER = 0x02
BIT_STRING = 0x03
OCTET_STRING = 0x04
UTF8_STRING = 0x0C
PRINTABLE_STRING = 0x13
T61_STRING = 0x14
IA5_STRING = 0x16
UNIVERSAL_STRING = 0x1C
BMP_STRING = 0x1E
VISIBLE_STRING = 0x1A
NUMERIC_STRING = 0x12


@dataclass(frozen=True, slots=True)
class Tlv:
    """One DER element: its tag octet, its value octets and its whole encoding."""

    tag: int
    value: bytes
    encoded: bytes


def read(data: bytes, pos: int = 0) -> tuple[Tlv, int]:
    """The element starting at ``pos`` and the position after it."""
    if pos + 2 > len(data):
        raise ValueError("truncated DER element")
    tag = data[pos]
    if tag & 0x1F == 0x1F:
        raise ValueError("multi-octet DER tags are not supported")
    first = data[pos + 1]
    i = pos + 2
    if first < 0x80:
        length = first
    else:
        n = first & 0x7F
        if n == 0 or n > 4 or i + n > len(data):
            raise ValueError("bad DER length")
        length = int.from_bytes(data[i : i + n], "big")
        if length < 0x80 or data[i] == 0:
            raise ValueError("non-minimal DER length")
        i += n
    end = i + length
    if end > len(data):
        raise ValueError("truncated DER element")
    return Tlv(tag, bytes(data[i:end]), bytes(data[pos:end])), end


def read_one(data: bytes, tag: int | None = None) -> Tlv:
    """The single element that makes up ``data`` (no trailing octets)."""
    tlv, end = read(data)
    if end != len(data):
        raise ValueError("trailing octets after DER element")
    if tag is not None and tlv.tag != tag:
        raise ValueError(f"expected DER tag 0x{tag:02x}, got 0x{tlv.tag:02x}")
    return tlv


def children(value: bytes) -> list[Tlv]:
    """The elements inside a constructed value."""
    out: list[Tlv] = []
    pos = 0
    while pos < len(value):
        tlv, pos = read(value, pos)
        out.append(tlv)
    return out


def encode(tag: int, value: bytes) -> bytes:
    n = len(value)
    if n < 0x80:
        return bytes([tag, n]) + value
    ln = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([tag, 0x80 | len(ln)]) + ln + value


def sequence(*items: bytes) -> bytes:
    return encode(SEQUENCE, b"".join(items))


def integer(n: int) -> bytes:
    if n < 0:
        raise ValueError("negative integers are not needed here")
    body = n.to_bytes(n.bit_length() // 8 + 1, "big")
    return encode(INTEGER, body)


def read_integer(tlv: Tlv) -> int:
    if tlv.tag != INTEGER or not tlv.value:
        raise ValueError("expected a DER INTEGER")
    v = tlv.value
    if len(v) > 1 and ((v[0] == 0 and v[1] < 0x80) or (v[0] == 0xFF and v[1] >= 0x80)):
        raise ValueError("non-minimal DER INTEGER")
    return int.from_bytes(v, "big", signed=True)


def oid(dotted: str) -> bytes:
    """DER encoding (tag and length included) of a dotted OID."""
    arcs = [int(a) for a in dotted.split(".")]
    if len(arcs) < 2 or arcs[0] > 2 or (arcs[0] < 2 and arcs[1] >= 40):
        raise ValueError(f"bad OID {dotted!r}")
    out = bytearray()
    for arc in [arcs[0] * 40 + arcs[1], *arcs[2:]]:
        chunk = [arc & 0x7F]
        arc >>= 7
        while arc:
            chunk.append(0x80 | (arc & 0x7F))
            arc >>= 7
        out += bytes(reversed(chunk))
    return encode(OID, bytes(out))


def read_oid(tlv: Tlv) -> str:
    if tlv.tag != OID or not tlv.value or tlv.value[-1] & 0x80:
        raise ValueError("expected a DER OBJECT IDENTIFIER")
    arcs: list[int] = []
    cur = 0
    fresh = True
    for b in tlv.value:
        if fresh and b == 0x80:
            raise ValueError("non-minimal OID arc")
        cur = (cur << 7) | (b & 0x7F)
        fresh = not b & 0x80
        if fresh:
            arcs.append(cur)
            cur = 0
    first = arcs[0]
    head = [0, first] if first < 40 else [1, first - 40] if first < 80 else [2, first - 80]
    return ".".join(str(a) for a in head + arcs[1:])


_STRING_CODECS = {
    UTF8_STRING: "utf-8",
    PRINTABLE_STRING: "ascii",
    IA5_STRING: "ascii",
    VISIBLE_STRING: "ascii",
    NUMERIC_STRING: "ascii",
    T61_STRING: "latin-1",
    BMP_STRING: "utf-16-be",
    UNIVERSAL_STRING: "utf-32-be",
}


def read_string(tlv: Tlv) -> str | None:
    """The text of a directory string, or None for a type that is not a string."""
    codec = _STRING_CODECS.get(tlv.tag)
    if codec is None:
        return None
    try:
        return tlv.value.decode(codec)
    except UnicodeDecodeError:
        return None
