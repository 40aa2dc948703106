"""One table of algorithms: strongSwan proposal keywords <-> IKEv2 transforms <-> implementations.

CONTRACT (filled in by the crypto work; the names below are used by config, engine and Ansible):

- ``TransformType``: IKEv2 transform types (RFC 7296 3.3.2): ENCR=1, PRF=2, INTEG=3, DH=4, ESN=5.
- ``Kind``: IKE or ESP proposals.
- ``Algorithm``: one transform, as it goes on the wire (type, id, key length attribute).
- ``Proposal``: the algorithms of one strongSwan proposal keyword, e.g.
  ``aes256gcm16-prfsha256-x25519`` (IKE) or ``aes256-sha256-modp2048`` (ESP with PFS group).
- ``parse_proposal(text, kind) -> Proposal`` raising ``ProposalError`` with a reason that names
  the bad token; ``parse_proposals`` for a comma-separated list.
- ``format_proposal(p) -> str``: the shortest keyword form that parses back to ``p``.
- ``default_proposals(kind) -> tuple[Proposal, ...]``.
- Per-id metadata lookups: ``encr_info``, ``integ_info``, ``prf_info``, ``dh_info`` (KeyError
  for unsupported IDs) and ``algorithm_name`` (display names as strongSwan prints them).

This module imports nothing beyond the standard library, so Ansible controller code can use it
without ``cryptography`` installed.

Proposal rules (strongSwan's ``proposal_create_from_string``/``check_proposal``):

- tokens are separated by ``-``; several algorithms of one type are alternatives in preference
  order; the order of types does not matter;
- IKE: without an explicit ``prfX``, each integrity keyword implies the PRF of the same hash;
  a PRF and at least one DH group are mandatory; classic ciphers need an integrity algorithm;
- AEAD and classic ciphers cannot share a proposal; with AEAD ciphers integrity keywords are
  dropped (in IKE they still imply the PRF, as in strongSwan);
- ESP: a DH group means PFS on CREATE_CHILD_SA; ESN defaults to ``noesn``; ``prfX`` and ESN
  keywords outside their kind are refused (strongSwan silently drops a PRF in ESP; we refuse).
"""

from __future__ import annotations

import re
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
    keyword: (
        str  # canonical strongSwan keyword, e.g. "aes256gcm16", "sha256", "prfsha256", "x25519"
    )
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


# --- IANA IKEv2 transform IDs (RFC 7296 3.3.2 and the IANA "IKEv2 Parameters" registry) -------


class EncrId(IntEnum):
    ENCR_AES_CBC = 12
    ENCR_AES_GCM_8 = 18  # RFC 5282 ("AES-GCM with an 8 octet ICV")
    ENCR_AES_GCM_12 = 19
    ENCR_AES_GCM_16 = 20
    ENCR_CHACHA20_POLY1305 = 28  # RFC 7634


class IntegId(IntEnum):
    AUTH_HMAC_SHA1_96 = 2
    AUTH_HMAC_SHA2_256_128 = 12  # RFC 4868
    AUTH_HMAC_SHA2_384_192 = 13
    AUTH_HMAC_SHA2_512_256 = 14


class PrfId(IntEnum):
    PRF_HMAC_SHA1 = 2
    PRF_HMAC_SHA2_256 = 5  # RFC 4868
    PRF_HMAC_SHA2_384 = 6
    PRF_HMAC_SHA2_512 = 7


class DhId(IntEnum):
    MODP_2048 = 14  # RFC 3526
    MODP_3072 = 15
    MODP_4096 = 16
    MODP_6144 = 17
    MODP_8192 = 18
    ECP_256 = 19  # RFC 5903
    ECP_384 = 20
    ECP_521 = 21
    CURVE25519 = 31  # RFC 8031


class EsnId(IntEnum):
    NO_ESN = 0
    ESN = 1


_AES = (128, 192, 256)

_ENCR: dict[int, EncrInfo] = {
    i.id: i
    for i in (
        EncrInfo(EncrId.ENCR_AES_CBC, "ENCR_AES_CBC", False, _AES, 0, 16, 16, 0),
        EncrInfo(EncrId.ENCR_AES_GCM_8, "ENCR_AES_GCM_8", True, _AES, 4, 8, 1, 8),
        EncrInfo(EncrId.ENCR_AES_GCM_12, "ENCR_AES_GCM_12", True, _AES, 4, 8, 1, 12),
        EncrInfo(EncrId.ENCR_AES_GCM_16, "ENCR_AES_GCM_16", True, _AES, 4, 8, 1, 16),
        EncrInfo(
            EncrId.ENCR_CHACHA20_POLY1305, "ENCR_CHACHA20_POLY1305", True, (256,), 4, 8, 1, 16
        ),
    )
}

