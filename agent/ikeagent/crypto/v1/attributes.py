"""IKEv1 SA attributes (RFC 2409 appendix A, RFC 2407 4.4.4 / 4.5) and their mapping to the
suite table (``ikeagent.crypto.suites``), so IKEv1 keeps the IKEv2 ``Algorithm`` values that the
data plane and the listings share.

Supported, as in the suite table (weak algorithms are refused by name):

- IKE (Phase 1): AES-CBC 128/192/256 with KEY_LENGTH (RFC 3602 5.3), HASH_ALGORITHM SHA,
  SHA2_256/384/512 (RFC 4868 section 3 / IANA), the DH groups of the suite table by their
  common number (RFC 3526, 5903, 8031: x25519 = 31). A strongSwan proposal such as
  ``aes256-sha256-modp2048`` maps to ENCRYPTION_ALGORITHM=AES_CBC, KEY_LENGTH=256,
  HASH_ALGORITHM=SHA2_256, GROUP_DESCRIPTION=14: the hash is the proposal's PRF (implied by the
  integrity keyword, or an explicit ``prfX``). IKEv1 has no AEAD for IKE: GCM/ChaCha20 are
  refused in IKE proposals.
- ESP (Quick Mode): ESP_AES_CBC with AUTHENTICATION_ALGORITHM HMAC_SHA / HMAC_SHA2_256/384/512
  (RFC 4868 section 3.2: 5/6/7), ESP_AES_GCM_8/12/16 (RFC 4106 section 8.1: 18/19/20, KEY_LENGTH
  required, no authentication algorithm), optional PFS group, ESN (RFC 4304), encapsulation
  modes incl. UDP (RFC 3947: 3/4, and the draft values 61443/61444 that strongSwan accepts).

Attributes are ``(type, value)`` pairs as the wire layer's ``Attribute`` carries them; a value
is an int (TV) or big-endian bytes (TLV).
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from enum import IntEnum

from ikeagent.crypto import suites
from ikeagent.crypto.suites import Algorithm, EncrId, IntegId, PrfId, TransformType
from ikeagent.crypto.v1.iana import (
    UDP_ENCAPSULATION,
    AuthAlgorithm,
    AuthMethod,
    EncapsulationMode,
    EspTransformId,
    IkeAttr,
    IkeEncr,
    IkeHash,
    IpsecAttr,
    LifeType,
    encap_mode,
    is_tunnel,
    is_udp_encapsulated,
)

__all__ = [
    "AttrValue",
    "Attrs",
    "AuthAlgorithm",
    "AuthMethod",
    "EncapsulationMode",
    "EspTransform",
    "EspTransformId",
    "IkeAttr",
    "IkeEncr",
    "IkeHash",
    "IkeTransform",
    "IpsecAttr",
    "LifeType",
    "UDP_ENCAPSULATION",
    "Unsupported",
    "encap_mode",
    "esp_from_wire",
    "esp_transforms",
    "from_attributes",
    "ike_transforms",
    "is_tunnel",
    "is_udp_encapsulated",
]

AttrValue = int | bytes
Attrs = tuple[tuple[int, AttrValue], ...]


class Unsupported(ValueError):
    """An SA attribute or transform we do not accept; the message names it and its value."""


# --- Mapping tables (IKEv2 id in the suite table <-> IKEv1 value) -----------------------------

_IKE_ENCR: dict[int, IkeEncr] = {EncrId.ENCR_AES_CBC: IkeEncr.AES_CBC}
_IKE_HASH: dict[int, IkeHash] = {
    PrfId.PRF_HMAC_SHA1: IkeHash.SHA,
    PrfId.PRF_HMAC_SHA2_256: IkeHash.SHA2_256,
    PrfId.PRF_HMAC_SHA2_384: IkeHash.SHA2_384,
    PrfId.PRF_HMAC_SHA2_512: IkeHash.SHA2_512,
}
_ESP_ID: dict[int, EspTransformId] = {
    EncrId.ENCR_AES_CBC: EspTransformId.ESP_AES_CBC,
    EncrId.ENCR_AES_GCM_8: EspTransformId.ESP_AES_GCM_8,
    EncrId.ENCR_AES_GCM_12: EspTransformId.ESP_AES_GCM_12,
    EncrId.ENCR_AES_GCM_16: EspTransformId.ESP_AES_GCM_16,
}
_AUTH_ALG: dict[int, AuthAlgorithm] = {
    IntegId.AUTH_HMAC_SHA1_96: AuthAlgorithm.HMAC_SHA,
    IntegId.AUTH_HMAC_SHA2_256_128: AuthAlgorithm.HMAC_SHA2_256,
    IntegId.AUTH_HMAC_SHA2_384_192: AuthAlgorithm.HMAC_SHA2_384,
    IntegId.AUTH_HMAC_SHA2_512_256: AuthAlgorithm.HMAC_SHA2_512,
}
_IKE_ENCR_V2 = {v: k for k, v in _IKE_ENCR.items()}
_IKE_HASH_V2 = {v: k for k, v in _IKE_HASH.items()}
_ESP_ID_V2 = {v: k for k, v in _ESP_ID.items()}
_AUTH_ALG_V2 = {v: k for k, v in _AUTH_ALG.items()}

_WEAK_IKE_ENCR = {
    IkeEncr.DES_CBC,
    IkeEncr.IDEA_CBC,
    IkeEncr.BLOWFISH_CBC,
    IkeEncr.RC5_R16_B64_CBC,
    IkeEncr.TRIPLE_DES_CBC,
    IkeEncr.CAST_CBC,
}
_WEAK_HASH = {IkeHash.MD5, IkeHash.TIGER}
_WEAK_ESP = {
    EspTransformId.ESP_DES_IV64,
    EspTransformId.ESP_DES,
    EspTransformId.ESP_3DES,
    EspTransformId.ESP_RC5,
    EspTransformId.ESP_IDEA,
    EspTransformId.ESP_CAST,
    EspTransformId.ESP_BLOWFISH,
    EspTransformId.ESP_3IDEA,
    EspTransformId.ESP_DES_IV32,
    EspTransformId.ESP_RC4,
    EspTransformId.ESP_NULL,
}
_WEAK_AUTH = {AuthAlgorithm.HMAC_MD5, AuthAlgorithm.DES_MAC, AuthAlgorithm.KPDK}
_WEAK_GROUPS = {1, 2, 5, 22, 23, 24}  # MODP 768/1024/1536 and the RFC 5114 MODP groups

# --- helpers ------------------------------------------------------------------------------------


def _name(enum: type[IntEnum], value: int) -> str:
    try:
        return enum(value).name
    except ValueError:
        return str(value)


def _int(attr: str, value: AttrValue) -> int:
    if isinstance(value, int):
        return value
    if not value or len(value) > 8:
        raise Unsupported(f"{attr}: a value of {len(value)} octets is not a number")
    return int.from_bytes(value, "big")


def _group(attr: str, group: int) -> Algorithm:
    alg = suites.algorithm_from_wire(TransformType.DH, group)
    if alg is not None:
        return alg
    name = suites.algorithm_name(TransformType.DH, group)
    if group in _WEAK_GROUPS:
        raise Unsupported(f"{attr} {group} ({name}): weak group, not supported")
    if name.startswith("UNKNOWN"):
        raise Unsupported(f"{attr} {group}: unknown group")
    raise Unsupported(f"{attr} {group} ({name}): group not supported")


def _check_dh(alg: Algorithm | None) -> None:
    if alg is not None and (
        alg.type is not TransformType.DH
        or suites.algorithm_from_wire(TransformType.DH, alg.id) is None
    ):
        raise Unsupported(f"{alg.keyword}: not a supported DH group")


def _life(lt: int, seconds: int | None, kbytes: int | None) -> list[tuple[int, AttrValue]]:
    out: list[tuple[int, AttrValue]] = []
    if seconds is not None:
        out += [(lt, LifeType.SECONDS), (lt + 1, int(seconds))]
    if kbytes is not None:
        out += [(lt, LifeType.KILOBYTES), (lt + 1, int(kbytes))]
    return out


class _Collector:
    """Reads an attribute list: single-valued attributes once, life type/duration in pairs."""

    def __init__(self, attrs: Sequence[tuple[int, AttrValue]], enum: type[IntEnum], life: int):
        self.values: dict[int, AttrValue] = {}
        self.life: dict[int, int] = {}
        current: int | None = None
        for raw_type, value in attrs:
            t = int(raw_type)
            name = _name(enum, t)
            if t == life:
                current = _int(name, value)
                if current not in (LifeType.SECONDS, LifeType.KILOBYTES):
                    raise Unsupported(f"{name} {current}: unknown life type")
                continue
            if t == life + 1:
                if current is None:
                    raise Unsupported(f"{name} without a preceding life type")
                duration = _int(name, value)
                if duration <= 0:
                    raise Unsupported(f"{name} {duration}: not a positive lifetime")
                self.life[current] = duration
                current = None
                continue
            if t in self.values:
                raise Unsupported(f"{name}: attribute repeated")
            self.values[t] = value
        self.enum = enum

    def pop(self, t: int) -> int | None:
        value = self.values.pop(int(t), None)
        return None if value is None else _int(_name(self.enum, t), value)

    def need(self, t: int) -> int:
        value = self.pop(t)
        if value is None:
            raise Unsupported(f"{_name(self.enum, t)}: mandatory attribute missing")
        return value

    def finish(self) -> None:
        for t, value in self.values.items():
            shown = value if isinstance(value, int) else f"<{len(value)} octets>"
            raise Unsupported(f"{_name(self.enum, t)} {shown}: attribute not supported")


# --- Phase 1 ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class IkeTransform:
    """One Phase 1 transform: one algorithm per type (RFC 2409 appendix A)."""

    encr: Algorithm
    hash: Algorithm  # a suites PRF algorithm, e.g. prfsha256
    dh: Algorithm
    auth_method: int
    life_seconds: int | None = None
    life_kbytes: int | None = None

    def __post_init__(self) -> None:
        if self.encr.type is not TransformType.ENCR or self.encr.id not in _IKE_ENCR:
            raise Unsupported(
                f"{self.encr.keyword}: not an IKEv1 encryption algorithm (IKEv1 has no AEAD "
                "ciphers for the IKE SA; use e.g. aes256-sha256-modp2048)"
            )
        if self.hash.type is not TransformType.PRF or self.hash.id not in _IKE_HASH:
            raise Unsupported(f"{self.hash.keyword}: not an IKEv1 hash algorithm")
        if self.dh.type is not TransformType.DH:
            raise Unsupported(f"{self.dh.keyword}: not a DH group")
        _check_dh(self.dh)

    @property
    def encr_id(self) -> int:
        """ENCRYPTION_ALGORITHM value."""
        return int(_IKE_ENCR[self.encr.id])

    @property
    def hash_id(self) -> int:
        """HASH_ALGORITHM value (the argument of the ``keymat`` functions)."""
        return int(_IKE_HASH[self.hash.id])

    @property
    def key_len(self) -> int:
        """Octets of the encryption key Ka."""
        return (self.encr.key_bits or 0) // 8

    def to_attributes(self) -> Attrs:
        out: list[tuple[int, AttrValue]] = [(IkeAttr.ENCRYPTION_ALGORITHM, self.encr_id)]
        if self.encr.key_bits:
            out.append((IkeAttr.KEY_LENGTH, self.encr.key_bits))
        out += [
            (IkeAttr.HASH_ALGORITHM, self.hash_id),
            (IkeAttr.AUTHENTICATION_METHOD, int(self.auth_method)),
            (IkeAttr.GROUP_DESCRIPTION, self.dh.id),
        ]
        out += _life(IkeAttr.LIFE_TYPE, self.life_seconds, self.life_kbytes)
        return tuple((int(t), v if isinstance(v, bytes) else int(v)) for t, v in out)

    def to_proposal(self) -> suites.Proposal:
        """The transform as a one-algorithm-per-type suites Proposal (for listings)."""
        return suites.Proposal(encr=(self.encr,), prf=(self.hash,), dh=(self.dh,))


def from_attributes(attrs: Sequence[tuple[int, AttrValue]]) -> IkeTransform:
    """A received Phase 1 transform's attributes -> IkeTransform, or Unsupported naming the
    attribute and value we cannot accept."""
    c = _Collector(attrs, IkeAttr, IkeAttr.LIFE_TYPE)
    for private in (
        IkeAttr.GROUP_TYPE,
        IkeAttr.GROUP_PRIME,
        IkeAttr.GROUP_GENERATOR_ONE,
        IkeAttr.GROUP_GENERATOR_TWO,
        IkeAttr.GROUP_CURVE_A,
        IkeAttr.GROUP_CURVE_B,
        IkeAttr.FIELD_SIZE,
        IkeAttr.GROUP_ORDER,
    ):
        if private in c.values:
            raise Unsupported(f"{private.name}: private (new group mode) groups not supported")
    if IkeAttr.PRF in c.values:
        raise Unsupported(f"PRF {c.pop(IkeAttr.PRF)}: no IKEv1 PRF attribute values are defined")

    encr_v1 = c.need(IkeAttr.ENCRYPTION_ALGORITHM)
    encr_name = _name(IkeEncr, encr_v1)
    if encr_v1 in _WEAK_IKE_ENCR:
        raise Unsupported(f"ENCRYPTION_ALGORITHM {encr_name}: weak algorithm, not supported")
    if encr_v1 not in _IKE_ENCR_V2:
        raise Unsupported(f"ENCRYPTION_ALGORITHM {encr_name}: not supported")
    bits = c.pop(IkeAttr.KEY_LENGTH)
    if bits is None:
        raise Unsupported(f"KEY_LENGTH: mandatory with {encr_name} (RFC 3602 5.3)")
    encr = suites.algorithm_from_wire(TransformType.ENCR, _IKE_ENCR_V2[IkeEncr(encr_v1)], bits)
    if encr is None:
        raise Unsupported(f"KEY_LENGTH {bits}: not a key length of {encr_name}")

    hash_v1 = c.need(IkeAttr.HASH_ALGORITHM)
    hash_name = _name(IkeHash, hash_v1)
    if hash_v1 in _WEAK_HASH:
        raise Unsupported(f"HASH_ALGORITHM {hash_name}: weak algorithm, not supported")
    if hash_v1 not in _IKE_HASH_V2:
        raise Unsupported(f"HASH_ALGORITHM {hash_name}: not supported")
    hash_alg = suites.algorithm_from_wire(TransformType.PRF, _IKE_HASH_V2[IkeHash(hash_v1)])
    if hash_alg is None:  # every mapped PRF is in the suite table; kept for safety
        raise Unsupported(f"HASH_ALGORITHM {hash_name}: not supported")

    auth = c.need(IkeAttr.AUTHENTICATION_METHOD)
    if auth not in AuthMethod._value2member_map_:
        raise Unsupported(f"AUTHENTICATION_METHOD {auth}: unknown authentication method")
    dh = _group("GROUP_DESCRIPTION", c.need(IkeAttr.GROUP_DESCRIPTION))
    c.finish()
    return IkeTransform(
        encr=encr,
        hash=hash_alg,
        dh=dh,
        auth_method=auth,
        life_seconds=c.life.get(LifeType.SECONDS),
        life_kbytes=c.life.get(LifeType.KILOBYTES),
    )


def _check_count(n: int) -> None:
    if n > 255:
        raise Unsupported(f"the proposal expands to {n} IKEv1 transforms, more than 255")


def ike_transforms(
    proposal: suites.Proposal,
    auth_method: int,
    life_seconds: int | None,
    life_kbytes: int | None = None,
) -> list[IkeTransform]:
    """The Phase 1 transforms of a suites IKE proposal: every combination of encryption
    algorithm, hash (the proposal's PRFs) and group, in preference order (encryption first)."""
    aead = [a for a in proposal.encr if suites.encr_info(a.id).aead]
    if aead:
        raise Unsupported(
            f"{aead[0].keyword}: AEAD ciphers are not defined for IKEv1 IKE SAs; "
            "use e.g. aes256-sha256-modp2048"
        )
    if not proposal.prf:
        raise Unsupported(f"{proposal}: a hash (integrity or prf keyword) is mandatory in IKEv1")
    if not proposal.dh:
        raise Unsupported(f"{proposal}: a DH group is mandatory in IKEv1 proposals")
    out = [
        IkeTransform(e, h, d, auth_method, life_seconds, life_kbytes)
        for e, h, d in itertools.product(proposal.encr, proposal.prf, proposal.dh)
    ]
    _check_count(len(out))
    return out


# --- Phase 2 (ESP) ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class EspTransform:
    """One Quick Mode ESP transform (RFC 2407 4.4.4 / 4.5)."""

    encr: Algorithm
    integ: Algorithm | None
    dh: Algorithm | None  # PFS group
    encap_mode: int
    life_seconds: int | None = None
    life_kbytes: int | None = None
    esn: bool = False

    def __post_init__(self) -> None:
        if self.encr.type is not TransformType.ENCR or self.encr.id not in _ESP_ID:
            raise Unsupported(f"{self.encr.keyword}: not an IKEv1 ESP transform")
        aead = suites.encr_info(self.encr.id).aead
        if aead and self.integ is not None:
            raise Unsupported(
                f"{self.encr.keyword}: combined-mode cipher takes no authentication algorithm"
            )
        if not aead and self.integ is None:
            raise Unsupported(f"{self.encr.keyword}: an authentication algorithm is mandatory")
        if self.integ is not None and (
            self.integ.type is not TransformType.INTEG or self.integ.id not in _AUTH_ALG
        ):
            raise Unsupported(f"{self.integ.keyword}: not an IKEv1 ESP authentication algorithm")
        _check_dh(self.dh)
        if self.encap_mode not in EncapsulationMode._value2member_map_:
            raise Unsupported(f"ENCAPSULATION_MODE {self.encap_mode}: unknown mode")

    @property
    def transform_id(self) -> int:
        """ESP transform ID."""
        return int(_ESP_ID[self.encr.id])

    @property
    def auth_algorithm(self) -> int | None:
        """AUTHENTICATION_ALGORITHM value, None for combined-mode ciphers."""
        return None if self.integ is None else int(_AUTH_ALG[self.integ.id])

    def to_attributes(self) -> Attrs:
        out = _life(IpsecAttr.SA_LIFE_TYPE, self.life_seconds, self.life_kbytes)
        if self.dh is not None:
            out.append((IpsecAttr.GROUP_DESCRIPTION, self.dh.id))
        out.append((IpsecAttr.ENCAPSULATION_MODE, int(self.encap_mode)))
        if self.integ is not None:
            out.append((IpsecAttr.AUTHENTICATION_ALGORITHM, int(_AUTH_ALG[self.integ.id])))
        if self.encr.key_bits:
            out.append((IpsecAttr.KEY_LENGTH, self.encr.key_bits))
        if self.esn:
            out.append((IpsecAttr.EXTENDED_SEQUENCE_NUMBER, 1))
        return tuple((int(t), v if isinstance(v, bytes) else int(v)) for t, v in out)

    def to_proposal(self) -> suites.Proposal:
        """The transform as a suites Proposal (ESP kind) for the data plane and listings."""
        esn = suites.lookup("esn" if self.esn else "noesn")
        return suites.Proposal(
            encr=(self.encr,),
            integ=() if self.integ is None else (self.integ,),
            dh=() if self.dh is None else (self.dh,),
            esn=(esn,),
        )


def esp_from_wire(transform_id: int, attrs: Sequence[tuple[int, AttrValue]]) -> EspTransform:
    """A received ESP transform -> EspTransform, or Unsupported naming the bad value.

    Without ENCAPSULATION_MODE ("host-dependent", RFC 2407 4.5) tunnel mode is assumed."""
    tid = int(transform_id)
    tname = _name(EspTransformId, tid)
    if tid in _WEAK_ESP:
        raise Unsupported(f"ESP transform {tname}: weak algorithm, not supported")
    if tid not in _ESP_ID_V2:
        raise Unsupported(f"ESP transform {tname}: not supported")
    c = _Collector(attrs, IpsecAttr, IpsecAttr.SA_LIFE_TYPE)
    bits = c.pop(IpsecAttr.KEY_LENGTH)
    if bits is None:
        raise Unsupported(f"KEY_LENGTH: mandatory with {tname} (RFC 3602, RFC 4106)")
    encr = suites.algorithm_from_wire(TransformType.ENCR, _ESP_ID_V2[EspTransformId(tid)], bits)
    if encr is None:
        raise Unsupported(f"KEY_LENGTH {bits}: not a key length of {tname}")

    integ = None
    auth = c.pop(IpsecAttr.AUTHENTICATION_ALGORITHM)
    if auth is not None:
        aname = _name(AuthAlgorithm, auth)
        if auth in _WEAK_AUTH:
            raise Unsupported(f"AUTHENTICATION_ALGORITHM {aname}: weak algorithm, not supported")
        if auth not in _AUTH_ALG_V2:
            raise Unsupported(f"AUTHENTICATION_ALGORITHM {aname}: not supported")
        integ = suites.algorithm_from_wire(TransformType.INTEG, _AUTH_ALG_V2[AuthAlgorithm(auth)])
    aead = suites.encr_info(encr.id).aead
    if aead and integ is not None:
        raise Unsupported(f"AUTHENTICATION_ALGORITHM with {tname}: not allowed (RFC 4106 8.1)")
    if not aead and integ is None:
        raise Unsupported(f"AUTHENTICATION_ALGORITHM: mandatory with {tname}")

    group = c.pop(IpsecAttr.GROUP_DESCRIPTION)
    dh = None if group is None else _group("GROUP_DESCRIPTION", group)
    mode = c.pop(IpsecAttr.ENCAPSULATION_MODE)
    if mode is None:
        mode = EncapsulationMode.TUNNEL
    elif mode not in EncapsulationMode._value2member_map_:
        raise Unsupported(f"ENCAPSULATION_MODE {mode}: unknown mode")
    esn = c.pop(IpsecAttr.EXTENDED_SEQUENCE_NUMBER)
    if esn not in (None, 1):
        raise Unsupported(f"EXTENDED_SEQUENCE_NUMBER {esn}: unknown value")
    c.finish()
    return EspTransform(
        encr=encr,
        integ=integ,
        dh=dh,
        encap_mode=int(mode),
        life_seconds=c.life.get(LifeType.SECONDS),
        life_kbytes=c.life.get(LifeType.KILOBYTES),
        esn=esn == 1,
    )


def esp_transforms(
    proposal: suites.Proposal,
    encap_mode: int,
    life_seconds: int | None,
    life_kbytes: int | None = None,
) -> list[EspTransform]:
    """The Quick Mode ESP transforms of a suites ESP proposal: every combination of cipher,
    integrity algorithm (none for AEAD), PFS group and ESN setting, in preference order."""
    bad = [a for a in proposal.encr if a.id not in _ESP_ID]
    if bad:
        raise Unsupported(f"{bad[0].keyword}: not defined for ESP in IKEv1")
    integs: Sequence[Algorithm | None] = proposal.integ or (None,)
    groups: Sequence[Algorithm | None] = proposal.dh or (None,)
    esns = [a.id == suites.EsnId.ESN for a in proposal.esn] or [False]
    out = []
    for e, i, d, s in itertools.product(proposal.encr, integs, groups, esns):
        if suites.encr_info(e.id).aead:
            i = None
        t = EspTransform(e, i, d, encap_mode, life_seconds, life_kbytes, s)
        if t not in out:
            out.append(t)
    _check_count(len(out))
    return out
