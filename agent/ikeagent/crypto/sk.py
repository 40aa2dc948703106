"""The Encrypted (SK) payload's protection: RFC 7296 3.14 (AES-CBC + HMAC), RFC 5282 (AES-GCM
in IKEv2) and RFC 7634 (ChaCha20-Poly1305 in IKEv2). Also serves SKF fragments (RFC 7383).

Body on the wire: IV | ciphertext of (plaintext | padding | pad length) | ICV.

- Classic: padding to the cipher block size; ICV = truncated HMAC over ``aad`` | IV |
  ciphertext, where ``aad`` is the IKE header and everything up to the end of the SK/SKF
  payload header (the ICV covers the whole message, RFC 7296 3.14).
- AEAD: nonce = salt | IV (salt = last 4 octets of the key material), associated data exactly
  ``aad``; no padding beyond the pad length octet (RFC 5282 section 3 allows zero padding).

``open`` raises only ``IntegrityError`` (bad ICV or tag) or ``DecryptError`` (bad length or
padding), whatever the input; both are ``SkError``/``ValueError``.
"""

from __future__ import annotations

import hmac

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers import Cipher
from cryptography.hazmat.primitives.ciphers.aead import AESGCM, ChaCha20Poly1305
from cryptography.hazmat.primitives.ciphers.algorithms import AES
from cryptography.hazmat.primitives.ciphers.modes import CBC, GCM

from ikeagent.crypto.suites import EncrId, encr_info, integ_info


class SkError(ValueError):
    """An SK payload that cannot be opened."""


class IntegrityError(SkError):
    """The ICV or AEAD tag does not verify."""


class DecryptError(SkError):
    """The body is too short, misaligned, or its padding is inconsistent."""


class SkCipher:
    """Protect/unprotect SK payload bodies for one direction of an IKE SA."""

    __slots__ = (
        "encr_id",
        "integ_id",
        "iv_len",
        "icv_len",
        "block_size",
        "_aead",
        "_key",
        "_salt",
        "_integ_key",
        "_hash",
        "_gcm_short",
        "_algo",
    )

    def __init__(
        self, encr_id: int, encr_key: bytes, integ_id: int | None, integ_key: bytes = b""
    ) -> None:
        info = encr_info(encr_id)  # KeyError for unsupported ciphers
        self.encr_id = int(encr_id)
        self.iv_len = info.iv_len
        self.block_size = info.block_size
        key = bytes(encr_key[: len(encr_key) - info.salt_len])
        self._salt = bytes(encr_key[len(key) :])
        if len(key) * 8 not in info.key_bits:
            raise ValueError(
                f"{info.name}: key material of {len(encr_key)} octets is the wrong size"
            )
        self._key = key
        self._algo: AES | None = None  # built once: AES-CBC and short-tag GCM
        self._gcm_short = False
        if info.aead:
            if integ_id:
                raise ValueError(f"{info.name} is combined mode and takes no integrity algorithm")
            self.integ_id = None
            self.icv_len = info.icv_len
            self._integ_key = b""
            self._hash = ""
            if self.encr_id == EncrId.ENCR_CHACHA20_POLY1305:
                self._aead: AESGCM | ChaCha20Poly1305 | None = ChaCha20Poly1305(key)
            elif info.icv_len == 16:
                self._aead = AESGCM(key)
            else:  # 8 and 12 octet tags need the lower-level GCM mode
                self._aead = None
                self._gcm_short = True
                self._algo = AES(key)
        else:
            if not integ_id:
                raise ValueError(f"{info.name} needs an integrity algorithm")
            integ = integ_info(integ_id)
            if len(integ_key) != integ.key_len:
                raise ValueError(f"{integ.name}: integrity key must be {integ.key_len} octets")
            self.integ_id = int(integ_id)
            self.icv_len = integ.icv_len
            self._integ_key = bytes(integ_key)
            self._hash = integ.hash_name
            self._aead = None
            self._algo = AES(key)

    def __repr__(self) -> str:
        return f"SkCipher(encr={self.encr_id}, integ={self.integ_id})"

    def _padded_len(self, plaintext_len: int) -> int:
        n = plaintext_len + 1
        return -(-n // self.block_size) * self.block_size

    def encrypted_length(self, plaintext_len: int) -> int:
        """Octets of IV + ciphertext (with padding and pad length) + ICV."""
        return self.iv_len + self._padded_len(plaintext_len) + self.icv_len

    def seal(self, aad: bytes, plaintext: bytes, iv: bytes) -> bytes:
        """IV | ciphertext | ICV for ``plaintext``; ``iv`` must be ``iv_len`` fresh octets
        (unique per key for AEAD: a counter or random)."""
        if len(iv) != self.iv_len:
            raise ValueError(f"IV must be {self.iv_len} octets")
        pad = self._padded_len(len(plaintext)) - len(plaintext) - 1
        data = bytes(plaintext) + bytes(pad) + bytes((pad,))
        if self._aead is not None:
            return bytes(iv) + self._aead.encrypt(self._salt + iv, data, bytes(aad))
        if self._gcm_short:
            enc = Cipher(self._algo, GCM(self._salt + iv)).encryptor()
            enc.authenticate_additional_data(bytes(aad))
            ct = enc.update(data) + enc.finalize()
            return bytes(iv) + ct + enc.tag[: self.icv_len]
        enc = Cipher(self._algo, CBC(iv)).encryptor()
        ct = enc.update(data) + enc.finalize()
        icv = hmac.digest(self._integ_key, bytes(aad) + iv + ct, self._hash)[: self.icv_len]
        return bytes(iv) + ct + icv

    def open(self, aad: bytes, body: bytes) -> bytes:
        """The plaintext of an SK body, padding removed; IntegrityError or DecryptError."""
        body = bytes(body)
        aad = bytes(aad)
        if len(body) < self.iv_len + self.block_size + self.icv_len:
            raise DecryptError("encrypted payload too short")
        iv = body[: self.iv_len]
        ct = body[self.iv_len : len(body) - self.icv_len]
        icv = body[len(body) - self.icv_len :]
        if self._aead is not None or self._gcm_short:
            data = self._open_aead(aad, iv, ct, icv)
        else:
            expect = hmac.digest(self._integ_key, aad + iv + ct, self._hash)[: self.icv_len]
            if not hmac.compare_digest(expect, icv):
                raise IntegrityError("integrity check value mismatch")
            if len(ct) % self.block_size:
                raise DecryptError("ciphertext is not a multiple of the block size")
            dec = Cipher(self._algo, CBC(iv)).decryptor()
            data = dec.update(ct) + dec.finalize()
        pad = data[-1]
        if pad + 1 > len(data):
            raise DecryptError("pad length exceeds the decrypted data")
        return data[: len(data) - pad - 1]

    def _open_aead(self, aad: bytes, iv: bytes, ct: bytes, tag: bytes) -> bytes:
        try:
            if self._aead is not None:
                return self._aead.decrypt(self._salt + iv, ct + tag, aad)
            dec = Cipher(
                self._algo,
                GCM(self._salt + iv, tag, min_tag_length=self.icv_len),
            ).decryptor()
            dec.authenticate_additional_data(aad)
            return dec.update(ct) + dec.finalize()
        except InvalidTag as exc:
            raise IntegrityError("AEAD tag mismatch") from exc