_INTEG: dict[int, IntegInfo] = {
    i.id: i
    for i in (
        IntegInfo(IntegId.AUTH_HMAC_SHA1_96, "AUTH_HMAC_SHA1_96", "sha1", 20, 12),
        IntegInfo(IntegId.AUTH_HMAC_SHA2_256_128, "AUTH_HMAC_SHA2_256_128", "sha256", 32, 16),
        IntegInfo(IntegId.AUTH_HMAC_SHA2_384_192, "AUTH_HMAC_SHA2_384_192", "sha384", 48, 24),
        IntegInfo(IntegId.AUTH_HMAC_SHA2_512_256, "AUTH_HMAC_SHA2_512_256", "sha512", 64, 32),
    )
}

_PRF: dict[int, PrfInfo] = {
    i.id: i
    for i in (
        PrfInfo(PrfId.PRF_HMAC_SHA1, "PRF_HMAC_SHA1", "sha1", 20),
        PrfInfo(PrfId.PRF_HMAC_SHA2_256, "PRF_HMAC_SHA2_256", "sha256", 32),
        PrfInfo(PrfId.PRF_HMAC_SHA2_384, "PRF_HMAC_SHA2_384", "sha384", 48),
        PrfInfo(PrfId.PRF_HMAC_SHA2_512, "PRF_HMAC_SHA2_512", "sha512", 64),
    )
}

_DH: dict[int, DhInfo] = {
    i.id: i
    for i in (
        DhInfo(DhId.MODP_2048, "MODP_2048", 256),
        DhInfo(DhId.MODP_3072, "MODP_3072", 384),
        DhInfo(DhId.MODP_4096, "MODP_4096", 512),
        DhInfo(DhId.MODP_6144, "MODP_6144", 768),
        DhInfo(DhId.MODP_8192, "MODP_8192", 1024),
        DhInfo(DhId.ECP_256, "ECP_256", 64),  # x | y, 32 octets each (RFC 5903 section 7)
        DhInfo(DhId.ECP_384, "ECP_384", 96),
        DhInfo(DhId.ECP_521, "ECP_521", 132),
        DhInfo(DhId.CURVE25519, "CURVE25519", 32),  # RFC 8031
    )
}

# The integrity algorithm -> PRF of the same hash, implied in IKE proposals without a prfX.
_INTEG_PRF: dict[int, int] = {
    IntegId.AUTH_HMAC_SHA1_96: PrfId.PRF_HMAC_SHA1,
    IntegId.AUTH_HMAC_SHA2_256_128: PrfId.PRF_HMAC_SHA2_256,
    IntegId.AUTH_HMAC_SHA2_384_192: PrfId.PRF_HMAC_SHA2_384,
    IntegId.AUTH_HMAC_SHA2_512_256: PrfId.PRF_HMAC_SHA2_512,
}


# --- The keyword table: canonical keyword, transform, strongSwan aliases ------------------------


@dataclass(frozen=True, slots=True)
class _Row:
    algorithm: Algorithm
    aliases: tuple[str, ...] = ()


def _row(keyword: str, t: TransformType, id_: int, bits: int | None = None, *aliases: str) -> _Row:
    return _Row(Algorithm(keyword, t, int(id_), bits), aliases)


_E, _I, _P, _D, _S = (
    TransformType.ENCR,
    TransformType.INTEG,
    TransformType.PRF,
    TransformType.DH,
    TransformType.ESN,
)


def _gcm_rows() -> list[_Row]:
    rows = []
    for bits in _AES:
        rows.append(
            _row(
                f"aes{bits}gcm16",
                _E,
                EncrId.ENCR_AES_GCM_16,
                bits,
                f"aes{bits}gcm128",
                f"aes{bits}gcm",
            )
        )
        rows.append(_row(f"aes{bits}gcm12", _E, EncrId.ENCR_AES_GCM_12, bits, f"aes{bits}gcm96"))
        rows.append(_row(f"aes{bits}gcm8", _E, EncrId.ENCR_AES_GCM_8, bits, f"aes{bits}gcm64"))
    return rows


