"""ESP packet transform: known answers, round trips, tampering and malformed input."""

from __future__ import annotations

import random

import pytest

from ikeagent.crypto.esp import (
    EncrId,
    EspAuthError,
    EspCipher,
    EspError,
    EspPadError,
    EspTruncated,
    EspUnsupported,
    IntegId,
    next_header_for,
    parse_header,
)


def unhex(text: str) -> bytes:
    return bytes.fromhex("".join(text.split()))


# RFC 7634 Appendix A ("ESP Example"): tunnel-mode ESP with ChaCha20-Poly1305, an ICMP echo
# request from 198.51.100.5 to 192.0.2.5, SPI 0x01020304, sequence number 5.
RFC7634_KEY = unhex(
    """80 81 82 83 84 85 86 87 88 89 8a 8b 8c 8d 8e 8f
       90 91 92 93 94 95 96 97 98 99 9a 9b 9c 9d 9e 9f"""
)
RFC7634_SALT = unhex("a0 a1 a2 a3")
RFC7634_IV = unhex("10 11 12 13 14 15 16 17")
RFC7634_INNER = unhex(
    """45 00 00 54 a6 f2 00 00 40 01 e7 78 c6 33 64 05
       c0 00 02 05 08 00 5b 7a 3a 08 00 00 55 3b ec 10
       00 07 36 27 08 09 0a 0b 0c 0d 0e 0f 10 11 12 13
       14 15 16 17 18 19 1a 1b 1c 1d 1e 1f 20 21 22 23
       24 25 26 27 28 29 2a 2b 2c 2d 2e 2f 30 31 32 33
       34 35 36 37"""
)
RFC7634_PACKET = unhex(
    """01 02 03 04 00 00 00 05 10 11 12 13 14 15 16 17
       24 03 94 28 b9 7f 41 7e 3c 13 75 3a 4f 05 08 7b
       67 c3 52 e6 a7 fa b1 b9 82 d4 66 ef 40 7a e5 c6
       14 ee 80 99 d5 28 44 eb 61 aa 95 df ab 4c 02 f7
       2a a7 1e 7c 4c 4f 64 c9 be fe 2f ac c6 38 e8 f3
       cb ec 16 3f ac 46 9b 50 27 73 f6 fb 94 e6 64 da
       91 65 b8 28 29 f6 41 e0 76 aa a8 26 6b 7f b0 f7
       b1 1b 36 99 07 e1 ad 43"""
)


def test_rfc7634_appendix_a_seal() -> None:
    cipher = EspCipher(EncrId.ENCR_CHACHA20_POLY1305, RFC7634_KEY + RFC7634_SALT)
    packet = cipher.seal(0x01020304, 5, RFC7634_INNER, 4, iv=RFC7634_IV)
    assert packet == RFC7634_PACKET


def test_rfc7634_appendix_a_open() -> None:
    cipher = EspCipher(EncrId.ENCR_CHACHA20_POLY1305, RFC7634_KEY + RFC7634_SALT)
    assert parse_header(RFC7634_PACKET) == (0x01020304, 5)
    assert cipher.open(RFC7634_PACKET) == (4, RFC7634_INNER)


