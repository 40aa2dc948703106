"""IKEv1 message body encryption: RFC 3602 AES-CBC vector, RFC 2409 appendix B padding, the IV
chain, and tolerance of strongSwan-style padding (1..block zero octets, encrypted_payload.c
``encrypt_v1``)."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from ikeagent.crypto.v1 import keymat as km
from ikeagent.crypto.v1.attributes import IkeEncr, IkeHash
from ikeagent.crypto.v1.cipher import DecryptError, V1Cipher, block_size, last_block, pad


def h(text: str) -> bytes:
    return bytes.fromhex(text.replace(" ", ""))


# RFC 3602 section 4, Case #1: AES-128-CBC, one block.
RFC3602_KEY = h("06a9214036b8a15b512e03d534120006")
RFC3602_IV = h("3dafba429d9eb430b422da802c9fac41")
RFC3602_PLAIN = b"Single block msg"
RFC3602_CT = h("e353779c1079aeb82708942dbe77181a")


def test_rfc3602_case1_first_block() -> None:
    c = V1Cipher(IkeEncr.AES_CBC, RFC3602_KEY)
    ct = c.encrypt(RFC3602_IV, RFC3602_PLAIN)
    assert ct[:16] == RFC3602_CT
    assert len(ct) == 32  # an aligned body still gets a whole block of padding
    plain = c.decrypt(RFC3602_IV, ct)
    assert plain[:16] == RFC3602_PLAIN
    assert plain[16:] == bytes(15) + b"\x0f"


@pytest.mark.parametrize("bs", [8, 16])
def test_pad_rule(bs: int) -> None:
    for n in range(0, 3 * bs + 1):
        padded = pad(b"\xaa" * n, bs)
        count = len(padded) - n
        assert len(padded) % bs == 0 and 1 <= count <= bs
        assert padded[n:-1] == bytes(count - 1)
        assert padded[-1] == count - 1


@pytest.mark.parametrize(
    ("encr", "key_len"),
    [
        (IkeEncr.AES_CBC, 16),
        (IkeEncr.AES_CBC, 24),
        (IkeEncr.AES_CBC, 32),
        (IkeEncr.TRIPLE_DES_CBC, 24),
    ],
)
def test_round_trip_all_lengths(encr: int, key_len: int) -> None:
    c = V1Cipher(encr, bytes(range(key_len)))
    bs = block_size(encr)
    assert c.block_size == bs
    iv = bytes(range(100, 100 + bs))
    for n in range(0, 70):
        data = bytes((i * 7) & 0xFF for i in range(n))
        ct = c.encrypt(iv, data)
        assert len(ct) % bs == 0 and len(ct) > n
        assert c.decrypt(iv, ct) == pad(data, bs)


def test_iv_chain_across_messages_and_phase2() -> None:
    key = bytes(range(32))
    gi, gr = b"\x05" * 256, b"\x06" * 256
    sender, receiver = V1Cipher(IkeEncr.AES_CBC, key), V1Cipher(IkeEncr.AES_CBC, key)
    iv = km.initial_iv(IkeHash.SHA2_256, gi, gr, 16)
    # Main Mode messages 5 and 6: message 6 continues from message 5's last block
    ct5 = sender.encrypt(iv, b"ID|HASH_I" * 5)
    iv6 = last_block(ct5, 16)
    ct6 = sender.encrypt(iv6, b"ID|HASH_R" * 3)
    assert receiver.decrypt(iv6, ct6).startswith(b"ID|HASH_R")
    assert not receiver.decrypt(iv, ct6).startswith(b"ID|HASH_R")  # the wrong IV garbles it
    # Quick Mode: IV from the last Phase 1 block and the message ID, then chained again
    p1_last = last_block(ct6, 16)
    qm_iv = km.phase2_iv(IkeHash.SHA2_256, p1_last, 0x11223344, 16)
    qm1 = sender.encrypt(qm_iv, b"HASH(1)|SA|Ni")
    assert receiver.decrypt(qm_iv, qm1).startswith(b"HASH(1)|SA|Ni")
    qm2 = sender.encrypt(last_block(qm1, 16), b"HASH(2)|SA|Nr")
    assert receiver.decrypt(last_block(qm1, 16), qm2).startswith(b"HASH(2)|SA|Nr")
    # an Informational exchange has its own IV from the same Phase 1 block
    assert km.phase2_iv(IkeHash.SHA2_256, p1_last, 0x55667788, 16) != qm_iv


def test_strongswan_style_zero_padding_is_accepted() -> None:
    key, iv = bytes(16), bytes(range(16))
    # any payload bytes; strongSwan appends bs - len % bs zero octets (4 here, a whole block
    # for an aligned body) and the payload decoder stops at the end of the chain
    for body in (h("0000000c00000001 01000018"), h("0000001000000001 0100001802030405")):
        padded = body + bytes(16 - len(body) % 16)
        enc = Cipher(algorithms.AES(key), modes.CBC(iv)).encryptor()
        ct = enc.update(padded) + enc.finalize()
        plain = V1Cipher(IkeEncr.AES_CBC, key).decrypt(iv, ct)
        assert plain == padded and plain.startswith(body)


def test_decrypt_errors() -> None:
    c = V1Cipher(IkeEncr.AES_CBC, bytes(16))
    with pytest.raises(DecryptError):
        c.decrypt(bytes(16), b"")
    with pytest.raises(DecryptError):
        c.decrypt(bytes(16), bytes(17))
    with pytest.raises(DecryptError):
        c.decrypt(bytes(8), bytes(16))
    with pytest.raises(DecryptError):
        c.encrypt(bytes(15), b"x")
    with pytest.raises(DecryptError):
        last_block(bytes(10), 16)


def test_constructor_refusals_and_repr() -> None:
    with pytest.raises(ValueError, match="wrong size"):
        V1Cipher(IkeEncr.AES_CBC, bytes(20))
    with pytest.raises(ValueError, match="wrong size"):
        V1Cipher(IkeEncr.TRIPLE_DES_CBC, bytes(16))
    with pytest.raises(ValueError, match="ENCRYPTION_ALGORITHM 1"):
        V1Cipher(IkeEncr.DES_CBC, bytes(8))
    key = bytes.fromhex("5a" * 32)
    text = repr(V1Cipher(IkeEncr.AES_CBC, key))
    assert "5a5a" not in text and "Z" not in text
