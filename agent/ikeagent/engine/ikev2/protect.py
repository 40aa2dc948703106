"""Protected IKEv2 messages: the SK payload (RFC 7296 3.14) and fragmentation (RFC 7383)."""

from __future__ import annotations

from collections.abc import Sequence

from ikeagent.crypto.sk import SkCipher
from ikeagent.engine.entropy import RandomSource
from ikeagent.engine.ikev2.sa import FragmentBuffer, IkeSa
from ikeagent.wire.v2 import (
    FLAG_INITIATOR,
    FLAG_RESPONSE,
    HEADER_LEN,
    EncryptedAndAuthenticated,
    EncryptedFragment,
    ExchangeType,
    Header,
    Payload,
    PayloadType,
    decode_payloads,
    encode_payloads,
    sk_header,
    skf_header,
)

MAX_FRAGMENTS = 64
FRAGMENT_TIMEOUT = 30.0


class ProtectionError(Exception):
    """A protected message that does not verify or decrypt (dropped, counted)."""


def flags_for(sa: IkeSa, response: bool) -> int:
    return (FLAG_INITIATOR if sa.initiator else 0) | (FLAG_RESPONSE if response else 0)


def encode_plain(
    spi_i: int,
    spi_r: int,
    exchange: ExchangeType,
    flags: int,
    msgid: int,
    payloads: Sequence[Payload],
) -> bytes:
    first, body = encode_payloads(payloads)
    header = Header(spi_i, spi_r, first, exchange, flags, msgid, HEADER_LEN + len(body))
    return header.to_bytes() + body


def _seal(
    sk: SkCipher,
    spi_i: int,
    spi_r: int,
    exchange: ExchangeType,
    flags: int,
    msgid: int,
    inner_first: int,
    plaintext: bytes,
    rng: RandomSource,
    fragment: tuple[int, int] | None,
) -> bytes:
    body_len = sk.encrypted_length(len(plaintext))
    if fragment is None:
        ph = sk_header(inner_first, body_len)
        ptype = PayloadType.SK
    else:
        ph = skf_header(inner_first, fragment[0], fragment[1], body_len)
        ptype = PayloadType.SKF
    header = Header(spi_i, spi_r, ptype, exchange, flags, msgid, HEADER_LEN + len(ph) + body_len)
    aad = header.to_bytes() + ph
    return aad + sk.seal(aad, plaintext, rng.randbytes(sk.iv_len))


def encode_protected(
    sa: IkeSa,
    exchange: ExchangeType,
    msgid: int,
    response: bool,
    payloads: Sequence[Payload],
    rng: RandomSource,
    fragment_size: int,
) -> list[bytes]:
    """One datagram, or several SKF fragments when the peer supports them and it is too big."""
    assert sa.sk_out is not None
    sk = sa.sk_out
    flags = flags_for(sa, response)
    first, inner = encode_payloads(payloads)
    whole = _seal(sk, sa.spi_i, sa.spi_r, exchange, flags, msgid, first, inner, rng, None)
    if not sa.frag_supported or len(whole) <= fragment_size or exchange == ExchangeType.IKE_SA_INIT:
        return [whole]
    # largest plaintext chunk whose fragment fits fragment_size
    overhead = HEADER_LEN + 8
    chunk = max(fragment_size - overhead - sk.encrypted_length(0), 64)
    while chunk > 64 and overhead + sk.encrypted_length(chunk) > fragment_size:
        chunk -= 1
    pieces = [inner[i : i + chunk] for i in range(0, len(inner), chunk)]
    total = len(pieces)
    return [
        _seal(
            sk,
            sa.spi_i,
            sa.spi_r,
            exchange,
            flags,
            msgid,
            first if n == 1 else 0,
            piece,
            rng,
            (n, total),
        )
        for n, piece in enumerate(pieces, start=1)
    ]


def open_protected(
    sa: IkeSa, data: bytes, header: Header, payloads: list[Payload], now: float
) -> list[Payload] | None:
    """The inner payloads of a protected message; None while fragments are still missing.

    Raises ProtectionError when the SK/SKF payload does not verify."""
    if sa.sk_in is None or not payloads:
        raise ProtectionError("no keys for a protected message")
    last = payloads[-1]
    if isinstance(last, EncryptedAndAuthenticated):
        aad = data[: len(data) - len(last.body)]
        try:
            plain = sa.sk_in.open(aad, last.body)
        except ValueError as exc:
            raise ProtectionError(f"SK payload: {exc}") from None
        return list(payloads[:-1]) + decode_payloads(last.next_payload, plain)
    if isinstance(last, EncryptedFragment):
        return _reassemble(sa, data, header, last, now)
    raise ProtectionError("message without an SK payload")


def _reassemble(
    sa: IkeSa, data: bytes, header: Header, frag: EncryptedFragment, now: float
) -> list[Payload] | None:
    assert sa.sk_in is not None
    if not (1 <= frag.fragment_number <= frag.total_fragments <= MAX_FRAGMENTS):
        raise ProtectionError("fragment numbering out of range")
    aad = data[: len(data) - len(frag.body)]
    try:
        plain = sa.sk_in.open(aad, frag.body)
    except ValueError as exc:
        raise ProtectionError(f"SKF payload: {exc}") from None
    key = (header.is_response, header.message_id)
    buf = sa.fragments.get(key)
    if buf is None or buf.total != frag.total_fragments:
        if buf is not None and frag.total_fragments < buf.total:
            return None  # older fragmentation of the same message: ignore
        buf = FragmentBuffer(total=frag.total_fragments, deadline=now + FRAGMENT_TIMEOUT)
        sa.fragments[key] = buf
    if frag.fragment_number == 1:
        buf.first_type = frag.next_payload
    buf.parts[frag.fragment_number] = plain
    if len(buf.parts) < buf.total:
        return None
    del sa.fragments[key]
    inner = b"".join(buf.parts[i] for i in range(1, buf.total + 1))
    return decode_payloads(buf.first_type, inner)


def expire_fragments(sa: IkeSa, now: float) -> None:
    for key in [k for k, b in sa.fragments.items() if b.deadline <= now]:
        del sa.fragments[key]
