# Copyright: contributors to the ikelab.ipsec collection
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""An end's proposals as the planner checks them: resolved from a setting, fitted to the
tunnel's IKE version, and negotiated with the peer's in both roles.

Proposals use the collection's resolver (``plugin_utils.proposals``) and the agent's
negotiation rules; on an IKEv1 tunnel they are checked with the agent's IKEv1 attribute mapping
(``ikeagent.crypto.v1.attributes``), and proposals no setting named (the built-in profile,
``modern``, AEAD only) become the ``compat`` profile. As in ``plan_checks``, a problem goes
into a ``Collector`` and a refused value comes back as ``None``.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ansible_collections.ikelab.ipsec.plugins.plugin_utils import proposals as resolver
from ansible_collections.ikelab.ipsec.plugins.plugin_utils.agent_import import ensure_importable
from ansible_collections.ikelab.ipsec.plugins.plugin_utils.plan_problems import Collector

ensure_importable()

from ikeagent.crypto import negotiation, suites  # noqa: E402
from ikeagent.crypto.suites import Kind, Proposal, TransformType  # noqa: E402

# the profile of an end whose proposals no setting names; on an IKEv1 tunnel the other one
# (IKEv1 has no AEAD for the IKE SA and no ChaCha20 in ESP, and modern is AEAD only)
DEFAULT_PROFILE = resolver.DEFAULT_PROFILE
IKEV1_PROFILE = resolver.IKEV1_PROFILE


@dataclass(frozen=True, slots=True)
class ProposalSet:
    proposals: tuple[Proposal, ...]
    owner: str  # host holding the variable, "" for the action's defaults
    field: str  # "ikelab_ike_proposals", "ikelab_tunnels[0].esp_proposals", "defaults.x"
    builtin: bool = False  # the planner's default profile: no setting named these proposals

    @property
    def keywords(self) -> list[str]:
        return resolver.keywords(self.proposals)


def check_proposals(
    owner: str,
    field: str,
    value: Any,
    kind: Kind,
    allow_weak: bool,
    tunnels: Sequence[str],
    out: Collector,
) -> ProposalSet | None:
    try:
        return ProposalSet(resolver.resolve(value, kind, allow_weak), owner, field)
    except ValueError as e:
        out.add(owner, tunnels, field, f"invalid: {e}")
        return None


@functools.lru_cache(maxsize=8)
def _profile(name: str, kind: Kind) -> tuple[Proposal, ...]:
    return resolver.resolve(name, kind)


def builtin_proposals(kind: Kind, version: int = 2) -> ProposalSet:
    """The proposals of an end that no setting names: ``modern``, for IKEv1 ``compat``."""
    name = IKEV1_PROFILE if version == 1 else DEFAULT_PROFILE
    return ProposalSet(_profile(name, kind), "", f"defaults.{kind.value}_proposals", builtin=True)


def for_version(
    host: str, tid: str, ps: ProposalSet, kind: Kind, version: int | None, out: Collector
) -> ProposalSet | None:
    """An end's proposals for its IKE version: built-in ones become ``compat`` for IKEv1;
    proposals a setting names that IKEv1 cannot express are a problem of that setting."""
    if version != 1:
        return ps
    if ps.builtin:
        return builtin_proposals(kind, 1)
    reasons = resolver.ikev1_unusable(ps.proposals, kind)
    if not reasons:
        return ps
    shown = ", ".join(f"{', '.join(kws)} ({why})" for why, kws in reasons.items())
    out.add(
        ps.owner or host,
        (tid,),
        ps.field,
        f"cannot be used with IKEv1 (the tunnel's version is 1): {shown}; the {IKEV1_PROFILE} "
        "profile suits IKEv1",
    )
    return None


# --- negotiation ------------------------------------------------------------------------------


