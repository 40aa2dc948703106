"""One table of algorithms: strongSwan proposal keywords <-> IKEv2 transforms <-> implementations.

CONTRACT (filled in by the crypto work; the names below are used by config, engine and Ansible):

- ``TransformType``: IKEv2 transform types (RFC 7296 3.3.2): ENCR=1, PRF=2, INTEG=3, DH=4, ESN=5.
- ``Kind``: IKE or ESP proposals.
- ``Algorithm``: one transform, as it goes on the wire (type, id, key length attribute).
- ``Proposal``: the algorithms of one strongSwan proposal keyword, e.g.
  ``aes256gcm16-prfsha256-x25519`` (IKE) or ``aes256-sha256-modp2048`` (ESP with PFS group).
- ``parse_proposal(text, kind) -> Proposal`` raising ``ProposalError`` with a reason that names
  the bad token.
- ``default_proposals(kind) -> tuple[Proposal, ...]``.
- Per-id metadata lookups: ``encr_info``, ``integ_info``, ``prf_info``, ``dh_info``.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum, IntEnum


class TransformType(IntEnum):
    ENCR = 1
    PRF = 2
    INTEG = 3
    DH = 4
    ESN = 5


class Kind(Enum):
    IKE = "ike"
    ESP = "esp"


class ProposalError(ValueError):
    """A proposal keyword that is unknown, weak or an unusable combination."""


@dataclass(frozen=True, slots=True)
class Algorithm:
    keyword: str  # canonical strongSwan keyword, e.g. "aes256gcm16", "sha256", "prfsha256", "x25519"
    type: TransformType
    id: int  # IKEv2 transform ID
    key_bits: int | None = None  # Key Length attribute (AES), None when the transform has none

    def __str__(self) -> str:
        return self.keyword


@dataclass(frozen=True, slots=True)
class Proposal:
    """One proposal: alternatives per transform type, in preference order."""

    encr: tuple[Algorithm, ...]
    integ: tuple[Algorithm, ...] = ()
    prf: tuple[Algorithm, ...] = ()
    dh: tuple[Algorithm, ...] = ()
    esn: tuple[Algorithm, ...] = ()

    def transforms(self) -> tuple[Algorithm, ...]:
        return self.encr + self.integ + self.prf + self.dh + self.esn

    def __str__(self) -> str:
        return "-".join(a.keyword for a in self.transforms())


@dataclass(frozen=True, slots=True)
class EncrInfo:
    id: int
    name: str  # IANA name, e.g. "ENCR_AES_GCM_16"
    aead: bool
    key_bits: tuple[int, ...]  # allowed key lengths
    salt_len: int  # bytes of salt taken from key material after the key (AEAD), else 0
    iv_len: int  # explicit IV on the wire
    block_size: int  # padding alignment of the plaintext (1 for stream/AEAD-ctr modes -> 4 in ESP)
    icv_len: int  # AEAD tag length, 0 for non-AEAD


@dataclass(frozen=True, slots=True)
class IntegInfo:
    id: int
    name: str  # "AUTH_HMAC_SHA2_256_128"
    hash_name: str  # hashlib name: "sha1", "sha256", ...
    key_len: int
    icv_len: int


@dataclass(frozen=True, slots=True)
class PrfInfo:
    id: int
    name: str  # "PRF_HMAC_SHA2_256"
    hash_name: str
    out_len: int  # also the preferred key length


@dataclass(frozen=True, slots=True)
class DhInfo:
    id: int
    name: str  # "MODP_2048", "ECP_256", "CURVE25519"
    public_len: int  # KE payload data length
