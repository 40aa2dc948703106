"""IKEv2 key material: SKEYSEED and the IKE SA keys (RFC 7296 2.14), rekeyed IKE SAs (2.18)
and Child SA KEYMAT (2.17).

Encryption keys for AEAD ciphers include their 4-octet salt at the end (RFC 5282 section 7.1
for AES-GCM, RFC 7634 section 4 for ChaCha20-Poly1305); integrity keys are empty for AEAD.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

from ikeagent.crypto.prf import prf, prf_plus
from ikeagent.crypto.suites import encr_key_len, integ_info, prf_info


def _hidden_repr(obj: object) -> str:
    parts = ", ".join(f"{f.name}=<{len(getattr(obj, f.name))} octets>" for f in fields(obj))  # type: ignore[arg-type]
    return f"{type(obj).__name__}({parts})"


@dataclass(frozen=True, slots=True, repr=False)
class IkeKeys:
    sk_d: bytes
    sk_ai: bytes
    sk_ar: bytes
    sk_ei: bytes
    sk_er: bytes
    sk_pi: bytes
    sk_pr: bytes

    def __repr__(self) -> str:
        return _hidden_repr(self)


@dataclass(frozen=True, slots=True, repr=False)
class ChildKeys:
    """KEYMAT of one Child SA pair: initiator->responder first, then responder->initiator."""

    encr_i: bytes
    integ_i: bytes
    encr_r: bytes
    integ_r: bytes

    def __repr__(self) -> str:
        return _hidden_repr(self)


def _spi(value: int) -> bytes:
    return int(value).to_bytes(8, "big")


def skeyseed(prf_id: int, ni: bytes, nr: bytes, shared: bytes) -> bytes:
    """SKEYSEED = prf(Ni | Nr, g^ir) for a new IKE SA (RFC 7296 2.14)."""
    return prf(prf_id, ni + nr, shared)


def skeyseed_rekey(old_prf_id: int, old_sk_d: bytes, shared: bytes, ni: bytes, nr: bytes) -> bytes:
    """SKEYSEED = prf(SK_d (old), g^ir (new) | Ni | Nr), with the old IKE SA's PRF (RFC 7296 2.18)."""
    return prf(old_prf_id, old_sk_d, shared + ni + nr)


def derive_ike_keys(
    prf_id: int,
    encr_id: int,
    encr_key_bits: int | None,
    integ_id: int | None,
    ni: bytes,
    nr: bytes,
    shared: bytes,
    spi_i: int,
    spi_r: int,
    old_sk_d: bytes | None = None,
    old_prf_id: int | None = None,
) -> IkeKeys:
    """{SK_d | SK_ai | SK_ar | SK_ei | SK_er | SK_pi | SK_pr} = prf+(SKEYSEED, Ni | Nr | SPIi | SPIr).

    With ``old_sk_d`` this is a rekeyed IKE SA (RFC 7296 2.18): SKEYSEED comes from the old SK_d
    and the old SA's PRF (``old_prf_id``, defaulting to ``prf_id``); prf+ uses the new PRF.
    """
    if old_sk_d is None:
        seed = skeyseed(prf_id, ni, nr, shared)
    else:
        seed = skeyseed_rekey(
            prf_id if old_prf_id is None else old_prf_id, old_sk_d, shared, ni, nr
        )
    prf_len = prf_info(prf_id).out_len
    integ_len = integ_info(integ_id).key_len if integ_id else 0
    encr_len = encr_key_len(encr_id, encr_key_bits)
    sizes = (prf_len, integ_len, integ_len, encr_len, encr_len, prf_len, prf_len)
    keymat = prf_plus(prf_id, seed, ni + nr + _spi(spi_i) + _spi(spi_r), sum(sizes))
    return IkeKeys(*_split(keymat, sizes))


def derive_child_keys(
    prf_id: int,
    sk_d: bytes,
    ni: bytes,
    nr: bytes,
    encr_id: int,
    encr_key_bits: int | None,
    integ_id: int | None,
    shared: bytes | None = None,
) -> ChildKeys:
    """KEYMAT = prf+(SK_d, [g^ir (new)] | Ni | Nr) split as encr_i, integ_i, encr_r, integ_r
    (RFC 7296 2.17); ``shared`` is the PFS secret of a CREATE_CHILD_SA with KE payloads."""
    encr_len = encr_key_len(encr_id, encr_key_bits)
    integ_len = integ_info(integ_id).key_len if integ_id else 0
    sizes = (encr_len, integ_len, encr_len, integ_len)
    keymat = prf_plus(prf_id, sk_d, (shared or b"") + ni + nr, sum(sizes))
    return ChildKeys(*_split(keymat, sizes))


def _split(data: bytes, sizes: tuple[int, ...]) -> list[bytes]:
    out, pos = [], 0
    for n in sizes:
        out.append(data[pos : pos + n])
        pos += n
    return out