# draft-mcgrew-gcm-test-01 ("The Galois/Counter Mode of Operation (GCM) test vectors"),
# section 3 test cases in RFC 4106 ESP framing: (test case, key, salt, SPI, 64-bit sequence
# number (ESN when it does not fit in 32 bits), IV, plaintext including the ESP trailer, ESP
# packet). The next header of these vectors is whatever the draft chose (1, 4...), not always 4.
MCGREW_GCM = [
    (
        "test case 2, AES-128, 32-bit sequence",
        "feffe9928665731c6d6a8f9467308308",
        "cafebabe",
        0x0000A5F8,
        0x0A,
        "facedbaddecaf888",
        """4500003e698f000080114dccc0a80102 c0a801010a980035002a2343b2d00100
           00010000000000000373697009637962 65726369747902646b00000100010001""",
        """0000a5f80000000afacedbaddecaf888 deb22cd9b07c72c16e3a65beeb8df304
           a5a5897d33ae530f1ba76d5d114d2a5c 3de81827c10e9a4f51330d0eec416642
           cfbb85a5b47e48a4ec3b9ba95d918bd1 83b70d3aa8bc6ee4c309e9d85a41ad4a""",
    ),
    (
        "test case 1, AES-128, extended sequence number",
        "4c80cdefbb5d10da906ac73c3613a634",
        "2e443b68",
        0x00004321,
        0x8765432100000000,
        "4956ed7e3b244cfe",
        """45000048699a000080114db7c0a80102 c0a801010a9bf15638d3010000010000
           00000000045f736970045f7564700373 69700963796265726369747902646b00
           0021000101020201""",
        """00004321000000004956ed7e3b244cfe fecf537e729d5b07dc30df528dd22b76
           8d1b98736696a6fd348509fa13ceac34 cfa2436f14a3f3cf65925bf1f4a13c5d
           15b21e1884f5ff6247aeabb786b93bce 61bc17d768fd9732459018148f6cbe72
           2fd04796562dfdb4""",
    ),
    (
        "test case 3, AES-256, 32-bit sequence",
        "abbccddef00112233445566778899aababbccddef00112233445566778899aab",
        "11223344",
        0x4A2CBFE3,
        2,
        "0102030405060708",
        """4500003069a6400080062690c0a80102 9389155e0a9e008b2dc57ee000000000
           7002400020bf0000020405b401010402 01020201""",
        """4a2cbfe3000000020102030405060708 ff425c9b724599df7a3bcd510194e00d
           6a78107f1b0b1cbf06efae9d65a5d763 748a637985771d347f0545659f14e99d
           ef842d8eb335f4eecfdbf831824b4c49 15956c96""",
    ),
    (
        "test case 12, AES-256, extended sequence number 2^64-1",
        "6c6567616c697a656d6172696a75616e61616e64646f69746265666f72656961",
        "7475726e",
        0x796B6963,
        0xFFFFFFFFFFFFFFFF,
        "333021696765746d",
        """45000030da3a00008001df3bc0a80005 c0a800010800c6cd0200070061626364
           65666768696a6b6c6d6e6f7071727374 01020201""",
        """796b6963ffffffff333021696765746d f97ab2aa356d8edce17644ac8c78e25d
           d24dedbb29ebf1b64a274b39b49c3a86 4cd3d78ca4ae68a32b42458fb57dbe82
           1dcc63b9d0937ba2945f669368661a32 9fb4c053""",
    ),
]


@pytest.mark.parametrize(
    ("name", "key", "salt", "spi", "seq", "iv", "plaintext", "packet"),
    MCGREW_GCM,
    ids=[v[0] for v in MCGREW_GCM],
)
def test_mcgrew_gcm_esp_vectors(
    name: str, key: str, salt: str, spi: int, seq: int, iv: str, plaintext: str, packet: str
) -> None:
    full = unhex(plaintext)
    next_header, padlen = full[-1], full[-2]
    inner = full[: len(full) - 2 - padlen]
    esn = seq > 0xFFFFFFFF
    cipher = EspCipher(EncrId.ENCR_AES_GCM_16, unhex(key) + unhex(salt), esn=esn)
    assert cipher.seal(spi, seq, inner, next_header, iv=unhex(iv)) == unhex(packet)
    assert cipher.open(unhex(packet), seq_hi=seq >> 32) == (next_header, inner)


def test_gcm_esn_high_bits_are_authenticated() -> None:
    _, key, salt, spi, seq, iv, _, packet = MCGREW_GCM[1]
    cipher = EspCipher(EncrId.ENCR_AES_GCM_16, unhex(key) + unhex(salt), esn=True)
    with pytest.raises(EspAuthError):
        cipher.open(unhex(packet), seq_hi=(seq >> 32) + 1)


CBC_SUITES = [
    (16, IntegId.AUTH_HMAC_SHA1_96, 20, 12),
    (16, IntegId.AUTH_HMAC_SHA2_256_128, 32, 16),
    (24, IntegId.AUTH_HMAC_SHA2_384_192, 48, 24),
    (32, IntegId.AUTH_HMAC_SHA2_512_256, 64, 32),
]

ALL_SUITES = [
    pytest.param((EncrId.ENCR_AES_GCM_16, 16 + 4, None, 0), id="aes128gcm16"),
    pytest.param((EncrId.ENCR_AES_GCM_16, 32 + 4, None, 0), id="aes256gcm16"),
    pytest.param((EncrId.ENCR_CHACHA20_POLY1305, 32 + 4, None, 0), id="chacha20poly1305"),
    *(
        pytest.param((EncrId.ENCR_AES_CBC, k, i, ik), id=f"aes{k * 8}-{i.name}")
        for k, i, ik, _ in CBC_SUITES
    ),
]


