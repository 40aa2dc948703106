"""Payload chains and whole IKEv2 messages (RFC 7296 sections 2.5, 3.1, 3.2, 3.14)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TypeVar

from ikeagent.wire.errors import (
    InvalidLength,
    InvalidMajorVersion,
    Truncated,
    UnsupportedCriticalPayload,
)
from ikeagent.wire.v2.base import CRITICAL, GENERIC, GENERIC_LEN, Payload
from ikeagent.wire.v2.enums import NotifyType
from ikeagent.wire.v2.header import HEADER_LEN, Header, pack_header
from ikeagent.wire.v2.payloads import (
    PAYLOAD_REGISTRY,
    Notify,
    UnknownPayload,
    sk_header,
    skf_header,
)

__all__ = [
    "Message",
    "decode_payloads",
    "encode_payloads",
    "find_notify",
    "payload",
    "payloads_of",
    "sk_header",
    "skf_header",
]

IKE_MAJOR_VERSION = 2
P = TypeVar("P", bound=Payload)
_unpack_generic = GENERIC.unpack_from
_registry_get = PAYLOAD_REGISTRY.get


def encode_payloads(payloads: Sequence[Payload]) -> tuple[int, bytes]:
    """(type of the first payload or 0, the chained payloads with their generic headers).

    SK and SKF payloads must be last: their generic Next Payload is their own
    ``next_payload`` (the first inner payload), not a following payload.
    """
    n = len(payloads)
    if n == 0:
        return 0, b""
    parts = []
    for i, p in enumerate(payloads):
        if i == n - 1:
            parts.append(p.to_bytes(0))
        elif p.LAST:
            raise ValueError(f"{type(p).__name__} must be the last payload")
        else:
            parts.append(p.to_bytes(payloads[i + 1].wire_type()))
    return payloads[0].wire_type(), b"".join(parts)


def decode_payloads(first_type: int, data: bytes) -> list[Payload]:
    """Walk a payload chain starting with a payload of type ``first_type``.

    Unknown payload types are kept as ``UnknownPayload`` unless their critical bit is set
    (UnsupportedCriticalPayload).  An SK or SKF payload ends the chain and must end ``data``;
    so must the payload whose Next Payload is 0.
    """
    if type(data) is not bytes:
        data = bytes(data)
    out: list[Payload] = []
    ptype = first_type
    off, end = 0, len(data)
    while ptype:
        if end - off < GENERIC_LEN:
            raise Truncated(f"payload type {ptype}: generic header cut short")
        nxt, flags, plen = _unpack_generic(data, off)
        if plen < GENERIC_LEN:
            raise InvalidLength(f"payload type {ptype}: length field {plen}")
        if off + plen > end:
            raise Truncated(f"payload type {ptype}: length {plen} past the end of the message")
        body = data[off + GENERIC_LEN : off + plen]
        off += plen
        cls = _registry_get(ptype)
        if cls is None:
            if flags & CRITICAL:
                raise UnsupportedCriticalPayload(ptype)
            out.append(UnknownPayload(ptype, False, body))
        elif cls.LAST:
            out.append(cls.from_body(body, nxt))  # type: ignore[call-arg]
            if off != end:
                raise InvalidLength(f"{end - off} bytes after the {cls.TYPE.name} payload")
            return out
        else:
            out.append(cls.from_body(body))
        ptype = nxt
    if off != end:
        raise InvalidLength(f"{end - off} bytes after the last payload")
    return out


@dataclass(frozen=True, slots=True)
class Message:
    """An IKE header and its (outer) payloads.  Encrypted payloads stay an SK/SKF payload;
    the engine decrypts them and decodes the inner chain with ``decode_payloads``."""

    header: Header
    payloads: tuple[Payload, ...]

    def to_bytes(self) -> bytes:
        """Encode, setting the header's Next Payload and Length fields from the payloads."""
        first, body = encode_payloads(self.payloads)
        return pack_header(self.header, first, HEADER_LEN + len(body)) + body

    @classmethod
    def from_bytes(cls, data: bytes) -> Message:
        """Decode a whole message: major version 2 (else InvalidMajorVersion, carrying the
        header), the header's Length equal to ``len(data)``, then the payload chain."""
        if type(data) is not bytes:
            data = bytes(data)
        header = Header.from_bytes(data)
        if header.major != IKE_MAJOR_VERSION:
            raise InvalidMajorVersion(header.major, header)
        if header.length > len(data):
            raise Truncated(f"IKE header says {header.length} bytes, got {len(data)}")
        if header.length < len(data):
            raise InvalidLength(f"IKE header says {header.length} bytes, got {len(data)}")
        return cls(header, tuple(decode_payloads(header.next_payload, data[HEADER_LEN:])))


def _items(msg_or_list: Message | Sequence[Payload]) -> Sequence[Payload]:
    return msg_or_list.payloads if isinstance(msg_or_list, Message) else msg_or_list


def payload(msg_or_list: Message | Sequence[Payload], cls: type[P]) -> P | None:
    """The first payload that is an instance of ``cls``, or None."""
    for p in _items(msg_or_list):
        if isinstance(p, cls):
            return p
    return None


def payloads_of(msg_or_list: Message | Sequence[Payload], cls: type[P]) -> list[P]:
    """All payloads that are instances of ``cls``, in order."""
    return [p for p in _items(msg_or_list) if isinstance(p, cls)]


def find_notify(
    msg_or_list: Message | Sequence[Payload], notify_type: NotifyType | int
) -> Notify | None:
    """The first Notify payload of ``notify_type``, or None."""
    for p in _items(msg_or_list):
        if isinstance(p, Notify) and p.notify_type == notify_type:
            return p
    return None
