"""Payload chains and whole ISAKMP messages (RFC 2408 sections 3.1, 3.2 and 5.1).

IKEv1 encrypts everything after the header; a decrypted body ends with padding, so the
chain ends at the payload whose Next Payload is 0 and ``trailing_ok`` says whether bytes may
follow it.  ``payload_spans`` gives the offsets the engine hashes (RFC 2409 5.5: HASH(1) is
over the message following the HASH payload, padding excluded).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypeVar

from ikeagent.wire.errors import (
    DecodeError,
    InvalidLength,
    InvalidMajorVersion,
    InvalidSyntax,
    Truncated,
)
from ikeagent.wire.v1.base import GENERIC, GENERIC_LEN, Payload
from ikeagent.wire.v1.enums import NotifyType, PayloadType
from ikeagent.wire.v1.header import HEADER_LEN, ISAKMP_MAJOR_VERSION, Header, pack_header
from ikeagent.wire.v1.payloads import PAYLOAD_REGISTRY, Notification, RawPayload

__all__ = [
    "body_bytes",
    "decode_message",
    "decode_payloads",
    "encode_encrypted",
    "encode_message",
    "encode_payloads",
    "find_notification",
    "notify_for",
    "payload",
    "payload_spans",
    "payloads_of",
    "split_message",
]

P = TypeVar("P", bound=Payload)
_unpack_generic = GENERIC.unpack_from
_registry_get = PAYLOAD_REGISTRY.get
# Proposal and Transform payloads only exist inside an SA payload.
_NESTED_ONLY = frozenset((PayloadType.PROPOSAL, PayloadType.TRANSFORM))


def encode_payloads(payloads: Sequence[Payload]) -> tuple[int, bytes]:
    """(type of the first payload or 0, the chained payloads with their generic headers)."""
    n = len(payloads)
    if n == 0:
        return 0, b""
    parts = [
        p.to_bytes(payloads[i + 1].wire_type() if i < n - 1 else 0) for i, p in enumerate(payloads)
    ]
    return payloads[0].wire_type(), b"".join(parts)


def _walk(first: int, data: bytes, trailing_ok: bool) -> list[tuple[int, int, int, int]]:
    """(type, start, end, next payload) of each payload of the chain in ``data``."""
    out = []
    ptype = first
    off, end = 0, len(data)
    while ptype:
        if ptype in _NESTED_ONLY:
            raise InvalidSyntax(f"payload type {ptype} outside an SA payload")
        if end - off < GENERIC_LEN:
            raise Truncated(f"payload type {ptype}: generic header cut short")
        nxt, _, plen = _unpack_generic(data, off)
        if plen < GENERIC_LEN:
            raise InvalidLength(f"payload type {ptype}: length field {plen}")
        if off + plen > end:
            raise Truncated(f"payload type {ptype}: length {plen} past the end of the data")
        out.append((ptype, off, off + plen, nxt))
        off += plen
        ptype = nxt
    if off != end and not trailing_ok:
        raise InvalidLength(f"{end - off} bytes after the last payload")
    return out


def payload_spans(
    first: int, data: bytes, *, trailing_ok: bool = False
) -> list[tuple[int, int, int]]:
    """(type, start, end) of each payload in ``data``, generic header included; the same
    checks as ``decode_payloads`` on the chain, none on the bodies."""
    return [(t, start, end) for t, start, end, _ in _walk(first, data, trailing_ok)]


def decode_payloads(first: int, data: bytes, *, trailing_ok: bool = False) -> list[Payload]:
    """Walk a payload chain that starts with a payload of type ``first`` and ends with the
    payload whose Next Payload is 0.  Bytes after it are padding when ``trailing_ok`` (a
    decrypted body), else InvalidLength.  Unknown types decode as ``RawPayload``; a Proposal
    or Transform payload outside an SA is InvalidSyntax."""
    if type(data) is not bytes:
        data = bytes(data)
    out: list[Payload] = []
    for ptype, start, end, _ in _walk(first, data, trailing_ok):
        body = data[start + GENERIC_LEN : end]
        cls = _registry_get(ptype)
        out.append(RawPayload(ptype, body) if cls is None else cls.from_body(body))
    return out


def body_bytes(payload: Payload) -> bytes:
    """The payload's body after the 4-byte generic header (SAi_b, IDii_b, Ni_b ...)."""
    return payload.body_bytes()


def encode_message(header: Header, payloads: Sequence[Payload]) -> bytes:
    """A plain (unencrypted) message; the header's Next Payload and Length are set from the
    payloads, its other fields (flags included) are used as they are."""
    first, body = encode_payloads(payloads)
    return pack_header(header, first, HEADER_LEN + len(body)) + body


def encode_encrypted(header: Header, first: int, ciphertext: bytes) -> bytes:
    """A message whose body is ``ciphertext`` (the encrypted, padded payload chain that
    starts with a payload of type ``first``); Length is set, the E flag is the caller's."""
    return pack_header(header, first, HEADER_LEN + len(ciphertext)) + ciphertext


def split_message(data: bytes) -> tuple[Header, bytes]:
    """The header of a whole datagram and the bytes after it (payloads or ciphertext).

    Major version 1 (else InvalidMajorVersion carrying the header) and a Length field equal
    to ``len(data)`` (Truncated when it says more, InvalidLength when less).
    """
    if type(data) is not bytes:
        data = bytes(data)
    header = Header.from_bytes(data)
    if header.major != ISAKMP_MAJOR_VERSION:
        raise InvalidMajorVersion(header.major, header)
    if header.length > len(data):
        raise Truncated(f"ISAKMP header says {header.length} bytes, got {len(data)}")
    if header.length < len(data):
        raise InvalidLength(f"ISAKMP header says {header.length} bytes, got {len(data)}")
    return header, data[HEADER_LEN:]


def decode_message(data: bytes) -> tuple[Header, list[Payload]]:
    """A whole plain message (see ``split_message``); InvalidSyntax if its E flag is set."""
    header, body = split_message(data)
    if header.encrypted:
        raise InvalidSyntax("encrypted message: decrypt the body, then decode_payloads")
    return header, decode_payloads(header.next_payload, body)


def payload(payloads: Sequence[Payload], cls: type[P]) -> P | None:
    """The first payload that is an instance of ``cls``, or None."""
    for p in payloads:
        if isinstance(p, cls):
            return p
    return None


def payloads_of(payloads: Sequence[Payload], cls: type[P]) -> list[P]:
    """All payloads that are instances of ``cls``, in order."""
    return [p for p in payloads if isinstance(p, cls)]


def find_notification(payloads: Sequence[Payload], notify_type: int) -> Notification | None:
    """The first Notification payload of ``notify_type``, or None."""
    for p in payloads:
        if isinstance(p, Notification) and p.notify_type == notify_type:
            return p
    return None


def notify_for(error: DecodeError) -> NotifyType:
    """The IKEv1 notify type that answers a decode error (RFC 2408 3.14.1)."""
    v1_notify = getattr(error, "v1_notify", None)
    if v1_notify is not None:
        return v1_notify
    if isinstance(error, InvalidMajorVersion):
        return NotifyType.INVALID_MAJOR_VERSION
    return NotifyType.PAYLOAD_MALFORMED
