"""SK payload protection: RFC 7634 Appendix B, GCM spec vectors, round trips and tampering."""

from __future__ import annotations

import hmac
import random

import pytest
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from ikeagent.crypto.sk import DecryptError, IntegrityError, SkCipher, SkError

ENCR_AES_CBC, GCM8, GCM12, GCM16, CHACHA = 12, 18, 19, 20, 28
SHA1_96, SHA256_128, SHA384_192, SHA512_256 = 2, 12, 13, 14


def h(text: str) -> bytes:
    return bytes.fromhex(text)


# RFC 7634 Appendix B: an IKEv2 INFORMATIONAL message protected with ChaCha20-Poly1305.
# KEYMAT = key | salt; AAD = IKE header (SPIs c0..c7, d0..d7, Message ID 9, length 0x45) plus
# the SK payload header; plaintext = a Notify payload (12 octets) and pad length 0.
RFC7634_KEY = h(
    "80 81 82 83 84 85 86 87 88 89 8a 8b 8c 8d 8e 8f 90 91 92 93 94 95 96 97 98 99 9a 9b 9c 9d 9e 9f"
)
RFC7634_SALT = h("a0 a1 a2 a3")
RFC7634_IV = h("10 11 12 13 14 15 16 17")
RFC7634_AAD = h(
    "c0 c1 c2 c3 c4 c5 c6 c7 d0 d1 d2 d3 d4 d5 d6 d7 2e 20 25 00 00 00 00 09 00 00 00 45 29 00 00 29"
)
RFC7634_PLAIN = h("00 00 00 0c 00 00 40 01 00 00 00 0a")  # followed by pad length 00
RFC7634_CT = h("61 03 94 70 1f 8d 01 7f 7c 12 92 48 89")
RFC7634_TAG = h("6b 71 bf e2 52 36 ef d7 cd c6 70 66 90 63 15 b2")


def test_rfc7634_appendix_b_seal() -> None:
    sk = SkCipher(CHACHA, RFC7634_KEY + RFC7634_SALT, None, b"")
    body = sk.seal(RFC7634_AAD, RFC7634_PLAIN, RFC7634_IV)
    assert body == RFC7634_IV + RFC7634_CT + RFC7634_TAG
    # 28 (IKE header) + 4 (SK header) + body = 0x45, the length in the AAD's IKE header
    assert 28 + 4 + len(body) == 0x45 == 28 + 4 + sk.encrypted_length(len(RFC7634_PLAIN))


def test_rfc7634_appendix_b_open() -> None:
    sk = SkCipher(CHACHA, RFC7634_KEY + RFC7634_SALT, None, b"")
    assert sk.open(RFC7634_AAD, RFC7634_IV + RFC7634_CT + RFC7634_TAG) == RFC7634_PLAIN


# "The Galois/Counter Mode of Operation (GCM)", McGrew and Viega, Appendix B test cases 3, 4 and
# 16 (also NIST's GCM examples). The 96-bit IV cafebabefacedbaddecaf888 is split as RFC 5282/4106
# do: salt cafebabe from the key material, explicit IV facedbaddecaf888 on the wire.
GCM_K128 = h("feffe9928665731c6d6a8f9467308308")
GCM_SALT, GCM_IV = h("cafebabe"), h("facedbaddecaf888")
GCM_P60 = h(
    "d9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a72"
    "1c3c0c95956809532fcf0e2449a6b525b16aedf5aa0de657ba637b39"
)
GCM_A = h("feedfacedeadbeeffeedfacedeadbeefabaddad2")
GCM_TC4_C = h(
    "42831ec2217774244b7221b784d0d49ce3aa212f2c02a4e035c17e2329aca12e"
    "21d514b25466931c7d8f6a5aac84aa051ba30b396a0aac973d58e091"
)
GCM_TC4_T = h("5bc94fbc3221a5db94fae95ae7121a47")
GCM_TC16_C = h(
    "522dc1f099567d07f47f37a32a84427d643a8cdcbfe5c0c97598a2bd2555d1aa"
    "8cb08e48590dbb3da7b08b1056828838c5f61e6393ba7a0abcc9f662"
)
GCM_TC16_T = h("76fc6ece0f4e1768cddf8853bb2d551b")
GCM_TC3_C = h(
    "42831ec2217774244b7221b784d0d49ce3aa212f2c02a4e035c17e2329aca12e"
    "21d514b25466931c7d8f6a5aac84aa051ba30b396a0aac973d58e091473f5985"
)
GCM_TC3_T = h("4d5c2af327cd64a62cf35abd2ba6fab4")


