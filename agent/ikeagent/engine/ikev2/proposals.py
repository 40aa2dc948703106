"""Proposals: configured keywords <-> SA payload proposals, and the responder's choice.

The responder prefers its own configured order (as strongSwan does by default): it walks its
proposals in order and takes the first that the initiator's offer can satisfy, picking per
transform type the first configured algorithm that the offer contains.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

from ikeagent.crypto.suites import Algorithm, Proposal, TransformType
from ikeagent.wire.v2 import Attribute, ProtocolId, Transform
from ikeagent.wire.v2 import Proposal as WireProposal

KEY_LENGTH = 14

_TYPES = (
    TransformType.ENCR,
    TransformType.PRF,
    TransformType.INTEG,
    TransformType.DH,
    TransformType.ESN,
)


@dataclass(frozen=True, slots=True)
class Chosen:
    """The one algorithm per type that both sides agreed on."""

    number: int  # proposal number of the initiator's offer that was accepted
    encr: Algorithm
    integ: Algorithm | None
    prf: Algorithm | None
    dh: Algorithm | None
    esn: bool
    spi: bytes  # the SPI of the offering side in that proposal

    def describe(self) -> str:
        return "-".join(
            a.keyword for a in (self.encr, self.integ, self.prf, self.dh) if a is not None
        ) + ("-esn" if self.esn else "")


def _by_type(p: Proposal) -> dict[TransformType, tuple[Algorithm, ...]]:
    return {
        TransformType.ENCR: p.encr,
        TransformType.PRF: p.prf,
        TransformType.INTEG: p.integ,
        TransformType.DH: p.dh,
        TransformType.ESN: p.esn,
    }


def to_wire(
    proposals: tuple[Proposal, ...],
    protocol: ProtocolId,
    spi: bytes,
    *,
    strip_dh: bool = False,
    dh_first: int | None = None,
) -> tuple[WireProposal, ...]:
    """SA payload proposals, numbered from 1. ``strip_dh`` drops DH transforms (Child SA in
    IKE_AUTH); ``dh_first`` moves that group to the front of each proposal that offers it."""
    out = []
    for number, p in enumerate(proposals, start=1):
        transforms = []
        for t in _TYPES:
            algs = _by_type(p)[t]
            if t is TransformType.DH:
                if strip_dh:
                    continue
                if dh_first is not None:
                    algs = tuple(sorted(algs, key=lambda a: a.id != dh_first))
            for a in algs:
                attrs = (Attribute(KEY_LENGTH, a.key_bits),) if a.key_bits else ()
                transforms.append(Transform(t, a.id, attrs))
        out.append(WireProposal(number, protocol, spi, tuple(transforms)))
    return tuple(out)


def _offered(wp: WireProposal) -> dict[TransformType, list[tuple[int, int | None]]]:
    return _offered_transforms(wp.transforms)


def _offered_transforms(
    transforms: tuple[Transform, ...],
) -> dict[TransformType, list[tuple[int, int | None]]]:
    offered: dict[TransformType, list[tuple[int, int | None]]] = {}
    for tr in transforms:
        try:
            ttype = TransformType(int(tr.type))
        except ValueError:
            continue
        offered.setdefault(ttype, []).append((tr.id, tr.key_length))
    return offered


def _match(
    p: Proposal, wp: WireProposal, *, ignore_dh: bool, prefer_dh: int | None = None
) -> Chosen | None:
    picked = _pick(p, wp.transforms, ignore_dh, prefer_dh)
    if picked is None:
        return None
    encr, integ, prf, dh, esn = picked
    return Chosen(number=wp.number, encr=encr, integ=integ, prf=prf, dh=dh, esn=esn, spi=wp.spi)


@functools.lru_cache(maxsize=1024)  # peers send the same few offers over and over
def _pick(
    p: Proposal, transforms: tuple[Transform, ...], ignore_dh: bool, prefer_dh: int | None
) -> tuple[Algorithm, Algorithm | None, Algorithm | None, Algorithm | None, bool] | None:
    """(encr, integ, prf, dh, esn) of our proposal ``p`` that the offered transforms allow."""
    offered = _offered_transforms(transforms)
    mine = _by_type(p)
    picked: dict[TransformType, Algorithm | None] = {}
    for t in _TYPES:
        if ignore_dh and t is TransformType.DH:
            picked[t] = None
            continue
        theirs = offered.get(t, [])
        ours = mine[t]
        if not ours:
            # we want none of this type: fine if they offer none, or offer NONE (id 0)
            if theirs and not any(i == 0 for i, _ in theirs):
                return None
            picked[t] = None
            continue
        if t is TransformType.ESN and not theirs:
            # tolerate a peer that omits ESN: that means no ESN
            if any(a.id == 0 for a in ours):
                picked[t] = next(a for a in ours if a.id == 0)
                continue
            return None
        if t is TransformType.DH and prefer_dh is not None:
            # the group the peer already sent a KE for saves an INVALID_KE_PAYLOAD round trip
            ours = tuple(sorted(ours, key=lambda a: a.id != prefer_dh))
        choice = next(
            (a for a in ours if any(i == a.id and kl == a.key_bits for i, kl in theirs)), None
        )
        if choice is None:
            return None
        picked[t] = choice
    encr = picked[TransformType.ENCR]
    if encr is None:
        return None
    esn = picked[TransformType.ESN]
    return (
        encr,
        picked[TransformType.INTEG],
        picked[TransformType.PRF],
        picked[TransformType.DH],
        bool(esn and esn.id == 1),
    )


def select(
    configured: tuple[Proposal, ...],
    offered: tuple[WireProposal, ...],
    protocol: ProtocolId,
    *,
    ignore_dh: bool = False,
    prefer_dh: int | None = None,
) -> Chosen | None:
    """The responder's choice (configured order first), or None."""
    candidates = [wp for wp in offered if int(wp.protocol) == int(protocol)]
    for p in configured:
        for wp in candidates:
            chosen = _match(p, wp, ignore_dh=ignore_dh, prefer_dh=prefer_dh)
            if chosen is not None:
                return chosen
    return None


