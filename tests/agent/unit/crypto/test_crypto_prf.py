"""prf and prf+ (RFC 7296 2.13) over HMAC: RFC 4231 / RFC 2202 known answers."""

from __future__ import annotations

import pytest

from ikeagent.crypto.prf import prf, prf_plus

SHA1, SHA256, SHA384, SHA512 = 2, 5, 6, 7

# RFC 4231 section 4.2 (Test Case 1), 4.3 (Test Case 2), 4.4 (Test Case 3), 4.7 (Test Case 6).
RFC4231 = [
    (
        SHA256,
        b"\x0b" * 20,
        b"Hi There",
        "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7",
    ),
    (
        SHA384,
        b"\x0b" * 20,
        b"Hi There",
        "afd03944d84895626b0825f4ab46907f15f9dadbe4101ec682aa034c7cebc59c"
        "faea9ea9076ede7f4af152e8b2fa9cb6",
    ),
    (
        SHA512,
        b"\x0b" * 20,
        b"Hi There",
        "87aa7cdea5ef619d4ff0b4241a1d6cb02379f4e2ce4ec2787ad0b30545e17cde"
        "daa833b7d6b8a702038b274eaea3f4e4be9d914eeb61f1702e696c203a126854",
    ),
    (
        SHA256,
        b"Jefe",
        b"what do ya want for nothing?",
        "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843",
    ),
    (
        SHA384,
        b"Jefe",
        b"what do ya want for nothing?",
        "af45d2e376484031617f78d2b58a6b1b9c7ef464f5a01b47e42ec3736322445e"
        "8e2240ca5e69e2c78b3239ecfab21649",
    ),
    (
        SHA256,
        b"\xaa" * 20,
        b"\xdd" * 50,
        "773ea91e36800e46854db8ebd09181a72959098b3ef8c122d9635514ced565fe",
    ),
    (
        SHA256,
        b"\xaa" * 131,
        b"Test Using Larger Than Block-Size Key - Hash Key First",
        "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54",
    ),
    # RFC 2202 section 3, test case 1 (HMAC-SHA-1).
    (SHA1, b"\x0b" * 20, b"Hi There", "b617318655057264e28bc0b6fb378c8ef146be00"),
]


@pytest.mark.parametrize(("prf_id", "key", "data", "mac"), RFC4231)
def test_prf_known_answers(prf_id: int, key: bytes, data: bytes, mac: str) -> None:
    assert prf(prf_id, key, data) == bytes.fromhex(mac)


def test_prf_plus_is_the_chained_construction() -> None:
    # T1 = prf(K, S | 0x01), T2 = prf(K, T1 | S | 0x02), ... (RFC 7296 2.13)
    key, seed = b"k" * 32, b"seed"
    t1 = prf(SHA256, key, seed + b"\x01")
    t2 = prf(SHA256, key, t1 + seed + b"\x02")
    t3 = prf(SHA256, key, t2 + seed + b"\x03")
    assert prf_plus(SHA256, key, seed, 70) == (t1 + t2 + t3)[:70]
    assert prf_plus(SHA256, key, seed, 32) == t1
    assert prf_plus(SHA256, key, seed, 0) == b""


def test_prf_plus_is_limited_to_255_iterations() -> None:
    assert len(prf_plus(SHA1, b"k", b"s", 255 * 20)) == 255 * 20
    with pytest.raises(ValueError):
        prf_plus(SHA1, b"k", b"s", 255 * 20 + 1)


def test_unknown_prf_raises_key_error() -> None:
    with pytest.raises(KeyError):
        prf(1, b"k", b"d")  # PRF_HMAC_MD5 is not supported
