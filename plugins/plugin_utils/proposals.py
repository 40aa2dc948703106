# Copyright: contributors to the ikelab.ipsec collection
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""IKE/ESP proposals on the controller: profiles, validation, rendering, negotiation.

Pure functions over the agent's own suite table (``ikeagent.crypto.suites``) and negotiation
rules (``ikeagent.crypto.negotiation``), made importable by ``agent_import``. Used by the
``ikelab.ipsec.proposal`` action plugin and by the site-to-site planner.

Public API:

- ``PROFILES``: profile name -> kind -> keyword proposals (``modern``, ``compat``).
- ``resolve(value, kind, allow_weak=False) -> tuple[Proposal, ...]``: a profile name, a
  comma-separated keyword string or a list of keyword proposals; raises ``ValueError``
  (``ProposalError``) naming the proposal, the token and the reason.
- ``keywords(proposals) -> list[str]``: the normalised keyword form of each proposal.
- ``swanctl(ike, esp) -> dict``: ``{"proposals": "a,b", "esp_proposals": "c,d"}``.
- ``negotiated(ours, peer, kind) -> dict``: ``{"as_initiator": kw, "as_responder": kw}``,
  ``ValueError`` when the two sides share nothing (naming what each offers).
- ``plan(ike, esp, allow_weak, peer) -> dict``: the proposal module's result.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from ansible_collections.ikelab.ipsec.plugins.plugin_utils.agent_import import ensure_importable

ensure_importable()

from ikeagent.crypto import negotiation, suites  # noqa: E402
from ikeagent.crypto.suites import Kind, Proposal, ProposalError, TransformType  # noqa: E402
from ikeagent.crypto.v1 import attributes as v1_attributes  # noqa: E402

# the profile IKEv1 gets when nothing names its proposals: modern is AEAD only, which IKEv1
# cannot use for the IKE SA
IKEV1_PROFILE = "compat"
DEFAULT_PROFILE = "modern"

# Profiles. The responder's order decides (see negotiation), so the strongest comes first.
#
# modern: AES-256-GCM (16-octet ICV) only, PRF HMAC-SHA2, Curve25519 first and NIST P-256 for
#   peers that need FIPS curves; ChaCha20-Poly1305 for hosts without AES instructions. ESP with
#   PFS on the same groups (a rekeyed Child SA gets a fresh key exchange).
# compat: for older peers without AEAD or Curve25519 (older strongSwan/Libreswan, Windows and
#   appliance IKEv2 stacks configured for SHA-2): AES-CBC with HMAC-SHA2-256 over MODP-2048 or
#   ECP-256, and ESP without PFS, the common default of such peers. Every proposal of it can be
#   expressed in IKEv1, so the planner gives it to IKEv1 tunnels whose proposals are not set.
PROFILES: dict[str, dict[Kind, tuple[str, ...]]] = {
    "modern": {
        Kind.IKE: (
            "aes256gcm16-prfsha384-x25519",
            "aes256gcm16-prfsha256-ecp256",
            "chacha20poly1305-prfsha256-x25519",
        ),
        Kind.ESP: (
            "aes256gcm16-x25519",
            "aes256gcm16-ecp256",
            "chacha20poly1305-x25519",
        ),
    },
    "compat": {
        Kind.IKE: (
            "aes256-sha256-modp2048",
            "aes256-sha256-ecp256",
            "aes128-sha256-modp2048",
        ),
        Kind.ESP: (
            "aes256-sha256",
            "aes128-sha256",
        ),
    },
}

_WEAK_REASON = "set allow_weak to accept it"

# Tokens refused as weak, with the reason. Those the agent does not implement at all stay
# refused with allow_weak (the suite table says so).
WEAK_TOKENS: dict[str, str] = {
    **{k: "DES/3DES: 64-bit block cipher" for k in ("des", "3des", "desiv32", "desiv64")},
    **{k: "64-bit block cipher" for k in ("blowfish", "blowfish128", "blowfish192")},
    **{k: "64-bit block cipher" for k in ("blowfish256", "cast128", "idea", "rc5")},
    "null": "null encryption (no confidentiality)",
    **{k: "MD5 is broken" for k in ("md5", "md5_128", "prfmd5")},
    **{k: "SHA-1 integrity (deprecated, RFC 8247)" for k in ("sha1", "sha", "sha1_160")},
    "prfsha1": "SHA-1 PRF (deprecated, RFC 8247)",
    **{k: "MODP group smaller than 2048 bits" for k in ("modp768", "modp1024", "modp1536")},
    **{
        k: "MODP group with a small subgroup (RFC 5114, RFC 8247 says MUST NOT)"
        for k in ("modp1024s160", "modp2048s224", "modp2048s256")
    },
    "ecp192": "elliptic curve smaller than 256 bits",
}

