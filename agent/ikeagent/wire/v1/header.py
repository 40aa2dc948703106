"""The fixed 28-byte ISAKMP header (RFC 2408 section 3.1)."""

from __future__ import annotations

import struct
from dataclasses import dataclass

from ikeagent.wire.errors import InvalidLength, Truncated
from ikeagent.wire.iana import lookup_table
from ikeagent.wire.v1.enums import FLAG_AUTH_ONLY, FLAG_COMMIT, FLAG_ENCRYPTION, ExchangeType

HEADER_LEN = 28
ISAKMP_MAJOR_VERSION = 1

# Initiator Cookie, Responder Cookie, Next Payload, MjVer|MnVer, Exchange Type, Flags,
# Message ID, Length
_HEADER = struct.Struct(">QQBBBBII")
_EXCHANGES = lookup_table(ExchangeType)


@dataclass(frozen=True, slots=True)
class Header:
    """``spi_i``/``spi_r`` are the cookies CKY-I/CKY-R as unsigned 64-bit ints."""

    spi_i: int
    spi_r: int
    next_payload: int
    exchange: ExchangeType
    flags: int
    message_id: int
    length: int
    major: int = 1
    minor: int = 0

    @property
    def encrypted(self) -> bool:
        """The E(ncryption) flag: everything after the header is encrypted."""
        return bool(self.flags & FLAG_ENCRYPTION)

    @property
    def commit(self) -> bool:
        """The C(ommit) flag (RFC 2408 3.1, RFC 2409 5.5)."""
        return bool(self.flags & FLAG_COMMIT)

    @property
    def auth_only(self) -> bool:
        """The A(uthentication Only) flag."""
        return bool(self.flags & FLAG_AUTH_ONLY)

    @property
    def cky_i(self) -> bytes:
        """The initiator cookie as its 8 wire bytes."""
        return self.spi_i.to_bytes(8, "big")

    @property
    def cky_r(self) -> bytes:
        """The responder cookie as its 8 wire bytes."""
        return self.spi_r.to_bytes(8, "big")

    def to_bytes(self) -> bytes:
        return pack_header(self, self.next_payload, self.length)

    @classmethod
    def from_bytes(cls, data: bytes) -> Header:
        """Decode the first 28 bytes of ``data``; the Length field must be at least 28.
        The version is not checked here (see ``split_message``)."""
        if len(data) < HEADER_LEN:
            raise Truncated(f"ISAKMP header needs {HEADER_LEN} bytes, got {len(data)}")
        spi_i, spi_r, nxt, version, exchange, flags, msgid, length = _HEADER.unpack_from(data)
        if length < HEADER_LEN:
            raise InvalidLength(f"ISAKMP header length field {length} < {HEADER_LEN}")
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
