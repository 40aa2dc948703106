"""The ISAKMP Security Association payload and its Proposal and Transform payloads
(RFC 2408 sections 3.4-3.6; data attributes 3.3; IPsec DOI situation RFC 2407 4.2).

Inside an SA payload, after the DOI and Situation, the Proposal payloads form their own chain
(Next Payload 2 = another proposal follows, 0 = last), and inside each proposal the Transform
payloads form another one (3 = another transform follows, 0 = last).  Decoding checks these
markers, the nested lengths and the proposal's transform count against each other.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import ClassVar, Self

from ikeagent.wire.errors import InvalidLength, InvalidSyntax
from ikeagent.wire.iana import lookup_table
from ikeagent.wire.v1.base import Payload, need
from ikeagent.wire.v1.enums import (
    DOI_IPSEC,
    SIT_IDENTITY_ONLY,
    NotifyType,
    PayloadType,
    ProtocolId,
)

_ATTR = struct.Struct(">HH")  # AF|Attribute Type, Attribute Length or Value
_TRANSFORM = struct.Struct(">BBHBBH")  # Next, RESERVED, Length, Transform #, ID, RESERVED2
_PROPOSAL = struct.Struct(">BBHBBBB")  # Next, RESERVED, Length, Proposal #, Proto, SPI size, #T
_SA_HEAD = struct.Struct(">II")  # DOI, Situation
_AF = 0x8000
_LAST = 0
_MORE_PROPOSALS = int(PayloadType.PROPOSAL)
_MORE_TRANSFORMS = int(PayloadType.TRANSFORM)
_U32 = 1 << 32
_U64 = 1 << 64
_PROTOCOLS = lookup_table(ProtocolId)


class UnsupportedSituation(InvalidSyntax):
    """An IPsec DOI SA whose Situation asks for more than SIT_IDENTITY_ONLY (the secrecy and
    integrity situations carry labels this codec does not parse)."""

    v1_notify = NotifyType.SITUATION_NOT_SUPPORTED


@dataclass(frozen=True, slots=True)
class Attribute:
    """A data attribute (RFC 2408 3.3).

    An int ``value`` below 0x10000 encodes in TV format (AF bit set); a larger int as TLV
    with 4 bytes (8 when it does not fit 32 bits); bytes always as TLV.  Decoding yields an
    int for TV and bytes for TLV, so canonical encodings round-trip byte for byte.
    """

    type: int
    value: int | bytes

    @property
    def int_value(self) -> int:
        """The value as an unsigned int (TLV bytes read big-endian, 1..8 bytes)."""
        value = self.value
        if isinstance(value, int):
            return value
        if not 1 <= len(value) <= 8:
            raise InvalidLength(f"attribute {self.type}: {len(value)}-byte value as an integer")
        return int.from_bytes(value, "big")

    def to_bytes(self) -> bytes:
        if not 0 <= self.type < _AF:
            raise ValueError(f"attribute type {self.type} does not fit 15 bits")
        value = self.value
        if isinstance(value, int):
            if value < 0 or value >= _U64:
                raise ValueError(f"attribute {self.type}: value {value} out of range")
            if value <= 0xFFFF:
                return _ATTR.pack(self.type | _AF, value)
            value = value.to_bytes(4 if value < _U32 else 8, "big")
        if len(value) > 0xFFFF:
            raise ValueError(f"attribute {self.type}: {len(value)}-byte value too long")
        return _ATTR.pack(self.type, len(value)) + bytes(value)


def decode_attributes(data: bytes, off: int = 0, end: int | None = None) -> tuple[Attribute, ...]:
    """The data attributes in ``data[off:end]``; they must fill it exactly."""
    if end is None:
        end = len(data)
    attrs = []
    while off < end:
        if end - off < _ATTR.size:
            raise InvalidLength("data attribute header cut short")
        atype, val = _ATTR.unpack_from(data, off)
        off += _ATTR.size
        if atype & _AF:
            attrs.append(Attribute(atype & ~_AF, val))
        else:
            if off + val > end:
                raise InvalidLength(f"data attribute length {val} overruns its transform")
            attrs.append(Attribute(atype, data[off : off + val]))
            off += val
    return tuple(attrs)


@dataclass(frozen=True, slots=True)
class Transform:
    """A Transform payload (3.6): Transform #, Transform-Id, SA attributes."""

    number: int
    transform_id: int
    attributes: tuple[Attribute, ...] = ()

    def attribute(self, attr_type: int) -> Attribute | None:
        """The first attribute of ``attr_type``, or None."""
        for a in self.attributes:
            if a.type == attr_type:
                return a
        return None

    def to_bytes(self, last: bool) -> bytes:
        attrs = b"".join(a.to_bytes() for a in self.attributes)
        length = _TRANSFORM.size + len(attrs)
        if length > 0xFFFF:
            raise ValueError(f"transform {self.number} too long: {length} bytes")
        head = _TRANSFORM.pack(
            _LAST if last else _MORE_TRANSFORMS, 0, length, self.number, self.transform_id, 0
        )
        return head + attrs


