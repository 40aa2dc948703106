"""CBC encryption of ISAKMP message bodies (RFC 2408 section 3.1 E flag, RFC 2409 appendix B).

Everything after the 28-octet ISAKMP header is encrypted in CBC mode; there is no integrity
check (the HASH payloads authenticate). The IV chain is the caller's: the first Phase 1 IV is
``keymat.initial_iv``, each later IV is the last ciphertext block of the previous message
(``last_block``), and each Phase 2 / Informational exchange starts at ``keymat.phase2_iv``.

Padding (``pad``): RFC 2409 appendix B pads every encrypted body "up to the nearest block
size", with zero octets except the last, which holds the number of padding octets before it,
so there is always at least one padding octet. strongSwan (``encrypted_payload.c``,
``encrypt_v1``) always appends 1..block-size zero octets and, on receipt, only checks that the
body is a non-empty multiple of the block size and then parses the payload chain, ignoring what
follows the last payload. Our padding is accepted by such receivers, and ``decrypt`` leaves any
padding in place for the payload decoder (``decode_payloads(..., trailing_ok=True)``).
"""

from __future__ import annotations

from cryptography.hazmat.decrepit.ciphers.algorithms import TripleDES
from cryptography.hazmat.primitives.ciphers import Cipher
from cryptography.hazmat.primitives.ciphers.algorithms import AES
from cryptography.hazmat.primitives.ciphers.modes import CBC

from ikeagent.crypto.v1.iana import IkeEncr


class DecryptError(ValueError):
    """An encrypted body whose length is not a positive multiple of the block size, or a bad IV."""


# IKEv1 ENCRYPTION_ALGORITHM -> (cipher class, block size, allowed key octets)
_CIPHERS: dict[int, tuple[type, int, tuple[int, ...]]] = {
    IkeEncr.AES_CBC: (AES, 16, (16, 24, 32)),
    IkeEncr.TRIPLE_DES_CBC: (TripleDES, 8, (24,)),
}


def block_size(encr_id: int) -> int:
    """Block (and IV) size of an IKEv1 cipher; KeyError if unsupported."""
    return _CIPHERS[int(encr_id)][1]


def pad(plaintext: bytes, block: int) -> bytes:
    """RFC 2409 appendix B padding: 1..block octets, zeros, the last one = count before it."""
    n = block - len(plaintext) % block
    return plaintext + bytes(n - 1) + bytes((n - 1,))


def last_block(ciphertext: bytes, block: int) -> bytes:
    """The last CBC output block: the IV of the next message in the same exchange chain."""
    if len(ciphertext) < block or len(ciphertext) % block:
        raise DecryptError(f"ciphertext of {len(ciphertext)} octets has no whole last block")
    return bytes(ciphertext[-block:])


class V1Cipher:
    """AES-CBC (7) or 3DES-CBC (5) for one IKEv1 SA (both directions share the key)."""

    __slots__ = ("encr_id", "block_size", "_algo")

    def __init__(self, encr_id: int, key: bytes) -> None:
        try:
            cls, bs, key_lens = _CIPHERS[int(encr_id)]
        except KeyError:
            raise ValueError(f"ENCRYPTION_ALGORITHM {int(encr_id)}: not supported") from None
        if len(key) not in key_lens:
            raise ValueError(
                f"{IkeEncr(int(encr_id)).name}: a key of {len(key)} octets is the wrong size"
            )
        self.encr_id = int(encr_id)
        self.block_size = bs
        self._algo = cls(bytes(key))

    def _check_iv(self, iv: bytes) -> None:
        if len(iv) != self.block_size:
            raise DecryptError(f"IV of {len(iv)} octets, expected {self.block_size}")

    def encrypt(self, iv: bytes, plaintext: bytes) -> bytes:
        """CBC-encrypt ``plaintext`` padded with ``pad``; the result is a whole number of blocks."""
        self._check_iv(iv)
        enc = Cipher(self._algo, CBC(bytes(iv))).encryptor()
        return enc.update(pad(plaintext, self.block_size)) + enc.finalize()

    def decrypt(self, iv: bytes, ciphertext: bytes) -> bytes:
        """CBC-decrypt; the padding is left in. DecryptError for an empty or misaligned body."""
        self._check_iv(iv)
        if not ciphertext or len(ciphertext) % self.block_size:
            raise DecryptError(
                f"encrypted body of {len(ciphertext)} octets is not a positive multiple of "
                f"{self.block_size}"
            )
        dec = Cipher(self._algo, CBC(bytes(iv))).decryptor()
        return dec.update(bytes(ciphertext)) + dec.finalize()

    def __repr__(self) -> str:
        return f"V1Cipher(encr_id={self.encr_id}, key=<hidden>)"
