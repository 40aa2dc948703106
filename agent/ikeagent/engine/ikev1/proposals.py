"""Phase 1 and Phase 2 offers: our proposals as SA payloads, and the responder's choice from
the initiator's list (RFC 2408 4.2: proposals in preference order, transforms as alternatives)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from ikeagent.config.model import ChildConfig, ConnectionConfig
from ikeagent.crypto.v1 import attributes as at
from ikeagent.wire import v1 as w1

KEY_IKE = 1  # RFC 2409 appendix A / RFC 2407 4.4.2: the one ISAKMP transform ID


def _attrs(pairs: Sequence[tuple[int, int | bytes]]) -> tuple[w1.Attribute, ...]:
    return tuple(w1.Attribute(t, v) for t, v in pairs)


def _pairs(attrs: Sequence[w1.Attribute]) -> list[tuple[int, int | bytes]]:
    return [(int(a.type), a.value) for a in attrs]


def phase1_life(conn: ConnectionConfig) -> int:
    """The ISAKMP SA lifetime we offer: rekey time plus the margin before it must go."""
    if conn.rekey_time <= 0:
        return 86400
    over = conn.over_time if conn.over_time > 0 else conn.rekey_time * 0.1
    return int(conn.rekey_time + over)


def phase2_life(cfg: ChildConfig) -> int:
    if cfg.life_time > 0:
        return int(cfg.life_time)
    if cfg.rekey_time > 0:
        return int(cfg.rekey_time * 1.1)
    return 86400


def ike_offer(conn: ConnectionConfig, group: int | None = None) -> list[at.IkeTransform]:
    """Our Phase 1 transforms in preference order (Aggressive Mode: one DH group only), with
    the connection's authentication method (none when it has no usable one)."""
    from ikeagent.engine.ikev1.pubkey import conn_method

    method = conn_method(conn)
    if method is None:
        return []
    out: list[at.IkeTransform] = []
    for p in conn.proposals:
        try:
            transforms = at.ike_transforms(p, method, phase1_life(conn))
        except at.Unsupported:
            continue  # not expressible in IKEv1 (e.g. AEAD): neither offered nor accepted
        for t in transforms:
            if group is not None and t.dh.id != group:
                continue
            if t not in out:
                out.append(t)
    return out


def ike_sa_payload(offer: Sequence[at.IkeTransform]) -> w1.SecurityAssociation:
    transforms = tuple(
        w1.Transform(i + 1, KEY_IKE, _attrs(t.to_attributes())) for i, t in enumerate(offer)
    )
    return w1.SecurityAssociation((w1.Proposal(1, w1.ProtocolId.ISAKMP, b"", transforms),))


def same_ike(a: at.IkeTransform, b: at.IkeTransform) -> bool:
    return (a.encr, a.hash, a.dh, a.auth_method) == (b.encr, b.hash, b.dh, b.auth_method)


@dataclass(frozen=True, slots=True)
class IkeChoice:
    conn: ConnectionConfig
    transform: at.IkeTransform
    reply: w1.SecurityAssociation  # the SA payload of our answer: the chosen transform


def choose_ike(
    sa_p: w1.SecurityAssociation,
    candidates: Sequence[ConnectionConfig],
    group: int | None = None,
) -> IkeChoice | None:
    """The responder's pick from the initiator's list: among the offered transforms it accepts,
    the one it prefers by its own configured order (as strongSwan and our IKEv2 responder do);
    the first candidate connection that accepts any wins."""
    offered: list[tuple[w1.Proposal, w1.Transform, at.IkeTransform]] = []
    for prop in sa_p.proposals:
        if int(prop.protocol) != w1.ProtocolId.ISAKMP:
            continue
        for tr in prop.transforms:
            if tr.transform_id != KEY_IKE:
                continue
            try:
                theirs = at.from_attributes(_pairs(tr.attributes))
            except ValueError:
                continue
            if group is None or theirs.dh.id == group:
                offered.append((prop, tr, theirs))
    for conn in candidates:
        for ours in ike_offer(conn):
            for prop, tr, theirs in offered:
                if same_ike(theirs, ours):
                    reply = w1.SecurityAssociation(
                        (w1.Proposal(prop.number, prop.protocol, prop.spi, (tr,)),),
                        sa_p.doi,
                        sa_p.situation,
                    )
                    return IkeChoice(conn, theirs, reply)
    return None


def describe_ike(t: at.IkeTransform) -> str:
    return "-".join(a.keyword for a in (t.encr, t.hash, t.dh))


def describe_esp(t: at.EspTransform) -> str:
    algs = [t.encr, t.integ, t.dh]
    return "-".join(a.keyword for a in algs if a is not None) + ("-esn" if t.esn else "")


