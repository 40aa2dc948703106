"""The fixed 28-byte IKE header (RFC 7296 section 3.1)."""

from __future__ import annotations

import struct
from dataclasses import dataclass

from ikeagent.wire.errors import InvalidLength, Truncated
from ikeagent.wire.iana import lookup_table
from ikeagent.wire.v2.enums import FLAG_INITIATOR, FLAG_RESPONSE, ExchangeType

HEADER_LEN = 28

# SPIi, SPIr, Next Payload, MjVer|MnVer, Exchange Type, Flags, Message ID, Length
_HEADER = struct.Struct(">QQBBBBII")
_EXCHANGES = lookup_table(ExchangeType)


@dataclass(frozen=True, slots=True)
class Header:
    spi_i: int
    spi_r: int
    next_payload: int
    exchange: ExchangeType
    flags: int
    message_id: int
    length: int
    major: int = 2
    minor: int = 0

    @property
    def is_initiator(self) -> bool:
        """The I(nitiator) flag: set by the original initiator of the IKE SA."""
        return bool(self.flags & FLAG_INITIATOR)

    @property
    def is_response(self) -> bool:
        """The R(esponse) flag."""
        return bool(self.flags & FLAG_RESPONSE)

    def to_bytes(self) -> bytes:
        return pack_header(self, self.next_payload, self.length)

    @classmethod
    def from_bytes(cls, data: bytes) -> Header:
        """Decode the first 28 bytes of ``data``; the Length field must be at least 28."""
        if len(data) < HEADER_LEN:
            raise Truncated(f"IKE header needs {HEADER_LEN} bytes, got {len(data)}")
        spi_i, spi_r, nxt, version, exchange, flags, msgid, length = _HEADER.unpack_from(data)
        if length < HEADER_LEN:
            raise InvalidLength(f"IKE header length field {length} < {HEADER_LEN}")
        return cls(
            spi_i,
            spi_r,
            nxt,
            _EXCHANGES[exchange],
            flags,
            msgid,
            length,
            version >> 4,
            version & 0x0F,
        )


def pack_header(header: Header, next_payload: int, length: int) -> bytes:
    """``header`` encoded with the given Next Payload and Length fields."""
    return _HEADER.pack(
        header.spi_i,
        header.spi_r,
        next_payload,
        (header.major << 4) | header.minor,
        header.exchange,
        header.flags,
        header.message_id,
        length,
    )
