"""ESP packet transform (RFC 4303) over ``cryptography``: seal and open one packet of one SA.

Layout of an ESP packet (RFC 4303 section 2)::

    SPI (4) | Sequence Number (4) | IV (8 or 16) | ciphertext of
    [payload | padding 1,2,3,... | pad length (1) | next header (1)] | ICV

Supported transforms (IKEv2 IDs):

- ENCR_AES_CBC (12) with a 128/192/256-bit key and an HMAC integrity transform
  (AUTH_HMAC_SHA1_96, AUTH_HMAC_SHA2_256_128/384_192/512_256, RFC 3602 / RFC 4868);
- ENCR_AES_GCM_16 (20), RFC 4106: key material is key || 4-byte salt, the nonce is
  salt || 8-byte explicit IV, the AAD is SPI || sequence (SPI || ESN high || ESN low with ESN),
  the ICV is the 16-byte tag;
- ENCR_CHACHA20_POLY1305 (28), RFC 7634: same framing with a 32-byte key.

This module runs once per packet, so it is written for speed: the AEAD objects, the CBC
cipher contexts, the nonce and AAD scratch buffers are created once per SA, and the ``*_into``
methods work on caller-owned buffers without allocating. AES-CBC keeps one long-lived cipher
context per direction and rebases every packet's IV onto the context's running chain value
(``C_prev xor IV`` folded into the first block), which is the same computation as a fresh
CBC context but about ten times cheaper than creating one.

A cipher object holds separate scratch state for sealing and opening, so one thread may seal
while another opens; two threads must not seal (or open) with the same object at once.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import struct

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM, ChaCha20Poly1305

from ikeagent.crypto.suites import EncrId, IntegId

# the IANA transform IDs come from the suite table, the one registry of algorithms


# integ id -> (hashlib name, key length, truncated ICV length)
_INTEG: dict[int, tuple[str, int, int]] = {
    IntegId.AUTH_HMAC_SHA1_96: ("sha1", 20, 12),
    IntegId.AUTH_HMAC_SHA2_256_128: ("sha256", 32, 16),
    IntegId.AUTH_HMAC_SHA2_384_192: ("sha384", 48, 24),
    IntegId.AUTH_HMAC_SHA2_512_256: ("sha512", 64, 32),
}

# AEAD encr id -> (factory, allowed key lengths without the salt)
_AEAD: dict[int, tuple[type, tuple[int, ...]]] = {
    EncrId.ENCR_AES_GCM_16: (AESGCM, (16, 24, 32)),
    EncrId.ENCR_CHACHA20_POLY1305: (ChaCha20Poly1305, (32,)),
}

HEADER_LEN = 8  # SPI + sequence number
SALT_LEN = 4
AEAD_IV_LEN = 8
AEAD_ICV_LEN = 16
CBC_BLOCK = 16

NEXT_HEADER_IPV4 = 4
NEXT_HEADER_IPV6 = 41
NEXT_HEADER_NONE = 59  # "dummy" packets (RFC 4303 2.6), discarded by receivers

# _PADS[n] is the padding of length n: 1, 2, ..., n (RFC 4303 2.4)
_PADS: tuple[bytes, ...] = tuple(bytes(range(1, n + 1)) for n in range(256))
_HEADER = struct.Struct(">II")
_U32 = struct.Struct(">I")
_U64 = struct.Struct(">Q")
_AAD_ESN = struct.Struct(">III")
_MASK32 = 0xFFFFFFFF
# trailers (padding, pad length, next header) of tunnel-mode packets, prebuilt
_TRAILERS: dict[tuple[int, int], bytes] = {
    (n, nh): _PADS[n] + bytes((n, nh)) for n in range(16) for nh in (4, 41)
}


class EspError(Exception):
    """An ESP packet that must be dropped."""


class EspTruncated(EspError):
    """Too short to hold the header, IV, trailer and ICV."""


class EspAuthError(EspError):
    """The ICV does not verify."""


class EspPadError(EspError):
    """The ICV verified but the ciphertext length, padding or pad length is malformed."""


class EspUnsupported(ValueError):
    """An algorithm or key length this implementation does not offer (local configuration)."""


def _hmac_states(hash_name: str, key: bytes) -> tuple[object, object]:
    """The hash states after absorbing key xor ipad and key xor opad (RFC 2104)."""
    block = hashlib.new(hash_name).block_size
    if len(key) > block:
        key = hashlib.new(hash_name, key).digest()
    key = key.ljust(block, b"\0")
    inner = hashlib.new(hash_name, bytes(b ^ 0x36 for b in key))
    outer = hashlib.new(hash_name, bytes(b ^ 0x5C for b in key))
    return inner, outer


def parse_header(packet: bytes | bytearray | memoryview) -> tuple[int, int]:
    """Return (SPI, low 32 bits of the sequence number) of an ESP packet."""
    if len(packet) < HEADER_LEN:
        raise EspTruncated("shorter than the ESP header")
    return _HEADER.unpack_from(packet, 0)


def next_header_for(packet: bytes | bytearray | memoryview) -> int:
    """The ESP next header for an inner IP packet in tunnel mode (4 for IPv4, 41 for IPv6)."""
    return NEXT_HEADER_IPV6 if packet and packet[0] >> 4 == 6 else NEXT_HEADER_IPV4


class EspCipher:
    """Seal and open ESP packets of one SA (one key, one direction)."""

    __slots__ = (
        "encr_id",
        "integ_id",
        "esn",
        "aead",
        "iv_len",
        "icv_len",
        "align",
        "prefix_len",
        "_aead",
        "_salt",
        "_hash",
        "_inner",
        "_outer",
        "_enc",
        "_dec",
        "_enc_chain",
    )

    def __init__(
        self,
        encr_id: int,
        encr_key: bytes,
        integ_id: int | None = None,
        integ_key: bytes = b"",
        esn: bool = False,
    ) -> None:
        self.encr_id = encr_id
        self.integ_id = integ_id
        self.esn = esn
        self._aead = None
        self._enc = self._dec = None
        self._hash = ""
        self._inner = self._outer = None
        self._enc_chain = bytes(CBC_BLOCK)
        self._salt = b""
        aead = _AEAD.get(encr_id)
        if aead is not None:
            factory, key_lens = aead
            if len(encr_key) - SALT_LEN not in key_lens:
                raise EspUnsupported(f"bad key length {len(encr_key)} for encr {encr_id}")
            if integ_id not in (None, 0):
                raise EspUnsupported("an AEAD transform takes no integrity transform")
            self.aead = True
            self._aead = factory(bytes(encr_key[:-SALT_LEN]))
            self._salt = bytes(encr_key[-SALT_LEN:])
            self.iv_len = AEAD_IV_LEN
            self.icv_len = AEAD_ICV_LEN
            self.align = 4
        elif encr_id == EncrId.ENCR_AES_CBC:
            if len(encr_key) not in (16, 24, 32):
                raise EspUnsupported(f"bad AES-CBC key length {len(encr_key)}")
            integ = _INTEG.get(integ_id) if integ_id is not None else None
            if integ is None:
                raise EspUnsupported(
                    f"AES-CBC needs a supported integrity transform, not {integ_id}"
                )
            self._hash, key_len, self.icv_len = integ
            if len(integ_key) != key_len:
                raise EspUnsupported(f"bad integrity key length {len(integ_key)}")
            self.aead = False
            self._inner, self._outer = _hmac_states(self._hash, bytes(integ_key))
            zero_iv = modes.CBC(bytes(CBC_BLOCK))
            self._enc = Cipher(algorithms.AES(bytes(encr_key)), zero_iv).encryptor()
            self._dec = Cipher(algorithms.AES(bytes(encr_key)), zero_iv).decryptor()
            self.iv_len = CBC_BLOCK
            self.align = CBC_BLOCK
        else:
            raise EspUnsupported(f"unsupported ESP encryption transform {encr_id}")
        self.prefix_len = HEADER_LEN + self.iv_len

    def __repr__(self) -> str:  # keys never reach logs
        return f"EspCipher(encr_id={self.encr_id}, integ_id={self.integ_id}, esn={self.esn})"

    # -- sizes -------------------------------------------------------------------------------

    def padded_len(self, payload_len: int) -> int:
        """Length of payload + padding + the two trailer bytes."""
        return payload_len + 2 + (-(payload_len + 2)) % self.align

    def packet_len(self, payload_len: int) -> int:
        return self.prefix_len + self.padded_len(payload_len) + self.icv_len

    def buffer_len(self, payload_len: int) -> int:
        """Room ``seal_inplace`` needs from the packet start (CBC wants one spare block)."""
        return self.packet_len(payload_len) + CBC_BLOCK

    # -- sealing ----------------------------------------------------------------------------

    def seal(
        self,
        spi: int,
        seq: int,
        payload: bytes | bytearray | memoryview,
        next_header: int,
        iv: bytes | None = None,
    ) -> bytes:
        """Build one ESP packet. ``seq`` is the full (64-bit with ESN) sequence number; ``iv``
        defaults to the sequence number for AEAD (RFC 4106 3.1) and to random bytes for CBC."""
        buf = bytearray(self.buffer_len(len(payload)))
        pos = self.prefix_len
        buf[pos : pos + len(payload)] = payload
        end = self.seal_inplace(buf, pos, spi, seq, len(payload), next_header, iv)
        return bytes(buf[:end])

    def seal_inplace(
        self,
        buf: bytearray | memoryview,
        pos: int,
        spi: int,
        seq: int,
        length: int,
        next_header: int,
        iv: bytes | None = None,
    ) -> int:
        """Seal the payload already at ``buf[pos:pos+length]`` in place.

        The ESP packet is written to ``buf[pos - prefix_len : end]`` and ``end`` is returned;
        ``buf`` needs ``buffer_len(length)`` bytes from the packet start.
        """
        start = pos - self.prefix_len
        padlen = (-(length + 2)) % self.align
        tail = pos + length
        trailer = _TRAILERS.get((padlen, next_header))
        if trailer is None:
            trailer = _PADS[padlen] + bytes((padlen, next_header))
        buf[tail : tail + padlen + 2] = trailer
        tail += padlen + 2
        mv = buf if isinstance(buf, memoryview) else memoryview(buf)
        if self._aead is not None:
            # cryptography takes bytes arguments faster than other buffers: nonce and AAD are
            # built as bytes, only the payload is passed as a view (sealed in place)
            header = _HEADER.pack(spi, seq & _MASK32)
            ivb = _U64.pack(seq) if iv is None else bytes(iv)
            mv[start:pos] = header + ivb
            aad = _AAD_ESN.pack(spi, seq >> 32, seq & _MASK32) if self.esn else header
            end = tail + AEAD_ICV_LEN
            self._aead.encrypt_into(self._salt + ivb, mv[pos:tail], aad, mv[pos:end])
            return end
        _HEADER.pack_into(buf, start, spi, seq & _MASK32)
        # AES-CBC + HMAC (RFC 3602, RFC 4868)
        if iv is None:
            # The running CBC context encrypts a fresh random block R first; its output
            # E(R xor C_prev) is this packet's IV (unpredictable, as RFC 3602 2.3 requires)
            # and the payload blocks that follow chain from it exactly as CBC with that IV.
            mv[start + HEADER_LEN : pos] = os.urandom(CBC_BLOCK)
            self._enc.update_into(
                mv[start + HEADER_LEN : tail], mv[start + HEADER_LEN : tail + CBC_BLOCK - 1]
            )
        else:
            # a given IV (tests, known answers): fold it into the first block instead
            mv[start + HEADER_LEN : pos] = iv
            first = int.from_bytes(mv[pos : pos + CBC_BLOCK], "big")
            first ^= int.from_bytes(iv, "big") ^ int.from_bytes(self._enc_chain, "big")
            mv[pos : pos + CBC_BLOCK] = first.to_bytes(CBC_BLOCK, "big")
            self._enc.update_into(mv[pos:tail], mv[pos : tail + CBC_BLOCK - 1])
        self._enc_chain = mv[tail - CBC_BLOCK : tail].tobytes()
        end = tail + self.icv_len
        mv[tail:end] = self._mac(mv[start:tail], seq >> 32)
        return end

    def _mac(self, signed: memoryview, seq_hi: int) -> bytes:
        """Truncated HMAC (RFC 2104) from the precomputed inner and outer hash states; with ESN
        the high sequence bits are appended to the signed data (RFC 4303 2.2.1)."""
        inner = self._inner.copy()
        inner.update(signed)
        if self.esn:
            inner.update(_U32.pack(seq_hi & _MASK32))
        outer = self._outer.copy()
        outer.update(inner.digest())
        return outer.digest()[: self.icv_len]

    # -- opening ----------------------------------------------------------------------------

    def open(self, packet: bytes | bytearray | memoryview, seq_hi: int = 0) -> tuple[int, bytes]:
        """Verify and decrypt one ESP packet: (next header, inner packet).

        ``seq_hi`` is the inferred high half of the sequence number with ESN (RFC 4303 A2.2).
        Raises only ``EspError`` subclasses, whatever the input.
        """
        out = bytearray(len(packet) + CBC_BLOCK)
        next_header, start, length = self.open_into(packet, out, seq_hi)
        return next_header, bytes(out[start : start + length])

    def open_into(
        self,
        packet: bytes | bytearray | memoryview,
        out: bytearray | memoryview,
        seq_hi: int = 0,
    ) -> tuple[int, int, int]:
        """Like ``open`` but decrypts into ``out`` and returns (next header, start, length):
        the inner packet is ``out[start:start+length]``. ``out`` needs ``len(packet) + 16``
        bytes; on error its content is undefined. The ICV is verified before anything is
        decrypted (or, for AEAD, released)."""
        n = len(packet)
        pkt = packet if isinstance(packet, memoryview) else memoryview(packet)
        omv = out if isinstance(out, memoryview) else memoryview(out)
        prefix = self.prefix_len
        start = 0
        if self._aead is not None:
            clen = n - prefix - AEAD_ICV_LEN
            if clen < 2:
                raise EspTruncated("ESP packet too short")
            nonce = self._salt + pkt[HEADER_LEN:prefix].tobytes()
            if self.esn:
                # SPI || ESN high || ESN low (RFC 4106 5)
                aad = pkt[0:4].tobytes() + _U32.pack(seq_hi & _MASK32) + pkt[4:8].tobytes()
            else:
                aad = pkt[0:HEADER_LEN].tobytes()
            try:
                self._aead.decrypt_into(nonce, pkt[prefix:n], aad, omv[:clen])
            except InvalidTag:
                raise EspAuthError("ICV mismatch") from None
            except (ValueError, TypeError, OverflowError) as exc:
                raise EspTruncated(f"undecryptable ESP packet: {exc}") from None
            if clen % 4:
                raise EspPadError("ciphertext not 4-byte aligned")
        else:
            icv_len = self.icv_len
            clen = n - prefix - icv_len
            if clen < CBC_BLOCK:
                raise EspTruncated("ESP packet too short")
            mac = self._mac(pkt[: n - icv_len], seq_hi)
            if not hmac.compare_digest(mac, pkt[n - icv_len : n]):
                raise EspAuthError("ICV mismatch")
            if clen % CBC_BLOCK:
                raise EspPadError("ciphertext not a multiple of the block size")
            # Feed the IV block first: the running context then yields D(C1) xor IV, ...
            # exactly CBC with this packet's IV; the first output block is discarded.
            self._dec.update_into(pkt[HEADER_LEN : prefix + clen], omv[: clen + 2 * CBC_BLOCK - 1])
            start = CBC_BLOCK
        last = start + clen
        padlen = omv[last - 2]
        next_header = omv[last - 1]
        length = clen - 2 - padlen
        if length < 0:
            raise EspPadError("pad length exceeds the payload")
        if padlen and omv[start + length : last - 2] != _PADS[padlen]:
            raise EspPadError("padding bytes are not 1, 2, 3, ...")
        return next_header, start, length