def make_pair(suite: tuple, seed: int = 1, esn: bool = False) -> tuple[EspCipher, EspCipher]:
    encr, klen, integ, ilen = suite
    rng = random.Random(seed)
    key = rng.randbytes(klen)
    ikey = rng.randbytes(ilen)
    return (
        EspCipher(encr, key, integ, ikey, esn=esn),
        EspCipher(encr, key, integ, ikey, esn=esn),
    )


@pytest.mark.parametrize("suite", ALL_SUITES)
@pytest.mark.parametrize("esn", [False, True])
def test_round_trip_many_lengths(suite: tuple, esn: bool) -> None:
    sender, receiver = make_pair(suite, esn=esn)
    rng = random.Random(7)
    base = (5 << 32) if esn else 0
    for seq, size in enumerate([0, 1, 2, 3, 14, 15, 16, 17, 40, 1399, 1400, 65000], 1):
        inner = rng.randbytes(size)
        nh = 41 if size % 2 else 4
        packet = sender.seal(0xC0FFEE01, base + seq, inner, nh)
        assert len(packet) == sender.packet_len(size)
        assert (len(packet) - sender.prefix_len - sender.icv_len) % sender.align == 0
        assert parse_header(packet) == (0xC0FFEE01, seq)
        assert receiver.open(packet, seq_hi=base >> 32) == (nh, inner)


def raw_plaintext(suite: tuple, packet: bytes) -> bytes:
    """Decrypt an ESP packet with fresh primitives, trailer included (no checks)."""
    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM, ChaCha20Poly1305

    encr, klen, _, _ = suite
    key = random.Random(1).randbytes(klen)
    if encr == EncrId.ENCR_AES_CBC:
        icv = dict((i, t) for _, i, _, t in CBC_SUITES)[suite[2]]
        body = packet[24 : len(packet) - icv]
        return Cipher(algorithms.AES(key), modes.CBC(packet[8:24])).decryptor().update(body)
    aead = AESGCM if encr == EncrId.ENCR_AES_GCM_16 else ChaCha20Poly1305
    return aead(key[:-4]).decrypt(key[-4:] + packet[8:16], packet[16:], packet[:8])


@pytest.mark.parametrize("suite", ALL_SUITES)
def test_padding_is_minimal_and_monotonic(suite: tuple) -> None:
    """RFC 4303 2.4: padding bytes are 1, 2, 3, ...; we add only what alignment needs."""
    sender, _ = make_pair(suite)
    for size in range(0, 40):
        inner = bytes([0xEE]) * size
        plain = raw_plaintext(suite, sender.seal(1, size + 1, inner, 41))
        padlen = (-(size + 2)) % sender.align
        assert plain == inner + bytes(range(1, padlen + 1)) + bytes([padlen, 41])


@pytest.mark.parametrize("suite", ALL_SUITES)
def test_cbc_chain_state_does_not_leak_between_packets(suite: tuple) -> None:
    """Packets opened out of order (and some dropped) still decrypt: no state is carried."""
    sender, receiver = make_pair(suite)
    packets = [sender.seal(9, seq, bytes([seq]) * 50, 4) for seq in range(1, 11)]
    for seq in (3, 1, 10, 2, 7):
        assert receiver.open(packets[seq - 1]) == (4, bytes([seq]) * 50)


@pytest.mark.parametrize("suite", ALL_SUITES)
def test_every_bit_flip_is_an_auth_error(suite: tuple) -> None:
    sender, receiver = make_pair(suite)
    packet = bytearray(sender.seal(0x1234, 1, bytes(range(37)), 4))
    for index in range(len(packet)):
        for bit in (0x01, 0x80):
            packet[index] ^= bit
            with pytest.raises(EspAuthError):
                receiver.open(bytes(packet))
            packet[index] ^= bit
    assert receiver.open(bytes(packet)) == (4, bytes(range(37)))


@pytest.mark.parametrize("suite", ALL_SUITES)
def test_truncations_raise_typed_errors(suite: tuple) -> None:
    sender, receiver = make_pair(suite)
    packet = sender.seal(0x1234, 1, bytes(range(60)), 4)
    for cut in range(len(packet)):
        with pytest.raises(EspError) as info:
            receiver.open(packet[:cut])
        if cut < receiver.prefix_len + receiver.icv_len + 2:
            assert isinstance(info.value, EspTruncated)