@pytest.mark.parametrize(
    ("key", "ct", "tag"),
    [(GCM_K128, GCM_TC4_C, GCM_TC4_T), (GCM_K128 * 2, GCM_TC16_C, GCM_TC16_T)],
    ids=["test-case-4", "test-case-16"],
)
def test_gcm_spec_vectors_open(key: bytes, ct: bytes, tag: bytes) -> None:
    sk = SkCipher(GCM16, key + GCM_SALT, None, b"")
    # The decrypted 60 octets end in 0x39: read as SK data, that is a pad length of 57.
    assert sk.open(GCM_A, GCM_IV + ct + tag) == GCM_P60[: 60 - 1 - 0x39]
    with pytest.raises(IntegrityError):
        sk.open(GCM_A[:-1], GCM_IV + ct + tag)


@pytest.mark.parametrize("icv", [(GCM12, 12), (GCM8, 8)])
def test_gcm_truncated_tags_are_prefixes_of_the_spec_tag(icv: tuple[int, int]) -> None:
    encr_id, n = icv
    sk = SkCipher(encr_id, GCM_K128 + GCM_SALT, None, b"")
    assert sk.open(GCM_A, GCM_IV + GCM_TC4_C + GCM_TC4_T[:n]) == GCM_P60[:2]
    with pytest.raises(IntegrityError):
        sk.open(GCM_A, GCM_IV + GCM_TC4_C + GCM_TC4_T[: n - 1] + bytes([GCM_TC4_T[n - 1] ^ 1]))


def test_gcm_test_case_3_authentic_but_bad_pad_length_is_decrypt_error() -> None:
    # Test case 3 (no AAD, 64 octets) ends in 0x55: pad length 85 > 63 octets available.
    sk = SkCipher(GCM16, GCM_K128 + GCM_SALT, None, b"")
    with pytest.raises(DecryptError):
        sk.open(b"", GCM_IV + GCM_TC3_C + GCM_TC3_T)


def test_gcm_seal_keystream_matches_the_spec() -> None:
    sk = SkCipher(GCM16, GCM_K128 + GCM_SALT, None, b"")
    body = sk.seal(GCM_A, GCM_P60[:59], GCM_IV)  # 59 octets + pad length 00
    assert body[8 : 8 + 59] == GCM_TC4_C[:59]
    assert len(body) == 8 + 60 + 16


# --- all suites: round trips, lengths, tampering ------------------------------------------------

SUITES = [
    (ENCR_AES_CBC, 16, SHA1_96, 20),
    (ENCR_AES_CBC, 24, SHA256_128, 32),
    (ENCR_AES_CBC, 32, SHA384_192, 48),
    (ENCR_AES_CBC, 32, SHA512_256, 64),
    (GCM16, 16 + 4, None, 0),
    (GCM16, 32 + 4, None, 0),
    (GCM12, 24 + 4, None, 0),
    (GCM8, 16 + 4, None, 0),
    (CHACHA, 32 + 4, None, 0),
]


def make(suite: tuple, seed: int = 0) -> SkCipher:
    encr_id, ek, integ_id, ik = suite
    rng = random.Random(seed)
    return SkCipher(encr_id, rng.randbytes(ek), integ_id, rng.randbytes(ik))


@pytest.mark.parametrize("suite", SUITES)
@pytest.mark.parametrize("n", [0, 1, 14, 15, 16, 17, 100, 1400])
def test_round_trip_and_encrypted_length(suite: tuple, n: int) -> None:
    sk = make(suite)
    rng = random.Random(n)
    aad, plain, iv = rng.randbytes(32), rng.randbytes(n), rng.randbytes(sk.iv_len)
    body = sk.seal(aad, plain, iv)
    assert len(body) == sk.encrypted_length(n)
    assert body[: sk.iv_len] == iv
    assert sk.open(aad, body) == plain
    if suite[0] == ENCR_AES_CBC:
        assert (len(body) - sk.iv_len - sk.icv_len) % 16 == 0
    else:
        assert len(body) == sk.iv_len + n + 1 + sk.icv_len  # RFC 5282: no padding needed


