"""What a ``version: 1`` connection may ask for: IKEv1 has no AEAD or ChaCha20 in Phase 1 and no
ChaCha20 in ESP, and needs a hash and a DH group in every Phase 1 proposal (RFC 2409 appendix A,
RFC 2407 4.5). Proposals written out are refused with the reason; the built-in defaults are cut
to what IKEv1 can express."""

from __future__ import annotations

import dataclasses
from typing import Any

from ikeagent.config.errors import Context, join
from ikeagent.config.model import AuthConfig, AuthMethod, ChildConfig
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


def _auth_ok(v: dict[str, Any], path: str, ctx: Context) -> bool:
    """IKEv1 has one authentication method for both peers, and signature methods for RSA and
    ECDSA P-256/P-384/P-521 keys only (RFC 2409 5.1, RFC 4754): no Ed25519."""
    from ikeagent.engine.ikev1.pubkey import key_problem

    local, remote = v.get("local"), v.get("remote")
    if not isinstance(local, AuthConfig) or not isinstance(remote, AuthConfig):
        return True  # already reported
    ok = True
    if local.auth is not remote.auth:
        ctx.error(
            join(path, "remote.auth"),
            f"IKEv1 authenticates both peers with one method: local.auth is "
            f"{local.auth.value}, remote.auth must be too",
        )
        ok = False
    if local.auth is AuthMethod.PUBKEY and local.certs:
        problem = key_problem(local.certs[0].public_key())
        if problem is not None:
            ctx.error(join(join(path, "local"), "certs"), f"IKEv1 (version: 1): {problem}")
            ok = False
    return ok


def check_connection(v: dict[str, Any], path: str, ctx: Context) -> bool:
    """Validate (and for defaults, trim) the proposals of an IKEv1 connection in ``v``;
    False when an error was reported."""
    ok = _auth_ok(v, path, ctx)
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
