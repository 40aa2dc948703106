"""What two peers agree on: the responder's choice among an initiator's proposals.

Standard library only (like ``suites``), so controller code (the Ansible proposal module, the
site-to-site planner) can predict a negotiation without a wire codec or ``cryptography``.

The rules are the engine's (``ikeagent.engine.ikev2.proposals``, kept identical by a test that
compares both on random proposal sets):

- the responder walks its *configured* proposals in order and, for each, the initiator's
  *offered* proposals in order; the first pair that matches wins (the responder's preference
  decides, as in strongSwan's default);
- a pair matches when, for every transform type, the first configured algorithm that the offer
  also contains (same transform ID and key length) exists; that algorithm is the one chosen;
- a type the responder does not configure (integrity with an AEAD cipher, DH in an ESP proposal
  without PFS, ESN in IKE) must not be offered either, unless the offer includes NONE (ID 0);
- an offer without ESN transforms means "no ESN", acceptable when the responder allows ``noesn``;
- ``prefer_dh``: the group the initiator already sent a KE payload for goes first among the
  responder's DH groups of a proposal (saves an INVALID_KE_PAYLOAD round trip); it never changes
  which proposal is chosen, only which of its groups;
- ``ignore_dh``: DH transforms are not negotiated (the first Child SA, created in IKE_AUTH).

Roles matter: with the same two configurations, "a initiates" and "b initiates" can end in
different algorithms, because the responder's order wins. ``negotiate`` gives both.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from ikeagent.crypto.suites import Algorithm, Proposal, TransformType

_NONE_ID = 0  # transform ID 0: "NONE" for DH, "no ESN" for ESN


def _by_type(p: Proposal) -> tuple[tuple[TransformType, tuple[Algorithm, ...]], ...]:
    return (
        (TransformType.ENCR, p.encr),
        (TransformType.PRF, p.prf),
        (TransformType.INTEG, p.integ),
        (TransformType.DH, p.dh),
        (TransformType.ESN, p.esn),
    )


def _contains(theirs: tuple[Algorithm, ...], a: Algorithm) -> bool:
    return any(t.id == a.id and t.key_bits == a.key_bits for t in theirs)


def _pick(
    ours: Proposal, offer: Proposal, *, ignore_dh: bool, prefer_dh: int | None
) -> Proposal | None:
    """``ours`` narrowed to one algorithm per type that ``offer`` allows, or None."""
    theirs_by_type = dict(_by_type(offer))
    picked: dict[TransformType, tuple[Algorithm, ...]] = {}
    for ttype, mine in _by_type(ours):
        theirs = theirs_by_type[ttype]
        if ignore_dh and ttype is TransformType.DH:
            picked[ttype] = ()
            continue
        if not mine:
            if theirs and not any(t.id == _NONE_ID for t in theirs):
                return None
            picked[ttype] = ()
            continue
        if ttype is TransformType.ESN and not theirs:
            no_esn = next((a for a in mine if a.id == _NONE_ID), None)
            if no_esn is None:
                return None
            picked[ttype] = (no_esn,)
            continue
        if ttype is TransformType.DH and prefer_dh is not None:
            mine = tuple(sorted(mine, key=lambda a: a.id != prefer_dh))
        choice = next((a for a in mine if _contains(theirs, a)), None)
        if choice is None:
            return None
        picked[ttype] = (choice,)
    if not picked[TransformType.ENCR]:
        return None  # a proposal without encryption is never chosen
    return Proposal(
        encr=picked[TransformType.ENCR],
        integ=picked[TransformType.INTEG],
        prf=picked[TransformType.PRF],
        dh=picked[TransformType.DH],
        esn=picked[TransformType.ESN],
    )


@dataclass(frozen=True, slots=True)
class Match:
    """The responder's choice and where it came from (0-based indexes)."""

    proposal: Proposal  # one algorithm per negotiated type
    configured_index: int
    offered_index: int  # the initiator's proposal number is offered_index + 1


def match(
    offered: Sequence[Proposal],
    configured: Sequence[Proposal],
    *,
    ignore_dh: bool = False,
    prefer_dh: int | None = None,
) -> Match | None:
    """Like ``select``, also telling which configured and which offered proposal matched."""
    for ci, ours in enumerate(configured):
        for oi, offer in enumerate(offered):
            chosen = _pick(ours, offer, ignore_dh=ignore_dh, prefer_dh=prefer_dh)
            if chosen is not None:
                return Match(chosen, ci, oi)
    return None


def select(
    offered: Sequence[Proposal],
    configured: Sequence[Proposal],
    *,
    ignore_dh: bool = False,
    prefer_dh: int | None = None,
) -> Proposal | None:
    """The proposal a responder with ``configured`` proposals picks from ``offered`` (or None).

    The result has exactly one algorithm per negotiated type (none for types not negotiated).
    """
    m = match(offered, configured, ignore_dh=ignore_dh, prefer_dh=prefer_dh)
    return m.proposal if m is not None else None


def initial_dh(proposals: Sequence[Proposal]) -> int | None:
    """The DH group an initiator sends its first KE payload for: the first group of the first
    proposal that has one (IKE_SA_INIT, and CREATE_CHILD_SA with PFS)."""
    for p in proposals:
        if p.dh:
            return p.dh[0].id
    return None


@dataclass(frozen=True, slots=True)
class Negotiation:
    """What ``a`` and ``b`` agree on in each role (None: no proposal chosen)."""

    as_initiator: Proposal | None  # a initiates, b responds (b's preference decides)
    as_responder: Proposal | None  # b initiates, a responds (a's preference decides)

    @property
    def ok(self) -> bool:
        return self.as_initiator is not None and self.as_responder is not None

    @property
    def symmetric(self) -> bool:
        return self.as_initiator == self.as_responder


def negotiate(
    a: Sequence[Proposal], b: Sequence[Proposal], *, ignore_dh: bool = False
) -> Negotiation:
    """What peers ``a`` and ``b`` agree on with ``a`` initiating and with ``b`` initiating.

    The two may differ: the responder's configured order decides, so if ``a`` prefers
    aes128gcm16 and ``b`` prefers aes256gcm16 (both allowing both), ``a`` initiating ends in
    aes256gcm16 and ``b`` initiating in aes128gcm16. The initiator's first KE group is preferred
    among the responder's groups (as the engine does after the KE payload it received), so the
    DH group is the one the exchange really ends with, with or without INVALID_KE_PAYLOAD.
    """
    return Negotiation(
        as_initiator=select(a, b, ignore_dh=ignore_dh, prefer_dh=initial_dh(a)),
        as_responder=select(b, a, ignore_dh=ignore_dh, prefer_dh=initial_dh(b)),
    )