TABLE: tuple[_Row, ...] = (
    _row("aes128", _E, EncrId.ENCR_AES_CBC, 128, "aes"),
    _row("aes192", _E, EncrId.ENCR_AES_CBC, 192),
    _row("aes256", _E, EncrId.ENCR_AES_CBC, 256),
    *_gcm_rows(),
    _row("chacha20poly1305", _E, EncrId.ENCR_CHACHA20_POLY1305),
    _row("sha1", _I, IntegId.AUTH_HMAC_SHA1_96, None, "sha"),
    _row("sha256", _I, IntegId.AUTH_HMAC_SHA2_256_128, None, "sha2_256"),
    _row("sha384", _I, IntegId.AUTH_HMAC_SHA2_384_192, None, "sha2_384"),
    _row("sha512", _I, IntegId.AUTH_HMAC_SHA2_512_256, None, "sha2_512"),
    _row("prfsha1", _P, PrfId.PRF_HMAC_SHA1),
    _row("prfsha256", _P, PrfId.PRF_HMAC_SHA2_256, None, "prfsha2_256"),
    _row("prfsha384", _P, PrfId.PRF_HMAC_SHA2_384, None, "prfsha2_384"),
    _row("prfsha512", _P, PrfId.PRF_HMAC_SHA2_512, None, "prfsha2_512"),
    _row("modp2048", _D, DhId.MODP_2048),
    _row("modp3072", _D, DhId.MODP_3072),
    _row("modp4096", _D, DhId.MODP_4096),
    _row("modp6144", _D, DhId.MODP_6144),
    _row("modp8192", _D, DhId.MODP_8192),
    _row("ecp256", _D, DhId.ECP_256),
    _row("ecp384", _D, DhId.ECP_384),
    _row("ecp521", _D, DhId.ECP_521),
    _row("x25519", _D, DhId.CURVE25519, None, "curve25519"),
    _row("esn", _S, EsnId.ESN),
    _row("noesn", _S, EsnId.NO_ESN),
)

_BY_KEYWORD: dict[str, Algorithm] = {}
for _r in TABLE:
    for _k in (_r.algorithm.keyword, *_r.aliases):
        _BY_KEYWORD[_k] = _r.algorithm
_BY_WIRE: dict[tuple[TransformType, int, int | None], Algorithm] = {
    (r.algorithm.type, r.algorithm.id, r.algorithm.key_bits): r.algorithm for r in TABLE
}

_PRF_ALG: dict[int, Algorithm] = {
    r.algorithm.id: r.algorithm for r in TABLE if r.algorithm.type is TransformType.PRF
}

# Keywords strongSwan knows that we refuse, and why.
_WEAK_KEYWORDS = (
    "des 3des null md5 md5_128 prfmd5 sha1_160 modp768 modp1024 modp1536 modp1024s160"
    " modp2048s224 modp2048s256 blowfish blowfish128 blowfish192 blowfish256 cast128 ecp192"
)
_WEAK: dict[str, str] = {k: "weak algorithm, not supported" for k in _WEAK_KEYWORDS.split()}
_UNSUPPORTED = re.compile(
    r"^(aes\d*(ccm|ctr|gmac)\d*|camellia\w*|aesxcbc|aescmac|prfaesxcbc|prfaescmac|prfcamelliaxcbc"
    r"|sha256_96|sha\d+_\d+|ecp224|ecp\d+bp|x448|curve448|ntru\w*|newhope\w*|mlkem\w*|ke\d_\w+"
    r"|serpent\w*|twofish\w*|idea|rc5|cast\w*|modpnone|sha3_\d+|prfsha3_\d+|identity)$"
)


def lookup(keyword: str) -> Algorithm:
    """The algorithm a single keyword names, or ProposalError saying why not."""
    token = keyword.strip().lower()
    alg = _BY_KEYWORD.get(token)
    if alg is not None:
        return alg
    if not token:
        raise ProposalError("empty algorithm keyword")
    if token in _WEAK:
        raise ProposalError(f"{token}: {_WEAK[token]}")
    if _UNSUPPORTED.match(token):
        raise ProposalError(f"{token}: algorithm not supported")
    raise ProposalError(f"{token}: unknown algorithm keyword")


def algorithm_from_wire(
    type_: TransformType, id_: int, key_bits: int | None = None
) -> Algorithm | None:
    """The table's Algorithm for a received transform, or None if we do not support it."""
    return _BY_WIRE.get((TransformType(type_), int(id_), key_bits))