def _names(p: Proposal, kind: Kind) -> dict[str, Any]:
    """One negotiated proposal as the agent's SA listings show it (strongSwan's names)."""

    def name(algs: tuple[suites.Algorithm, ...]) -> str | None:
        return suites.algorithm_name(algs[0].type, algs[0].id, algs[0].key_bits) if algs else None

    out: dict[str, Any] = {
        "proposal": suites.format_proposal(p),
        "encryption": name(p.encr),
        "integrity": name(p.integ),
    }
    if kind is Kind.IKE:
        out |= {"prf": name(p.prf), "dh": name(p.dh)}
    else:
        out |= {"esn": bool(p.esn and p.esn[0].id == 1)}
    return out


def negotiate_tunnel(
    tid: str,
    a: str,
    b: str,
    pa: dict[Kind, ProposalSet],
    pb: dict[Kind, ProposalSet],
    out: Collector,
    version: int = 2,
) -> dict[str, Any] | None:
    """What ``a`` (the initiator) and ``b`` agree on; problems when either role fails.

    The result: ``ike`` and ``esp`` (the first Child SA, created in IKE_AUTH without a key
    exchange) when ``a`` initiates, with ``esp_rekey_dh`` (the PFS group of a Child SA rekey)
    and ``reverse`` (the same when ``b`` initiates, which the responder's preference may change).
    With ``version`` 1 every Child SA comes from a Quick Mode, which carries the PFS key
    exchange from the first one on: the first ESP proposal is negotiated with its groups.
    """
    result: dict[str, Any] = {}
    reverse: dict[str, Any] = {}
    ok = True
    for kind in (Kind.IKE, Kind.ESP):
        ia, ib = pa[kind].proposals, pb[kind].proposals
        first = negotiation.negotiate(ia, ib, ignore_dh=kind is Kind.ESP and version != 1)
        rekey = negotiation.negotiate(ia, ib) if kind is Kind.ESP else first
        if first.as_initiator is None or first.as_responder is None or not rekey.ok:
            ok = False
            _no_common(tid, a, b, kind, pa[kind], pb[kind], first, rekey, out)
            continue
        result[kind.value] = _names(first.as_initiator, kind)
        reverse[kind.value] = _names(first.as_responder, kind)
        if kind is Kind.ESP:
            for target, chosen in ((result, rekey.as_initiator), (reverse, rekey.as_responder)):
                dh = chosen.dh if chosen is not None else ()
                target["esp_rekey_dh"] = (
                    suites.algorithm_name(TransformType.DH, dh[0].id) if dh else None
                )
    if not ok:
        return None
    return result | {"reverse": reverse}


def _no_common(
    tid: str,
    a: str,
    b: str,
    kind: Kind,
    sa: ProposalSet,
    sb: ProposalSet,
    first: negotiation.Negotiation,
    rekey: negotiation.Negotiation,
    out: Collector,
) -> None:
    name = kind.value.upper()
    offers = f"{a} has {', '.join(sa.keywords)}; {b} has {', '.join(sb.keywords)}"
    if first.ok:  # only the ESP rekey with PFS fails
        groups = {
            h: sorted({x.keyword for p in s.proposals for x in p.dh}) or ["none"]
            for h, s in ((a, sa), (b, sb))
        }
        reason = (
            f"no common ESP proposal with PFS: the first Child SA would come up but its rekey "
            f"would fail (PFS groups: {a} {', '.join(groups[a])}, {b} {', '.join(groups[b])}); "
            + offers
        )
    elif first.as_initiator is None and first.as_responder is None:
        reason = f"no common {name} proposal between {a} and {b} in either role: {offers}"
    else:
        who = a if first.as_initiator is None else b
        reason = f"no common {name} proposal when {who} initiates: {offers}"
    # name the variables that were set (a default on one end is the other end's mismatch)
    fields = {(s.owner, s.field) for s in (sa, sb) if s.owner} or {(a, sa.field)}
    for owner, field in sorted(fields):
        out.add(owner, (tid,), field, reason)
