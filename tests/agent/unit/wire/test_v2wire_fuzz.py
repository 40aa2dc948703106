"""Seeded random mutation of valid messages: only DecodeError may escape the decoder, and what
decodes must re-encode to something that decodes to the same message."""

from __future__ import annotations

import random

import pytest
from v2wire_vectors import IKE_SA_INIT, VECTORS

from ikeagent.wire.v2 import (
    FLAG_INITIATOR,
    HEADER_LEN,
    DecodeError,
    EncryptedAndAuthenticated,
    EncryptedFragment,
    ExchangeType,
    Header,
    Message,
    PayloadType,
)

ROUNDS = 3000


def _message(payloads) -> bytes:
    return Message(
        Header(0x1122, 0x3344, 0, ExchangeType.IKE_AUTH, FLAG_INITIATOR, 1, 0), payloads
    ).to_bytes()


BASES = {
    "ike_sa_init": IKE_SA_INIT,
    "every_payload_then_sk": _message(
        tuple(v[3] for v in VECTORS if not v[3].LAST)
        + (EncryptedAndAuthenticated(PayloadType.IDi, bytes(range(40))),)
    ),
    "skf": _message((EncryptedFragment(PayloadType.IDi, 1, 2, bytes(range(24))),)),
}


def _mutate(rng: random.Random, data: bytes) -> bytes:
    buf = bytearray(data)
    kind = rng.randrange(6)
    if kind == 0:  # overwrite a few bytes
        for _ in range(rng.randint(1, 4)):
            buf[rng.randrange(len(buf))] = rng.randrange(256)
    elif kind == 1:  # flip one bit
        i = rng.randrange(len(buf))
        buf[i] ^= 1 << rng.randrange(8)
    elif kind == 2:  # insert bytes
        i = rng.randrange(len(buf) + 1)
        buf[i:i] = rng.randbytes(rng.randint(1, 8))
    elif kind == 3:  # delete bytes
        i = rng.randrange(len(buf))
        del buf[i : i + rng.randint(1, 8)]
    elif kind == 4:  # truncate
        del buf[rng.randrange(len(buf)) :]
    else:  # a small value into a 16-bit field at a random offset (lengths live there)
        i = rng.randrange(len(buf) - 1)
        buf[i : i + 2] = rng.choice([0, 1, 3, 4, 5, 8, 0xFFFF, len(buf)]).to_bytes(2, "big")
    if rng.random() < 0.7 and len(buf) >= HEADER_LEN:
        buf[24:28] = len(buf).to_bytes(4, "big")  # keep the header consistent: go deeper
    return bytes(buf)


@pytest.mark.parametrize("name", sorted(BASES))
def test_mutations_only_raise_decode_error(name):
    base = BASES[name]
    assert Message.from_bytes(base).to_bytes() == base
    rng = random.Random(f"ikev2-wire-{name}")
    decoded = rejected = 0
    for _ in range(ROUNDS):
        data = _mutate(rng, base)
        try:
            msg = Message.from_bytes(data)
        except DecodeError:
            rejected += 1
            continue
        decoded += 1
        again = msg.to_bytes()
        assert len(again) == msg.header.__class__.from_bytes(again).length
        assert Message.from_bytes(again) == msg
    # both paths were exercised, so the test could have failed either way
    assert decoded > 50 and rejected > 50


@pytest.mark.parametrize("name", sorted(BASES))
def test_random_garbage_after_header(name):
    base = BASES[name]
    rng = random.Random(f"garbage-{name}")
    for _ in range(1000):
        tail = rng.randbytes(rng.randrange(64))
        data = bytearray(base[:HEADER_LEN] + tail)
        data[16] = rng.choice([0, 33, 34, 35, 40, 41, 44, 46, 47, 53, rng.randrange(256)])
        data[24:28] = len(data).to_bytes(4, "big")
        try:
            Message.from_bytes(bytes(data))
        except DecodeError:
            pass