def describe_ike_offer(sa_p: w1.SecurityAssociation, *, auth: bool = False) -> str:
    from ikeagent.engine.ikev1.pubkey import method_name

    out = []
    for prop in sa_p.proposals:
        for tr in prop.transforms:
            try:
                t = at.from_attributes(_pairs(tr.attributes))
                out.append(describe_ike(t) + (f" ({method_name(t.auth_method)})" if auth else ""))
            except ValueError as exc:
                out.append(f"(unsupported: {exc})")
    return ", ".join(out) or "(none)"


# ---- Phase 2 ------------------------------------------------------------------------------


def pfs_group(cfg: ChildConfig) -> int | None:
    for p in cfg.esp_proposals:
        if p.dh:
            return p.dh[0].id
    return None


def esp_offer(cfg: ChildConfig, encap_mode: int) -> list[list[at.EspTransform]]:
    """Per configured ESP proposal its transforms (one proposal payload each)."""
    out = []
    for p in cfg.esp_proposals:
        try:
            out.append(at.esp_transforms(p, encap_mode, phase2_life(cfg)))
        except at.Unsupported:
            continue  # not defined for ESP in IKEv1: neither offered nor accepted
    return out


def unsupported(proposals: Sequence[object], convert) -> list[str]:  # noqa: ANN001
    """Why each of ``proposals`` cannot be used with IKEv1 (``convert`` raises the reason)."""
    out = []
    for p in proposals:
        try:
            convert(p)
        except at.Unsupported as exc:
            out.append(str(exc))
    return out


def ike_unsupported(conn: ConnectionConfig) -> list[str]:
    return unsupported(
        conn.proposals, lambda p: at.ike_transforms(p, at.AuthMethod.PRE_SHARED_KEY, 0)
    )


def esp_unsupported(cfg: ChildConfig) -> list[str]:
    return unsupported(
        cfg.esp_proposals, lambda p: at.esp_transforms(p, at.EncapsulationMode.TUNNEL, 0)
    )


def esp_sa_payload(offer: Sequence[Sequence[at.EspTransform]], spi: int) -> w1.SecurityAssociation:
    props = []
    for n, transforms in enumerate(offer):
        trs = tuple(
            w1.Transform(i + 1, t.transform_id, _attrs(t.to_attributes()))
            for i, t in enumerate(transforms)
        )
        props.append(w1.Proposal(n + 1, w1.ProtocolId.IPSEC_ESP, spi.to_bytes(4, "big"), trs))
    return w1.SecurityAssociation(tuple(props))


def same_esp(a: at.EspTransform, b: at.EspTransform) -> bool:
    return (a.encr, a.integ, a.dh, a.esn) == (b.encr, b.integ, b.dh, b.esn)


TUNNEL_MODES = frozenset(
    {
        at.EncapsulationMode.TUNNEL,
        at.EncapsulationMode.UDP_ENCAPSULATED_TUNNEL,
        at.EncapsulationMode.UDP_ENCAPSULATED_TUNNEL_DRAFT,
    }
)


@dataclass(frozen=True, slots=True)
class EspChoice:
    transform: at.EspTransform
    spi: int  # the initiator's SPI in the accepted proposal
    proposal: w1.Proposal  # the accepted proposal with the accepted transform only


def esp_from(tr: w1.Transform) -> at.EspTransform:
    return at.esp_from_wire(tr.transform_id, _pairs(tr.attributes))


def choose_esp(sa_p: w1.SecurityAssociation, cfg: ChildConfig) -> EspChoice | None:
    """As for Phase 1: among the offered transforms we accept, the one our order prefers."""
    offered: list[tuple[w1.Proposal, w1.Transform, at.EspTransform]] = []
    for prop in sa_p.proposals:
        if int(prop.protocol) != w1.ProtocolId.IPSEC_ESP or len(prop.spi) != 4:
            continue
        for tr in prop.transforms:
            try:
                theirs = esp_from(tr)
            except ValueError:
                continue
            if theirs.encap_mode in TUNNEL_MODES:
                offered.append((prop, tr, theirs))
    for ours in (t for ts in esp_offer(cfg, at.EncapsulationMode.TUNNEL) for t in ts):
        for prop, tr, theirs in offered:
            if same_esp(theirs, ours):
                chosen = w1.Proposal(prop.number, prop.protocol, prop.spi, (tr,))
                return EspChoice(theirs, int.from_bytes(prop.spi, "big"), chosen)
    return None


def describe_esp_offer(sa_p: w1.SecurityAssociation) -> str:
    out = []
    for prop in sa_p.proposals:
        for tr in prop.transforms:
            try:
                out.append(describe_esp(esp_from(tr)))
            except ValueError as exc:
                out.append(f"(unsupported: {exc})")
    return ", ".join(out) or "(none)"