@pytest.mark.parametrize("suite", SUITES)
def test_every_flipped_bit_in_body_or_aad_is_an_integrity_error(suite: tuple) -> None:
    sk = make(suite)
    aad, plain = b"A" * 32, b"payload data, 29 octets long!"
    body = sk.seal(aad, plain, b"\x07" * sk.iv_len)
    for i in range(len(body) * 8):
        bad = bytearray(body)
        bad[i // 8] ^= 1 << (i % 8)
        with pytest.raises(IntegrityError):
            sk.open(aad, bytes(bad))
    for i in range(len(aad) * 8):
        bad = bytearray(aad)
        bad[i // 8] ^= 1 << (i % 8)
        with pytest.raises(IntegrityError):
            sk.open(bytes(bad), body)


@pytest.mark.parametrize("suite", SUITES)
def test_truncated_and_extended_bodies_raise_only_sk_errors(suite: tuple) -> None:
    sk = make(suite)
    body = sk.seal(b"hdr", b"x" * 40, b"\x01" * sk.iv_len)
    for cut in range(len(body)):
        with pytest.raises(SkError):
            sk.open(b"hdr", body[:cut])
    with pytest.raises(SkError):
        sk.open(b"hdr", body + b"\x00")


@pytest.mark.parametrize("suite", SUITES)
def test_random_garbage_raises_only_sk_errors(suite: tuple) -> None:
    sk = make(suite)
    rng = random.Random(99)
    for _ in range(300):
        with pytest.raises(SkError):
            sk.open(rng.randbytes(rng.randrange(0, 40)), rng.randbytes(rng.randrange(0, 120)))


def test_wrong_key_is_an_integrity_error() -> None:
    a, b = make(SUITES[5], 1), make(SUITES[5], 2)
    with pytest.raises(IntegrityError):
        b.open(b"x", a.seal(b"x", b"hello", b"\x00" * 8))


def test_cbc_layout_padding_and_icv() -> None:
    # RFC 7296 3.14: ciphertext of plaintext | padding | pad length; ICV over header..ciphertext
    ek, ik = b"\x11" * 16, b"\x22" * 32
    sk = SkCipher(ENCR_AES_CBC, ek, SHA256_128, ik)
    aad, iv, plain = b"H" * 32, b"\x33" * 16, b"twenty octets here.."
    body = sk.seal(aad, plain, iv)
    ct, icv = body[16:-16], body[-16:]
    assert icv == hmac.digest(ik, aad + iv + ct, "sha256")[:16]
    dec = Cipher(algorithms.AES(ek), modes.CBC(iv)).decryptor()
    data = dec.update(ct) + dec.finalize()
    assert len(data) == 32 and data[:20] == plain and data[-1] == 11


def test_cbc_bad_padding_after_valid_icv_is_decrypt_error() -> None:
    ek, ik = b"\x11" * 16, b"\x22" * 20
    iv = b"\x44" * 16
    enc = Cipher(algorithms.AES(ek), modes.CBC(iv)).encryptor()
    ct = enc.update(b"\x00" * 15 + b"\x20") + enc.finalize()  # pad length 32 > 15
    body = iv + ct + hmac.digest(ik, b"aad" + iv + ct, "sha1")[:12]
    with pytest.raises(DecryptError):
        SkCipher(ENCR_AES_CBC, ek, SHA1_96, ik).open(b"aad", body)


def test_cbc_misaligned_but_authentic_ciphertext_is_decrypt_error() -> None:
    ek, ik = b"\x11" * 16, b"\x22" * 20
    body_wo_icv = b"\x44" * 16 + b"\x55" * 20
    body = body_wo_icv + hmac.digest(ik, b"aad" + body_wo_icv, "sha1")[:12]
    with pytest.raises(DecryptError):
        SkCipher(ENCR_AES_CBC, ek, SHA1_96, ik).open(b"aad", body)


def test_constructor_checks() -> None:
    with pytest.raises(ValueError):
        SkCipher(ENCR_AES_CBC, b"k" * 16, None, b"")  # classic cipher needs integrity
    with pytest.raises(ValueError):
        SkCipher(GCM16, b"k" * 36, SHA256_128, b"i" * 32)  # AEAD takes none
    with pytest.raises(ValueError):
        SkCipher(GCM16, b"k" * 33, None, b"")  # 29-octet AES key
    with pytest.raises(ValueError):
        SkCipher(ENCR_AES_CBC, b"k" * 16, SHA256_128, b"i" * 31)
    with pytest.raises(KeyError):
        SkCipher(3, b"k" * 24, SHA1_96, b"i" * 20)  # 3DES is not supported
    sk = make(SUITES[0])
    with pytest.raises(ValueError):
        sk.seal(b"", b"x", b"short")


def test_iv_lengths_and_repr() -> None:
    assert make(SUITES[0]).iv_len == 16
    assert make(SUITES[4]).iv_len == 8
    assert make(SUITES[8]).iv_len == 8
    sk = SkCipher(GCM16, b"\xab" * 36, None, b"")
    assert "abab" not in repr(sk)