# Weak by what they are, whatever keyword named them: (type, transform ID).
_WEAK_ALGORITHMS: dict[tuple[TransformType, int], str] = {
    (TransformType.INTEG, suites.IntegId.AUTH_HMAC_SHA1_96): WEAK_TOKENS["sha1"],
    (TransformType.PRF, suites.PrfId.PRF_HMAC_SHA1): WEAK_TOKENS["prfsha1"],
}


def _kind(kind: Kind | str) -> Kind:
    if isinstance(kind, Kind):
        return kind
    try:
        return Kind(str(kind).lower())
    except ValueError:
        raise ValueError(f"{kind!r}: proposal kind must be 'ike' or 'esp'")


def _check_weak(text: str, kind: Kind, allow_weak: bool) -> None:
    """Refuse weak tokens of one proposal (unless allowed), naming proposal, token and reason."""
    for raw in text.split("-"):
        token = raw.strip().lower()
        if not token:
            continue
        reason = WEAK_TOKENS.get(token)
        if reason is None:
            try:
                alg = suites.lookup(token)
            except ProposalError:
                continue  # parse_proposal reports it
            reason = _WEAK_ALGORITHMS.get((alg.type, alg.id))
        if reason is None:
            continue
        if not allow_weak:
            raise ProposalError(
                f"{kind.value} proposal {text!r}: {token}: weak algorithm: {reason}; {_WEAK_REASON}"
            )
        try:
            suites.lookup(token)
        except ProposalError as e:
            raise ProposalError(
                f"{kind.value} proposal {text!r}: {e} ({reason}; the agent does not implement "
                "it, even with allow_weak)"
            )


def parse(text: str, kind: Kind | str, allow_weak: bool = False) -> Proposal:
    """One keyword proposal, validated by the agent's parser and the weak-algorithm policy."""
    k = _kind(kind)
    if not isinstance(text, str):
        raise ProposalError(f"{k.value} proposal {text!r}: must be a string of keywords")
    _check_weak(text, k, allow_weak)
    try:
        return suites.parse_proposal(text, k)
    except ProposalError as e:
        raise ProposalError(f"{k.value} proposal {text!r}: {e}")


def _type_name(value: Any) -> str:
    for types, name in ((bool, "a boolean"), ((int, float), "a number"), (Mapping, "a mapping")):
        if isinstance(value, types):
            return name
    return "null" if value is None else type(value).__name__


def _texts(value: Any, kind: Kind) -> list[str]:
    if isinstance(value, str):
        name = value.strip().lower()
        if name in PROFILES:
            return list(PROFILES[name][kind])
        items = [value]
    elif isinstance(value, Sequence):
        items = list(value)
    else:
        raise ProposalError(
            f"{kind.value} proposals: expected a profile name ({', '.join(PROFILES)}) or a list "
            f"of keyword proposals, got {_type_name(value)}"
        )
    texts: list[str] = []
    for item in items:
        if not isinstance(item, str):
            raise ProposalError(
                f"{kind.value} proposal {item!r}: must be a string of keywords (got "
                f"{_type_name(item)}) such as "
                f"{PROFILES['modern'][kind][0]!r}"
            )
        if item.strip().lower() in PROFILES:
            raise ProposalError(
                f"{kind.value} proposal {item!r}: a profile name is given alone, not in a list"
            )
        texts.extend(p.strip() for p in item.split(","))
    if not texts or not any(texts):
        raise ProposalError(f"{kind.value} proposals: empty proposal list")
    return texts


def resolve(value: Any, kind: Kind | str, allow_weak: bool = False) -> tuple[Proposal, ...]:
    """Proposals for a profile name, a keyword string (comma-separated) or a list of them.

    Raises ``ProposalError`` (a ``ValueError``) naming the proposal, the token and the reason.
    """
    k = _kind(kind)
    return tuple(parse(t, k, allow_weak) for t in _texts(value, k))


def keywords(proposals: Sequence[Proposal]) -> list[str]:
    """Normalised keyword form (canonical names, implied PRFs and ``noesn`` left out)."""
    return [suites.format_proposal(p) for p in proposals]


def swanctl(ike: Sequence[Proposal], esp: Sequence[Proposal]) -> dict[str, str]:
    """swanctl.conf values: connection ``proposals`` and child ``esp_proposals``."""
    return {"proposals": ",".join(keywords(ike)), "esp_proposals": ",".join(keywords(esp))}


def _describe(proposals: Sequence[Proposal]) -> str:
    return ", ".join(keywords(proposals))


