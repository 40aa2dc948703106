"""prf and prf+ of IKEv2 (RFC 7296 section 2.13), over the HMAC PRFs of the suite table."""

from __future__ import annotations

import hmac

from ikeagent.crypto.suites import prf_info

MAX_ITERATIONS = (
    255  # "prf+ in this document is not defined beyond 255 times the size of the prf output"
)


def prf(prf_id: int, key: bytes, data: bytes) -> bytes:
    """prf(K, S): HMAC with the PRF's hash (RFC 2104 / RFC 4868)."""
    return hmac.digest(key, data, prf_info(prf_id).hash_name)


def prf_plus(prf_id: int, key: bytes, seed: bytes, length: int) -> bytes:
    """prf+(K, S) = T1 | T2 | ... with Tn = prf(K, Tn-1 | S | n), cut to ``length`` octets."""
    info = prf_info(prf_id)
    rounds = -(-length // info.out_len)
    if length < 0 or rounds > MAX_ITERATIONS:
        raise ValueError(f"prf+ cannot produce {length} octets with {info.name}")
    base = hmac.new(key, digestmod=info.hash_name)
    out = bytearray()
    t = b""
    for n in range(1, rounds + 1):
        h = base.copy()
        h.update(t + seed + bytes((n,)))
        t = h.digest()
        out += t
    return bytes(out[:length])
