"""What IKEv1 and IKEv2 payloads share: the 4-byte generic payload header (RFC 2408 3.2,
RFC 7296 3.2: next payload, a reserved byte that IKEv2 uses for the critical bit, length)."""

from __future__ import annotations

import struct
from typing import ClassVar, Self

from ikeagent.wire.errors import InvalidLength

# Next Payload, RESERVED (IKEv2: C|RESERVED), Payload Length
GENERIC = struct.Struct(">BBH")
GENERIC_LEN = 4
MAX_PAYLOAD_LEN = 0xFFFF


class GenericPayload:
    """Base of the payload dataclasses of both versions.

    A subclass is a frozen, slotted dataclass with ``TYPE``, ``body_bytes()`` (the payload body
    after the generic header) and ``from_body(body)``.
    """

    __slots__ = ()

    TYPE: ClassVar[int]

    def body_bytes(self) -> bytes:
        raise NotImplementedError

    @classmethod
    def from_body(cls, body: bytes) -> Self:
        raise NotImplementedError

    def wire_type(self) -> int:
        """The payload type that announces this payload in the chain."""
        return self.TYPE

    def to_bytes(self, next_payload: int = 0) -> bytes:
        """This payload with its generic header."""
        body = self.body_bytes()
        length = GENERIC_LEN + len(body)
        if length > MAX_PAYLOAD_LEN:
            raise ValueError(f"{type(self).__name__} too long: {length} bytes")
        return GENERIC.pack(next_payload, 0, length) + body


def need(body: bytes, size: int, what: str) -> None:
    """Raise InvalidLength unless ``body`` has at least ``size`` bytes."""
    if len(body) < size:
        raise InvalidLength(f"{what} body needs at least {size} bytes, got {len(body)}")
