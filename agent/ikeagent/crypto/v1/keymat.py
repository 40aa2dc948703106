"""IKEv1 key material and hashes (RFC 2409 sections 5, 5.5, 5.6 and appendix B; RFC 3947 3.2).

Hash algorithms are the IKEv1 HASH_ALGORITHM values (RFC 2409 appendix A): SHA=2,
SHA2_256=4, SHA2_384=5, SHA2_512=6; ``prf`` is HMAC with that hash (RFC 2409 section 4: "the
HMAC version of the negotiated hash algorithm is used as a pseudo-random function").
MD5 (1) is refused as weak, as in the suite table; unknown values raise ``ValueError``.

Cookies (CKY-I, CKY-R) are the 8-octet ISAKMP SPIs as they appear in the header; an ``int`` is
accepted too and written big-endian. Message IDs are 32-bit and written big-endian.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import ipaddress
from dataclasses import dataclass, fields

from ikeagent.crypto.v1.iana import IkeHash

_HASHES: dict[int, tuple[str, int]] = {
    IkeHash.SHA: ("sha1", 20),
    IkeHash.SHA2_256: ("sha256", 32),
    IkeHash.SHA2_384: ("sha384", 48),
    IkeHash.SHA2_512: ("sha512", 64),
}

MAX_EXPANSION = 255  # blocks of prf output we are willing to produce (same bound as prf+)


def _hash(hash_id: int) -> tuple[str, int]:
    try:
        return _HASHES[int(hash_id)]
    except KeyError:
        if int(hash_id) == IkeHash.MD5:
            raise ValueError("HASH_ALGORITHM MD5: weak algorithm, not supported") from None
        raise ValueError(f"HASH_ALGORITHM {int(hash_id)}: not supported") from None


def hash_len(hash_id: int) -> int:
    """Octets of the hash (and prf) output."""
    return _hash(hash_id)[1]


def prf(hash_id: int, key: bytes, data: bytes) -> bytes:
    """prf(key, data) = HMAC-<hash>(key, data)."""
    return hmac.digest(key, data, _hash(hash_id)[0])


def digest(hash_id: int, data: bytes) -> bytes:
    """The plain hash of ``data`` (IVs, NAT-D)."""
    return hashlib.new(_hash(hash_id)[0], data).digest()


def _cookie(value: bytes | int) -> bytes:
    if isinstance(value, int):
        return value.to_bytes(8, "big")
    if len(value) != 8:
        raise ValueError(f"an ISAKMP cookie is 8 octets, not {len(value)}")
    return bytes(value)


def _mid(message_id: int) -> bytes:
    return int(message_id).to_bytes(4, "big")


def _hidden_repr(obj: object) -> str:
    parts = ", ".join(f"{f.name}=<{len(getattr(obj, f.name))} octets>" for f in fields(obj))  # type: ignore[arg-type]
    return f"{type(obj).__name__}({parts})"


# --- Phase 1 (RFC 2409 section 5) -------------------------------------------------------------


def skeyid_psk(hash_id: int, psk: bytes, ni_b: bytes, nr_b: bytes) -> bytes:
    """SKEYID = prf(pre-shared-key, Ni_b | Nr_b)."""
    return prf(hash_id, psk, ni_b + nr_b)


def skeyid_sig(hash_id: int, ni_b: bytes, nr_b: bytes, gxy: bytes) -> bytes:
    """SKEYID = prf(Ni_b | Nr_b, g^xy) (signature authentication)."""
    return prf(hash_id, ni_b + nr_b, gxy)


def skeyid_pke(
    hash_id: int, ni_b: bytes, nr_b: bytes, cky_i: bytes | int, cky_r: bytes | int
) -> bytes:
    """SKEYID = prf(hash(Ni_b | Nr_b), CKY-I | CKY-R) (public key encryption)."""
    return prf(hash_id, digest(hash_id, ni_b + nr_b), _cookie(cky_i) + _cookie(cky_r))


@dataclass(frozen=True, slots=True, repr=False)
class Phase1Keys:
    """SKEYID and its derivatives; ``enc_key`` is the cipher key Ka (appendix B)."""

    skeyid: bytes
    skeyid_d: bytes
    skeyid_a: bytes
    skeyid_e: bytes
    enc_key: bytes

    def __repr__(self) -> str:
        return _hidden_repr(self)


def expand_enc_key(hash_id: int, skeyid_e: bytes, length: int) -> bytes:
    """The encryption key from SKEYID_e (RFC 2409 appendix B).

    The first ``length`` octets of SKEYID_e when it is long enough, else
    Ka = K1 | K2 | ... with K1 = prf(SKEYID_e, 0), Kn = prf(SKEYID_e, Kn-1) (0 is one octet).
    """
    if length < 0:
        raise ValueError("negative key length")
    if len(skeyid_e) >= length:
        return bytes(skeyid_e[:length])
    name, out_len = _hash(hash_id)
    if -(-length // out_len) > MAX_EXPANSION:
        raise ValueError(f"cannot expand SKEYID_e to {length} octets")
    base = hmac.new(skeyid_e, digestmod=name)
    out = bytearray()
    k = b"\x00"
    while len(out) < length:
        h = base.copy()
        h.update(k)
        k = h.digest()
        out += k
    return bytes(out[:length])


def derive_phase1(
    hash_id: int,
    skeyid: bytes,
    gxy: bytes,
    cky_i: bytes | int,
    cky_r: bytes | int,
    enc_key_len: int,
) -> Phase1Keys:
    """SKEYID_d = prf(SKEYID, g^xy | CKY-I | CKY-R | 0)
    SKEYID_a = prf(SKEYID, SKEYID_d | g^xy | CKY-I | CKY-R | 1)
    SKEYID_e = prf(SKEYID, SKEYID_a | g^xy | CKY-I | CKY-R | 2)
    and the encryption key of ``enc_key_len`` octets from SKEYID_e (appendix B)."""
    tail = gxy + _cookie(cky_i) + _cookie(cky_r)
    skeyid_d = prf(hash_id, skeyid, tail + b"\x00")
    skeyid_a = prf(hash_id, skeyid, skeyid_d + tail + b"\x01")
    skeyid_e = prf(hash_id, skeyid, skeyid_a + tail + b"\x02")
    enc_key = expand_enc_key(hash_id, skeyid_e, enc_key_len)
    return Phase1Keys(skeyid, skeyid_d, skeyid_a, skeyid_e, enc_key)


def initial_iv(hash_id: int, gxi: bytes, gxr: bytes, block_size: int) -> bytes:
    """The Phase 1 IV: hash(g^xi | g^xr) cut to the cipher block size (appendix B)."""
    return _cut(digest(hash_id, gxi + gxr), block_size)


def phase2_iv(hash_id: int, last_block: bytes, message_id: int, block_size: int) -> bytes:
    """The first IV of a Quick Mode or Informational exchange: hash(last Phase 1 CBC output
    block | M-ID) cut to the block size (appendix B)."""
    return _cut(digest(hash_id, bytes(last_block) + _mid(message_id)), block_size)


def _cut(value: bytes, block_size: int) -> bytes:
    if not 0 < block_size <= len(value):
        raise ValueError(f"cannot take a {block_size}-octet IV from a {len(value)}-octet hash")
    return value[:block_size]


def hash_i(
    hash_id: int,
    skeyid: bytes,
    gxi: bytes,
    gxr: bytes,
    cky_i: bytes | int,
    cky_r: bytes | int,
    sai_b: bytes,
    idii_b: bytes,
) -> bytes:
    """HASH_I = prf(SKEYID, g^xi | g^xr | CKY-I | CKY-R | SAi_b | IDii_b) (section 5)."""
    return prf(hash_id, skeyid, gxi + gxr + _cookie(cky_i) + _cookie(cky_r) + sai_b + idii_b)


def hash_r(
    hash_id: int,
    skeyid: bytes,
    gxr: bytes,
    gxi: bytes,
    cky_r: bytes | int,
    cky_i: bytes | int,
    sai_b: bytes,
    idir_b: bytes,
) -> bytes:
    """HASH_R = prf(SKEYID, g^xr | g^xi | CKY-R | CKY-I | SAi_b | IDir_b) (section 5).

    Arguments are in the RFC's order: the responder's values first."""
    return prf(hash_id, skeyid, gxr + gxi + _cookie(cky_r) + _cookie(cky_i) + sai_b + idir_b)


# --- Phase 2 (RFC 2409 section 5.5, RFC 2408 / 2409 informational exchanges) -------------------


def qm_hash1(hash_id: int, skeyid_a: bytes, message_id: int, rest: bytes) -> bytes:
    """HASH(1) = prf(SKEYID_a, M-ID | <the message after the HASH payload>)."""
    return prf(hash_id, skeyid_a, _mid(message_id) + rest)


def qm_hash2(hash_id: int, skeyid_a: bytes, message_id: int, ni_b: bytes, rest: bytes) -> bytes:
    """HASH(2) = prf(SKEYID_a, M-ID | Ni_b | <the message after the HASH payload>)."""
    return prf(hash_id, skeyid_a, _mid(message_id) + ni_b + rest)


def qm_hash3(hash_id: int, skeyid_a: bytes, message_id: int, ni_b: bytes, nr_b: bytes) -> bytes:
    """HASH(3) = prf(SKEYID_a, 0 | M-ID | Ni_b | Nr_b) (0 is one octet)."""
    return prf(hash_id, skeyid_a, b"\x00" + _mid(message_id) + ni_b + nr_b)


info_hash = qm_hash1
"""Informational exchanges: HASH(1) = prf(SKEYID_a, M-ID | N/D) (RFC 2409 section 5.7)."""


def expand_keymat(hash_id: int, key: bytes, seed: bytes, length: int) -> bytes:
    """KEYMAT = K1 | K2 | ... with K1 = prf(key, seed), Kn = prf(key, Kn-1 | seed), cut to
    ``length`` (RFC 2409 section 5.5)."""
    name, out_len = _hash(hash_id)
    if length < 0 or -(-length // out_len) > MAX_EXPANSION:
        raise ValueError(f"cannot produce {length} octets of KEYMAT")
    base = hmac.new(key, digestmod=name)
    out = bytearray()
    k = b""
    while len(out) < length:
        h = base.copy()
        h.update(k + seed)
        k = h.digest()
        out += k
    return bytes(out[:length])


def keymat(
    hash_id: int,
    skeyid_d: bytes,
    protocol: int,
    spi: int,
    ni_b: bytes,
    nr_b: bytes,
    length: int,
    gxy: bytes = b"",
) -> bytes:
    """KEYMAT of one SA (RFC 2409 section 5.5), ``length`` octets:

    without PFS: prf(SKEYID_d, protocol | SPI | Ni_b | Nr_b), with PFS (``gxy`` the Quick
    Mode shared secret): prf(SKEYID_d, g(qm)^xy | protocol | SPI | Ni_b | Nr_b), expanded as in
    ``expand_keymat``. ``spi`` is the SPI of the SA the key is for (the receiver's), 4 octets.
    """
    if not 0 <= protocol <= 0xFF:
        raise ValueError(f"protocol {protocol} is not one octet")
    seed = gxy + bytes((protocol,)) + int(spi).to_bytes(4, "big") + ni_b + nr_b
    return expand_keymat(hash_id, skeyid_d, seed, length)


# --- NAT-T (RFC 3947 section 3.2) -------------------------------------------------------------


@functools.lru_cache(maxsize=4096)
def _packed(ip: str) -> bytes:
    return ipaddress.ip_address(ip).packed


def nat_d(hash_id: int, cky_i: bytes | int, cky_r: bytes | int, ip: str, port: int) -> bytes:
    """NAT-D payload data: HASH(CKY-I | CKY-R | IP | Port) with the negotiated hash."""
    return digest(
        hash_id, _cookie(cky_i) + _cookie(cky_r) + _packed(ip) + int(port).to_bytes(2, "big")
    )