def negotiated(
    ours: Sequence[Proposal], peer: Sequence[Proposal], kind: Kind | str
) -> dict[str, str]:
    """What this side and the peer agree on in both roles, as keyword proposals.

    ``as_initiator``: this side initiates, the peer's order decides; ``as_responder``: the peer
    initiates, ours decides. ESP is negotiated with PFS groups (as on a Child SA rekey); when
    only the groups differ, the error says so. Raises ``ValueError`` when nothing matches.
    """
    k = _kind(kind)
    result = negotiation.negotiate(ours, peer)
    if result.ok:
        return {
            "as_initiator": suites.format_proposal(result.as_initiator),  # type: ignore[arg-type]
            "as_responder": suites.format_proposal(result.as_responder),  # type: ignore[arg-type]
        }
    name = k.value.upper()
    offers = f"this side offers {_describe(ours)}; the peer offers {_describe(peer)}"
    if k is Kind.ESP and negotiation.negotiate(ours, peer, ignore_dh=True).ok:
        ours_dh = sorted({a.keyword for p in ours for a in p.dh}) or ["none"]
        peer_dh = sorted({a.keyword for p in peer for a in p.dh}) or ["none"]
        raise ProposalError(
            f"no common ESP proposal with PFS: the first Child SA would come up but its rekey "
            f"would fail (PFS groups: this side {', '.join(ours_dh)}, the peer "
            f"{', '.join(peer_dh)}); {offers}"
        )
    if result.as_initiator is None and result.as_responder is None:
        raise ProposalError(f"no common {name} proposal: {offers}")
    role = "initiator" if result.as_initiator is None else "responder"
    raise ProposalError(f"no common {name} proposal when this side is the {role}: {offers}")


_IKEV1_TRANSFORMS = {
    Kind.IKE: lambda p: v1_attributes.ike_transforms(
        p, v1_attributes.AuthMethod.PRE_SHARED_KEY, None
    ),
    Kind.ESP: lambda p: v1_attributes.esp_transforms(
        p, v1_attributes.EncapsulationMode.TUNNEL, None
    ),
}


def ikev1_unusable(proposals: Sequence[Proposal], kind: Kind) -> dict[str, list[str]]:
    """Reason -> the proposals IKEv1 cannot express for it (the agent's own mapping: no AEAD in
    Phase 1, a hash and a DH group in every Phase 1 proposal, no ChaCha20 in ESP)."""
    reasons: dict[str, list[str]] = {}
    for p in proposals:
        try:
            _IKEV1_TRANSFORMS[kind](p)
        except ValueError as e:
            reasons.setdefault(str(e), []).append(suites.format_proposal(p))
    return reasons


def _for_version(
    value: Any, kind: Kind, allow_weak: bool, version: int, who: str
) -> tuple[Proposal, ...]:
    if value is None:
        value = IKEV1_PROFILE if version == 1 else DEFAULT_PROFILE
    try:
        resolved = resolve(value, kind, allow_weak)
    except ProposalError as e:
        raise ProposalError(f"{who}{e}") from None
    if version == 1:
        reasons = ikev1_unusable(resolved, kind)
        if reasons:
            shown = "; ".join(f"{', '.join(kws)} ({why})" for why, kws in reasons.items())
            raise ProposalError(
                f"{who}{kind.value}: cannot be used with IKEv1: {shown}; the {IKEV1_PROFILE} "
                "profile suits IKEv1"
            )
    return resolved


def plan(
    ike: Any = None,
    esp: Any = None,
    allow_weak: bool = False,
    peer: Mapping[str, Any] | None = None,
    version: int = 2,
) -> dict[str, Any]:
    """The proposal module's result (without ``changed``). Raises ``ValueError``. Unset
    proposals are the ``modern`` profile, or ``compat`` with ``version`` 1."""
    if version not in (1, 2):
        raise ValueError(f"version: {version!r} is not an IKE version (1 or 2)")
    ours = {
        Kind.IKE: _for_version(ike, Kind.IKE, allow_weak, version, ""),
        Kind.ESP: _for_version(esp, Kind.ESP, allow_weak, version, ""),
    }
    result: dict[str, Any] = {
        "ike": keywords(ours[Kind.IKE]),
        "esp": keywords(ours[Kind.ESP]),
        "strongswan": swanctl(ours[Kind.IKE], ours[Kind.ESP]),
    }
    if peer is not None:
        unknown = sorted(set(peer) - {"ike", "esp"})
        if unknown:
            raise ValueError(f"peer: unknown key(s) {', '.join(unknown)} (expected ike, esp)")
        theirs = {
            k: _for_version(peer.get(k.value) or None, k, allow_weak, version, "peer: ")
            for k in (Kind.IKE, Kind.ESP)
        }
        result["negotiated"] = {
            k.value: negotiated(ours[k], theirs[k], k) for k in (Kind.IKE, Kind.ESP)
        }
    return result