def _decode_transforms(data: bytes, off: int, end: int, count: int) -> tuple[Transform, ...]:
    transforms: list[Transform] = []
    while off < end:
        if end - off < _TRANSFORM.size:
            raise InvalidLength("transform payload cut short")
        nxt, _, tlen, number, tid, _ = _TRANSFORM.unpack_from(data, off)
        if tlen < _TRANSFORM.size or off + tlen > end:
            raise InvalidLength(f"transform length {tlen} invalid in its proposal")
        if nxt not in (_LAST, _MORE_TRANSFORMS):
            raise InvalidSyntax(f"transform next payload {nxt} (3 or 0 expected)")
        transforms.append(Transform(number, tid, decode_attributes(data, off + 8, off + tlen)))
        off += tlen
        if nxt == _LAST:
            break
    else:
        if transforms:
            raise InvalidSyntax("more transforms announced but the proposal ends")
    if off != end:
        raise InvalidLength(f"{end - off} bytes after the last transform of a proposal")
    if len(transforms) != count:
        raise InvalidSyntax(f"proposal announces {count} transforms, carries {len(transforms)}")
    return tuple(transforms)


@dataclass(frozen=True, slots=True)
class Proposal:
    """A Proposal payload (3.5): Proposal #, Protocol-Id, SPI, Transform payloads."""

    number: int
    protocol: int
    spi: bytes
    transforms: tuple[Transform, ...]

    def to_bytes(self, last: bool) -> bytes:
        n = len(self.transforms)
        if n > 255 or len(self.spi) > 255:
            raise ValueError("too many transforms or SPI too long for one proposal")
        body = self.spi + b"".join(t.to_bytes(i == n - 1) for i, t in enumerate(self.transforms))
        length = _PROPOSAL.size + len(body)
        if length > 0xFFFF:
            raise ValueError(f"proposal {self.number} too long: {length} bytes")
        head = _PROPOSAL.pack(
            _LAST if last else _MORE_PROPOSALS,
            0,
            length,
            self.number,
            self.protocol,
            len(self.spi),
            n,
        )
        return head + body


def _decode_proposals(data: bytes, off: int, end: int) -> tuple[Proposal, ...]:
    proposals: list[Proposal] = []
    while True:
        if end - off < _PROPOSAL.size:
            raise InvalidLength("proposal payload cut short")
        nxt, _, plen, number, proto, spi_size, ntrans = _PROPOSAL.unpack_from(data, off)
        if plen < _PROPOSAL.size + spi_size or off + plen > end:
            raise InvalidLength(f"proposal length {plen} invalid in its SA payload")
        if nxt not in (_LAST, _MORE_PROPOSALS):
            raise InvalidSyntax(f"proposal next payload {nxt} (2 or 0 expected)")
        spi_off = off + _PROPOSAL.size
        transforms = _decode_transforms(data, spi_off + spi_size, off + plen, ntrans)
        spi = data[spi_off : spi_off + spi_size]
        proposals.append(Proposal(number, _PROTOCOLS[proto], spi, transforms))
        off += plen
        if nxt == _LAST:
            break
        if off == end:
            raise InvalidSyntax("more proposals announced but the SA payload ends")
    if off != end:
        raise InvalidLength(f"{end - off} bytes after the last proposal")
    return tuple(proposals)


@dataclass(frozen=True, slots=True)
class SecurityAssociation(Payload):
    """SA (3.4): DOI, Situation, Proposal payloads.  ``body_bytes()`` is SAi_b of RFC 2409."""

    TYPE: ClassVar[PayloadType] = PayloadType.SA

    proposals: tuple[Proposal, ...]
    doi: int = DOI_IPSEC
    situation: int = SIT_IDENTITY_ONLY

    def body_bytes(self) -> bytes:
        n = len(self.proposals)
        if n == 0:
            raise ValueError("an SA payload needs at least one proposal")
        return _SA_HEAD.pack(self.doi, self.situation) + b"".join(
            p.to_bytes(i == n - 1) for i, p in enumerate(self.proposals)
        )

    @classmethod
    def from_body(cls, body: bytes) -> Self:
        need(body, _SA_HEAD.size, "SA")
        doi, situation = _SA_HEAD.unpack_from(body)
        if doi == DOI_IPSEC and situation & ~SIT_IDENTITY_ONLY:
            raise UnsupportedSituation(f"IPsec DOI situation {situation:#x}")
        if len(body) == _SA_HEAD.size:
            raise InvalidSyntax("SA payload without proposals")
        return cls(_decode_proposals(body, _SA_HEAD.size, len(body)), doi, situation)
