"""Byte-at-a-time and seeded random mutation of valid IKEv1 encodings: only DecodeError may
escape the decoders, and what decodes re-encodes to something that decodes the same."""

from __future__ import annotations

import random

import pytest
from v1wire_vectors import INFO_R_U_THERE_PLAIN, MAIN_MODE_1, SA_PHASE1_BODY, VECTORS

from ikeagent.wire.v1 import (
    HEADER_LEN,
    DecodeError,
    ExchangeType,
    Header,
    PayloadType,
    SecurityAssociation,
    decode_message,
    decode_payloads,
    encode_message,
    encode_payloads,
    payload_spans,
)

ROUNDS = 3000
_INTERESTING = (0x00, 0x01, 0x02, 0x03, 0x04, 0x07, 0x08, 0x10, 0x7F, 0x80, 0xFE, 0xFF)

_EVERY_PAYLOAD = encode_message(
    Header(0x1122, 0x3344, 0, ExchangeType.QUICK_MODE, 0, 9, 0),
    [v[3] for v in VECTORS],
)
MESSAGES = {"main_mode_1": MAIN_MODE_1, "every_payload": _EVERY_PAYLOAD}


def _check_message(data: bytes) -> None:
    try:
        header, payloads = decode_message(data)
    except DecodeError:
        return
    again = encode_message(header, payloads)
    assert len(again) == len(data)
    assert decode_message(again) == (header, payloads)


def _check_chain(first: int, data: bytes) -> None:
    try:
        payloads = decode_payloads(first, data, trailing_ok=True)
        spans = payload_spans(first, data, trailing_ok=True)
    except DecodeError:
        with pytest.raises(DecodeError):
            decode_payloads(first, data, trailing_ok=True)
        return
    assert [s[0] for s in spans] == [p.wire_type() for p in payloads]
    _, again = encode_payloads(payloads)
    assert len(again) == (spans[-1][2] if spans else 0)
    assert decode_payloads(first, again) == payloads


@pytest.mark.parametrize("name", sorted(MESSAGES))
def test_byte_at_a_time(name):
    data = MESSAGES[name]
    for i in range(len(data)):
        for value in _INTERESTING:
            buf = bytearray(data)
            buf[i] = value
            _check_message(bytes(buf))


def test_byte_at_a_time_padded_chain():
    for i in range(len(INFO_R_U_THERE_PLAIN)):
        for value in _INTERESTING:
            buf = bytearray(INFO_R_U_THERE_PLAIN)
            buf[i] = value
            _check_chain(PayloadType.HASH, bytes(buf))


def test_byte_at_a_time_sa_body():
    for i in range(len(SA_PHASE1_BODY)):
        for value in _INTERESTING:
            buf = bytearray(SA_PHASE1_BODY)
            buf[i] = value
            try:
                sa = SecurityAssociation.from_body(bytes(buf))
            except DecodeError:
                continue
            assert SecurityAssociation.from_body(sa.body_bytes()) == sa


def _mutate(rng: random.Random, data: bytes) -> bytes:
    buf = bytearray(data)
    kind = rng.randrange(5)
    if kind == 0:  # overwrite a few bytes
        for _ in range(rng.randint(1, 4)):
            buf[rng.randrange(len(buf))] = rng.randrange(256)
    elif kind == 1:  # insert bytes
        i = rng.randrange(len(buf) + 1)
        buf[i:i] = rng.randbytes(rng.randint(1, 8))
    elif kind == 2:  # delete bytes
        i = rng.randrange(len(buf))
        del buf[i : i + rng.randint(1, 8)]
    elif kind == 3:  # truncate
        del buf[rng.randrange(len(buf)) :]
    else:  # a small value into a 16-bit field at a random offset (lengths live there)
        i = rng.randrange(len(buf) - 1)
        buf[i : i + 2] = rng.randrange(64).to_bytes(2, "big")
    return bytes(buf)


@pytest.mark.parametrize("name", sorted(MESSAGES))
def test_random_mutations(name):
    rng = random.Random(f"v1wire-{name}")
    data = MESSAGES[name]
    for _ in range(ROUNDS):
        mutated = _mutate(rng, data)
        _check_message(mutated)
        _check_chain(data[16], mutated[HEADER_LEN:])


def test_random_garbage_chains():
    rng = random.Random(2408)
    types = [int(t) for t in PayloadType] + [99, 255]
    for _ in range(ROUNDS):
        garbage = rng.randbytes(rng.randint(0, 80))
        _check_chain(rng.choice(types), garbage)
        try:
            SecurityAssociation.from_body(garbage)
        except DecodeError:
            pass