def _dedup(algs: list[Algorithm]) -> tuple[Algorithm, ...]:
    seen: set[tuple[int, int | None]] = set()
    out = []
    for a in algs:
        if (a.id, a.key_bits) not in seen:
            seen.add((a.id, a.key_bits))
            out.append(a)
    return tuple(out)


def parse_proposal(text: str, kind: Kind) -> Proposal:
    """Parse one strongSwan proposal keyword string for IKE or ESP (rules in the module doc)."""
    if not isinstance(text, str) or not text.strip():
        raise ProposalError("empty proposal")
    by_type: dict[TransformType, list[Algorithm]] = {t: [] for t in TransformType}
    for raw in text.strip().split("-"):
        token = raw.strip().lower()
        if not token:
            raise ProposalError(f"{text!r}: empty algorithm keyword")
        alg = lookup(token)
        if kind is Kind.IKE and alg.type is TransformType.ESN:
            raise ProposalError(f"{token}: ESN is not negotiated for IKE SAs")
        if kind is Kind.ESP and alg.type is TransformType.PRF:
            raise ProposalError(f"{token}: a PRF is not negotiated for ESP")
        by_type[alg.type].append(alg)

    encr = _dedup(by_type[TransformType.ENCR])
    integ = _dedup(by_type[TransformType.INTEG])
    prf = _dedup(by_type[TransformType.PRF])
    dh = _dedup(by_type[TransformType.DH])
    esn = _dedup(by_type[TransformType.ESN])

    if not encr:
        raise ProposalError(f"{text}: an encryption algorithm is mandatory")
    aead = [a for a in encr if _ENCR[a.id].aead]
    classic = [a for a in encr if not _ENCR[a.id].aead]
    if aead and classic:
        raise ProposalError(
            f"{aead[0].keyword}, {classic[0].keyword}: AEAD and classic encryption algorithms "
            "cannot be mixed in one proposal"
        )
    if kind is Kind.IKE and not prf:
        prf = _dedup([_PRF_ALG[_INTEG_PRF[a.id]] for a in integ])
    if aead:
        integ = ()  # RFC 7296 3.3: combined-mode ciphers are proposed without integrity
    elif not integ:
        raise ProposalError(
            f"{classic[0].keyword}: an integrity algorithm is mandatory with a classic (non-AEAD) cipher"
        )
    if kind is Kind.IKE:
        if not prf:
            raise ProposalError(
                f"{aead[0].keyword}: a PRF (prfX) is mandatory in IKE proposals with an AEAD cipher"
            )
        if not dh:
            raise ProposalError(f"{text}: a DH group is mandatory in IKE proposals")
    else:
        esn = esn or (_BY_KEYWORD["noesn"],)
    return Proposal(encr=encr, integ=integ, prf=prf, dh=dh, esn=esn)


def parse_proposals(text: str, kind: Kind) -> tuple[Proposal, ...]:
    """Comma-separated proposals, as in swanctl.conf ``proposals = a-b-c, d-e-f``."""
    parts = [p.strip() for p in text.split(",")]
    if not any(parts):
        raise ProposalError("empty proposal list")
    return tuple(parse_proposal(p, kind) for p in parts)


def format_proposal(p: Proposal) -> str:
    """The shortest canonical keyword form that parses back to ``p``.

    PRFs implied by the integrity algorithms and the default ``noesn`` are left out.
    """
    implied = tuple(
        dict.fromkeys(_PRF_ALG[_INTEG_PRF[a.id]] for a in p.integ if a.id in _INTEG_PRF)
    )
    prf = () if p.integ and p.prf == implied else p.prf
    esn = () if p.esn == (_BY_KEYWORD["noesn"],) else p.esn
    return "-".join(a.keyword for a in p.encr + p.integ + prf + p.dh + esn)


_DEFAULTS: dict[Kind, tuple[str, ...]] = {
    Kind.IKE: (
        "aes256gcm16-aes128gcm16-chacha20poly1305-prfsha256-prfsha384-prfsha512"
        "-x25519-ecp256-ecp384-modp3072-modp2048",
        "aes256-aes128-sha256-sha384-sha512-x25519-ecp256-ecp384-modp3072-modp2048",
    ),
    Kind.ESP: (
        "aes256gcm16-aes128gcm16-chacha20poly1305",
        "aes256-aes128-sha256-sha384-sha512",
    ),
}


def default_proposals(kind: Kind) -> tuple[Proposal, ...]:
    """Modern defaults: AEAD first, then AES-CBC with HMAC-SHA2; x25519 preferred."""
    return tuple(parse_proposal(t, kind) for t in _DEFAULTS[kind])