def chosen_to_wire(chosen: Chosen, protocol: ProtocolId, spi: bytes) -> WireProposal:
    """The single proposal a responder returns."""
    transforms = []
    for t, a in (
        (TransformType.ENCR, chosen.encr),
        (TransformType.PRF, chosen.prf),
        (TransformType.INTEG, chosen.integ),
        (TransformType.DH, chosen.dh),
    ):
        if a is not None:
            attrs = (Attribute(KEY_LENGTH, a.key_bits),) if a.key_bits else ()
            transforms.append(Transform(t, a.id, attrs))
    if protocol is ProtocolId.ESP:
        transforms.append(Transform(TransformType.ESN, 1 if chosen.esn else 0, ()))
    return WireProposal(chosen.number, protocol, spi, tuple(transforms))


def accept_response(
    configured: tuple[Proposal, ...],
    returned: tuple[WireProposal, ...],
    protocol: ProtocolId,
    *,
    ignore_dh: bool = False,
) -> Chosen | None:
    """Check the responder's single returned proposal against what we offered."""
    if len(returned) != 1:
        return None
    wp = returned[0]
    if int(wp.protocol) != int(protocol):
        return None
    offered = _offered(wp)
    # exactly one transform per type
    if any(len(v) != 1 for v in offered.values()):
        return None
    return select(configured, (wp,), protocol, ignore_dh=ignore_dh)


def describe_offer(offered: tuple[WireProposal, ...]) -> str:
    """A human-readable rendering of an offer, for logs ("no proposal chosen")."""
    from ikeagent.crypto.suites import algorithm_name

    parts = []
    for wp in offered:
        names = []
        for tr in wp.transforms:
            try:
                names.append(algorithm_name(TransformType(int(tr.type)), tr.id, tr.key_length))
            except (KeyError, ValueError):
                names.append(f"{int(tr.type)}:{tr.id}")
        parts.append(f"{ProtocolId(int(wp.protocol)).name}:" + "/".join(names))
    return ", ".join(parts)


def describe_configured(configured: tuple[Proposal, ...]) -> str:
    return ", ".join(str(p) for p in configured)