@pytest.mark.parametrize("suite", ALL_SUITES)
def test_random_garbage_only_raises_esp_errors(suite: tuple) -> None:
    _, receiver = make_pair(suite)
    rng = random.Random(3)
    for _ in range(300):
        with pytest.raises(EspError):
            receiver.open(rng.randbytes(rng.randrange(0, 200)))


def forge(cipher_key: tuple, plaintext_trailer: bytes) -> tuple[EspCipher, bytes]:
    """An authentic packet whose decrypted content is ``plaintext_trailer`` exactly, built by
    sealing with padding disabled through the AEAD primitive (the attacker knows the keys)."""
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    key, salt = cipher_key
    header = (0x77).to_bytes(4, "big") + (1).to_bytes(4, "big")
    iv = bytes(8)
    body = AESGCM(key).encrypt(salt + iv, plaintext_trailer, header)
    return EspCipher(EncrId.ENCR_AES_GCM_16, key + salt), header + iv + body


@pytest.mark.parametrize(
    "plain",
    [
        b"\x45\x00\x00\x00" + b"\x01\x03\x02\x04",  # pad bytes 1, 3 instead of 1, 2
        b"\x45\x00\x09\x04",  # pad length 9 exceeds the payload
        b"\x45\x00\x00\x00\x00\x00\x02\x04",  # pad bytes 0, 0
        b"\x00\x00\x00\x04\x01",  # not 4-byte aligned
    ],
)
def test_authentic_but_malformed_trailer_is_a_pad_error(plain: bytes) -> None:
    cipher, packet = forge((bytes(16), b"salt"), plain)
    with pytest.raises(EspPadError):
        cipher.open(packet)


def test_cbc_misaligned_ciphertext_is_a_pad_error_after_icv() -> None:
    import hmac as hmac_module

    key, ikey = bytes(16), bytes(32)
    cipher = EspCipher(EncrId.ENCR_AES_CBC, key, IntegId.AUTH_HMAC_SHA2_256_128, ikey)
    signed = bytes(8) + bytes(16) + bytes(20)  # 20 bytes of "ciphertext"
    icv = hmac_module.digest(ikey, signed, "sha256")[:16]
    with pytest.raises(EspPadError):
        cipher.open(signed + icv)


def test_open_into_and_seal_inplace_use_caller_buffers() -> None:
    sender, receiver = make_pair((EncrId.ENCR_AES_GCM_16, 20, None, 0))
    inner = bytes(range(100))
    buf = bytearray(2048)
    pos = 64
    buf[pos : pos + len(inner)] = inner
    end = sender.seal_inplace(buf, pos, 0x42, 3, len(inner), next_header_for(inner))
    packet = bytes(buf[pos - sender.prefix_len : end])
    out = bytearray(2048)
    assert receiver.open_into(packet, out) == (4, 0, 100)
    assert out[:100] == inner


@pytest.mark.parametrize(
    ("encr", "key", "integ", "ikey"),
    [
        (EncrId.ENCR_AES_GCM_16, bytes(17), None, b""),
        (EncrId.ENCR_AES_GCM_16, bytes(20), IntegId.AUTH_HMAC_SHA1_96, bytes(20)),
        (EncrId.ENCR_CHACHA20_POLY1305, bytes(20), None, b""),
        (EncrId.ENCR_AES_CBC, bytes(15), IntegId.AUTH_HMAC_SHA1_96, bytes(20)),
        (EncrId.ENCR_AES_CBC, bytes(16), None, b""),
        (EncrId.ENCR_AES_CBC, bytes(16), IntegId.AUTH_HMAC_SHA2_256_128, bytes(31)),
        (3, bytes(24), IntegId.AUTH_HMAC_SHA1_96, bytes(20)),  # 3DES is not offered
    ],
)
def test_unsupported_configurations(encr: int, key: bytes, integ: int | None, ikey: bytes) -> None:
    with pytest.raises(EspUnsupported):
        EspCipher(encr, key, integ, ikey)


def test_repr_has_no_key_material() -> None:
    key = bytes.fromhex("aa" * 36)
    text = repr(EspCipher(EncrId.ENCR_AES_GCM_16, key))
    assert "aa" not in text.lower() and "20" in text


def test_next_header_for() -> None:
    assert next_header_for(b"\x45\x00") == 4
    assert next_header_for(b"\x60\x00") == 41