# --- Metadata lookups -------------------------------------------------------------------------


def encr_info(id_: int) -> EncrInfo:
    return _ENCR[int(id_)]


def integ_info(id_: int) -> IntegInfo:
    return _INTEG[int(id_)]


def prf_info(id_: int) -> PrfInfo:
    return _PRF[int(id_)]


def dh_info(id_: int) -> DhInfo:
    return _DH[int(id_)]


def encr_key_len(id_: int, key_bits: int | None) -> int:
    """Octets of key material the cipher takes: the key plus the AEAD salt (RFC 5282, 7634)."""
    info = _ENCR[int(id_)]
    bits = key_bits if key_bits else (info.key_bits[0] if len(info.key_bits) == 1 else None)
    if bits not in info.key_bits:
        raise ValueError(f"{info.name}: unsupported key length {key_bits}")
    return bits // 8 + info.salt_len


_DISPLAY: dict[tuple[TransformType, int], str] = {
    (_E, EncrId.ENCR_AES_CBC): "AES_CBC",
    (_E, EncrId.ENCR_AES_GCM_8): "AES_GCM_8",
    (_E, EncrId.ENCR_AES_GCM_12): "AES_GCM_12",
    (_E, EncrId.ENCR_AES_GCM_16): "AES_GCM_16",
    (_E, EncrId.ENCR_CHACHA20_POLY1305): "CHACHA20_POLY1305",
    (_E, 3): "3DES_CBC",
    (_E, 11): "NULL",
    (_E, 13): "AES_CTR",
    (_E, 14): "AES_CCM_8",
    (_E, 15): "AES_CCM_12",
    (_E, 16): "AES_CCM_16",
    (_I, 1): "HMAC_MD5_96",
    (_I, IntegId.AUTH_HMAC_SHA1_96): "HMAC_SHA1_96",
    (_I, 5): "AES_XCBC_96",
    (_I, 8): "AES_CMAC_96",
    (_I, IntegId.AUTH_HMAC_SHA2_256_128): "HMAC_SHA2_256_128",
    (_I, IntegId.AUTH_HMAC_SHA2_384_192): "HMAC_SHA2_384_192",
    (_I, IntegId.AUTH_HMAC_SHA2_512_256): "HMAC_SHA2_512_256",
    (_P, 1): "PRF_HMAC_MD5",
    (_P, PrfId.PRF_HMAC_SHA1): "PRF_HMAC_SHA1",
    (_P, 4): "PRF_AES128_XCBC",
    (_P, PrfId.PRF_HMAC_SHA2_256): "PRF_HMAC_SHA2_256",
    (_P, PrfId.PRF_HMAC_SHA2_384): "PRF_HMAC_SHA2_384",
    (_P, PrfId.PRF_HMAC_SHA2_512): "PRF_HMAC_SHA2_512",
    (_P, 8): "PRF_AES128_CMAC",
    (_D, 0): "NONE",
    (_D, 1): "MODP_768",
    (_D, 2): "MODP_1024",
    (_D, 5): "MODP_1536",
    (_D, DhId.MODP_2048): "MODP_2048",
    (_D, DhId.MODP_3072): "MODP_3072",
    (_D, DhId.MODP_4096): "MODP_4096",
    (_D, DhId.MODP_6144): "MODP_6144",
    (_D, DhId.MODP_8192): "MODP_8192",
    (_D, DhId.ECP_256): "ECP_256",
    (_D, DhId.ECP_384): "ECP_384",
    (_D, DhId.ECP_521): "ECP_521",
    (_D, DhId.CURVE25519): "CURVE_25519",
    (_D, 32): "CURVE_448",
    (_S, EsnId.NO_ESN): "NO_EXT_SEQ",
    (_S, EsnId.ESN): "EXT_SEQ",
}


def algorithm_name(type_: TransformType, id_: int, key_bits: int | None = None) -> str:
    """Display name as strongSwan lists it: "AES_GCM_16_256", "PRF_HMAC_SHA2_256", "CURVE_25519".

    Never raises: unknown transforms read "UNKNOWN_<type>_<id>" (strongSwan's form), so a
    peer's offer can always be shown.
    """
    try:
        name = _DISPLAY.get((TransformType(type_), int(id_)))
    except ValueError:
        name = None
    if name is None:
        name = f"UNKNOWN_{int(type_)}_{int(id_)}"
    return f"{name}_{key_bits}" if key_bits else name
