"""What a ``version: 1`` connection may ask for: IKEv1 has no AEAD or ChaCha20 in Phase 1 and no
ChaCha20 in ESP, and needs a hash and a DH group in every Phase 1 proposal (RFC 2409 appendix A,
RFC 2407 4.5). Proposals written out are refused with the reason; the built-in defaults are cut
to what IKEv1 can express."""

from __future__ import annotations

import dataclasses
from typing import Any

from ikeagent.config.errors import Context, join
from ikeagent.config.model import ChildConfig
from ikeagent.crypto import suites
from ikeagent.crypto.v1 import attributes as at

_PSK = at.AuthMethod.PRE_SHARED_KEY
_TUNNEL = at.EncapsulationMode.TUNNEL


def _ike_ok(p: suites.Proposal) -> str | None:
    try:
        at.ike_transforms(p, _PSK, None)
    except ValueError as exc:
        return str(exc)
    return None


def _esp_ok(p: suites.Proposal) -> str | None:
    try:
        at.esp_transforms(p, _TUNNEL, None)
    except ValueError as exc:
        return str(exc)
    return None


def _usable(
    proposals: tuple[suites.Proposal, ...],
    kind: suites.Kind,
    check: Any,
    path: str,
    ctx: Context,
) -> tuple[suites.Proposal, ...] | None:
    if proposals == suites.default_proposals(kind):
        kept = tuple(p for p in proposals if check(p) is None)
        return kept or None
    bad = False
    for p in proposals:
        reason = check(p)
        if reason is not None:
            ctx.error(path, f"{suites.format_proposal(p)} cannot be used with IKEv1: {reason}")
            bad = True
    return None if bad else proposals


def check_connection(v: dict[str, Any], path: str, ctx: Context) -> bool:
    """Validate (and for defaults, trim) the proposals of an IKEv1 connection in ``v``;
    False when an error was reported."""
    ok = True
    ike = _usable(v["proposals"], suites.Kind.IKE, _ike_ok, join(path, "proposals"), ctx)
    if ike is None:
        ok = False
    else:
        v["proposals"] = ike
    children: dict[str, ChildConfig] = {}
    for name, child in v["children"].items():
        cpath = join(join(join(path, "children"), name), "esp_proposals")
        esp = _usable(child.esp_proposals, suites.Kind.ESP, _esp_ok, cpath, ctx)
        if esp is None:
            ok = False
            continue
        children[name] = dataclasses.replace(child, esp_proposals=esp)
    v["children"] = children
    return ok
