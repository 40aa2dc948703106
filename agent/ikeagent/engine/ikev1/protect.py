"""IKEv1 messages on the wire: plain and encrypted (RFC 2408 3.1, RFC 2409 appendix B IVs)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from ikeagent.crypto.v1.keymat import phase2_iv
from ikeagent.engine.ikev1.sa import Exchange, V1Sa
from ikeagent.wire import v1 as w1
from ikeagent.wire.errors import DecodeError


class ProtectionError(ValueError):
    """An encrypted message that cannot be decrypted or decoded (wrong keys, garbage)."""


@dataclass(frozen=True, slots=True)
class Opened:
    payloads: list[w1.Payload]
    plain: bytes  # the decrypted (or plain) payload chain, padding included
    spans: list[tuple[int, int, int]]
    next_iv: bytes | None  # the last ciphertext block (None for a plain message)


def build(
    sa: V1Sa,
    exchange: int,
    message_id: int,
    payloads: Sequence[w1.Payload],
    *,
    iv: bytes | None = None,
) -> tuple[bytes, bytes | None]:
    """The message, encrypted with ``iv`` when given; and the IV that follows it."""
    first, body = w1.encode_payloads(payloads)
    flags = 0
    next_iv = None
    if iv is not None:
        assert sa.cipher is not None
        body = sa.cipher.encrypt(iv, body)
        next_iv = body[-sa.cipher.block_size :]
        flags = w1.FLAG_ENCRYPTION
    header = w1.Header(
        spi_i=sa.spi_i,
        spi_r=sa.spi_r,
        next_payload=first,
        exchange=w1.ExchangeType(exchange),
        flags=flags,
        message_id=message_id,
        length=w1.HEADER_LEN + len(body),
    )
    return header.to_bytes() + body, next_iv


def open_message(sa: V1Sa, header: w1.Header, data: bytes, iv: bytes | None) -> Opened:
    """Decode (and decrypt with ``iv`` when the E flag is set) a received message."""
    body = data[w1.HEADER_LEN : header.length]
    if header.encrypted:
        if sa.cipher is None or iv is None:
            raise ProtectionError("encrypted message before keys exist")
        bs = sa.cipher.block_size
        if not body or len(body) % bs:
            raise ProtectionError(f"encrypted body of {len(body)} bytes is not whole blocks")
        try:
            plain = sa.cipher.decrypt(iv, body)
        except ValueError as exc:
            raise ProtectionError(f"cannot decrypt: {exc}") from None
        next_iv: bytes | None = body[-bs:]
        trailing = True
    else:
        plain = body
        next_iv = None
        trailing = False
    try:
        spans = w1.payload_spans(header.next_payload, plain, trailing_ok=trailing)
        payloads = w1.decode_payloads(header.next_payload, plain, trailing_ok=trailing)
    except DecodeError as exc:
        raise ProtectionError(f"malformed payloads: {exc}") from None
    return Opened(payloads, plain, spans, next_iv)


def exchange_iv(sa: V1Sa, ex: Exchange) -> bytes:
    """The current IV of a Phase 2 / Informational exchange (RFC 2409 appendix B)."""
    if not ex.iv:
        assert sa.cipher is not None
        ex.iv = phase2_iv(sa.hash_id, sa.p1_last_block, ex.message_id, sa.cipher.block_size)
    return ex.iv


def after_hash(opened: Opened) -> bytes:
    """The message that follows its first (HASH) payload, without padding (RFC 2409 5.5)."""
    if not opened.spans:
        return b""
    first_end = opened.spans[0][2]
    last_end = opened.spans[-1][2]
    return opened.plain[first_end:last_end]
