"""The Security Association payload and its substructures (RFC 7296 section 3.3).

An SA payload is a list of Proposal substructures, each a list of Transform substructures,
each with optional Transform Attributes.  Proposals and transforms carry their own "last
substructure" markers (0 = last, 2 = more proposals, 3 = more transforms) and lengths, which
decoding checks against each other and against the enclosing length.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import ClassVar, Self

from ikeagent.wire.errors import InvalidLength, InvalidSyntax
from ikeagent.wire.iana import lookup_table
from ikeagent.wire.v2.base import Payload
from ikeagent.wire.v2.enums import PayloadType, ProtocolId, TransformType

KEY_LENGTH = 14  # the Key Length transform attribute (RFC 7296 3.3.5)

_ATTR = struct.Struct(">HH")  # AF|Attribute Type, Attribute Length or Value
_TRANSFORM = struct.Struct(">BBHBBH")  # Last, RESERVED, Length, Type, RESERVED, Transform ID
_PROPOSAL = struct.Struct(
    ">BBHBBBB"
)  # Last, RESERVED, Length, Num, Protocol, SPI Size, #Transforms
_AF = 0x8000
_LAST = 0
_MORE_PROPOSALS = 2
_MORE_TRANSFORMS = 3

# Unknown transform types stay plain ints: ``TransformType`` belongs to the crypto table and
# does not take unnamed values.
_TRANSFORM_TYPES = {int(t): t for t in TransformType}
_PROTOCOLS = lookup_table(ProtocolId)


@dataclass(frozen=True, slots=True)
class Attribute:
    """A transform attribute: TV format (AF bit set) when ``value`` is an int, else TLV."""

    KEY_LENGTH: ClassVar[int] = KEY_LENGTH

    type: int
    value: int | bytes

    def to_bytes(self) -> bytes:
        if not 0 <= self.type < _AF:
            raise ValueError(f"attribute type {self.type} does not fit 15 bits")
        if isinstance(self.value, int):
            return _ATTR.pack(self.type | _AF, self.value)
        return _ATTR.pack(self.type, len(self.value)) + self.value


def _decode_attributes(data: bytes, off: int, end: int) -> tuple[Attribute, ...]:
    attrs = []
    while off < end:
        if end - off < _ATTR.size:
            raise InvalidLength("transform attribute header cut short")
        atype, val = _ATTR.unpack_from(data, off)
        off += _ATTR.size
        if atype & _AF:
            attrs.append(Attribute(atype & ~_AF, val))
        else:
            if off + val > end:
                raise InvalidLength(f"transform attribute length {val} overruns its transform")
            attrs.append(Attribute(atype, data[off : off + val]))
            off += val
    return tuple(attrs)


@dataclass(frozen=True, slots=True)
class Transform:
    type: TransformType | int
    id: int
    attributes: tuple[Attribute, ...] = ()

    @property
    def key_length(self) -> int | None:
        """The Key Length attribute in bits, or None when there is none."""
        for a in self.attributes:
            if a.type == KEY_LENGTH and isinstance(a.value, int):
                return a.value
        return None

    def to_bytes(self, last: bool) -> bytes:
        attrs = b"".join(a.to_bytes() for a in self.attributes)
        return (
            _TRANSFORM.pack(
                _LAST if last else _MORE_TRANSFORMS,
                0,
                _TRANSFORM.size + len(attrs),
                self.type,
                0,
                self.id,
            )
            + attrs
        )


def _decode_transforms(data: bytes, off: int, end: int, count: int) -> tuple[Transform, ...]:
    transforms = []
    for i in range(count):
        if end - off < _TRANSFORM.size:
            raise InvalidLength("transform substructure cut short")
        last, _, tlen, ttype, _, tid = _TRANSFORM.unpack_from(data, off)
        if tlen < _TRANSFORM.size or off + tlen > end:
            raise InvalidLength(f"transform length {tlen} invalid in its proposal")
        expected = _LAST if i == count - 1 else _MORE_TRANSFORMS
        if last != expected:
            raise InvalidSyntax(f"transform {i + 1}/{count}: last-substructure {last}")
        attrs = _decode_attributes(data, off + _TRANSFORM.size, off + tlen) if tlen > 8 else ()
        transforms.append(Transform(_TRANSFORM_TYPES.get(ttype, ttype), tid, attrs))
        off += tlen
    if off != end:
        raise InvalidLength(f"{end - off} bytes after the last transform of a proposal")
    return tuple(transforms)


@dataclass(frozen=True, slots=True)
class Proposal:
    number: int
    protocol: ProtocolId
    spi: bytes
    transforms: tuple[Transform, ...]

    def to_bytes(self, last: bool) -> bytes:
        if len(self.transforms) > 255 or len(self.spi) > 255:
            raise ValueError("too many transforms or SPI too long for one proposal")
        parts = [t.to_bytes(i == len(self.transforms) - 1) for i, t in enumerate(self.transforms)]
        body = self.spi + b"".join(parts)
        head = _PROPOSAL.pack(
            _LAST if last else _MORE_PROPOSALS,
            0,
            _PROPOSAL.size + len(body),
            self.number,
            self.protocol,
            len(self.spi),
            len(self.transforms),
        )
        return head + body


@dataclass(frozen=True, slots=True)
class SecurityAssociation(Payload):
    TYPE: ClassVar[PayloadType] = PayloadType.SA

    proposals: tuple[Proposal, ...]

    def body_bytes(self) -> bytes:
        n = len(self.proposals)
        return b"".join(p.to_bytes(i == n - 1) for i, p in enumerate(self.proposals))

    @classmethod
    def from_body(cls, body: bytes) -> Self:
        proposals = []
        off, end = 0, len(body)
        if end == 0:
            raise InvalidLength("SA payload without proposals")
        while True:
            if end - off < _PROPOSAL.size:
                raise InvalidLength("proposal substructure cut short")
            last, _, plen, num, proto, spi_size, ntrans = _PROPOSAL.unpack_from(body, off)
            if plen < _PROPOSAL.size + spi_size or off + plen > end:
                raise InvalidLength(f"proposal length {plen} invalid in its SA payload")
            spi_off = off + _PROPOSAL.size
            transforms = _decode_transforms(body, spi_off + spi_size, off + plen, ntrans)
            proposals.append(
                Proposal(num, _PROTOCOLS[proto], body[spi_off : spi_off + spi_size], transforms)
            )
            off += plen
            if last == _LAST:
                break
            if last != _MORE_PROPOSALS:
                raise InvalidSyntax(f"proposal last-substructure {last}")
            if off == end:
                raise InvalidSyntax("more proposals announced but the SA payload ends")
        if off != end:
            raise InvalidLength(f"{end - off} bytes after the last proposal")
        return cls(tuple(proposals))
