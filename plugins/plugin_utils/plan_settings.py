# Copyright: contributors to the ikelab.ipsec collection
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Tunnel settings the planner takes by the ``tunnel`` module's parameter names: lifetimes,
liveness checks and on-demand behaviour, and ``start_action``.

- ``NAMED`` (in ``plan_topology``): parameter -> the agent option it stands for (``child.x`` for a child key), e.g.
  ``inactivity`` -> ``child.inactivity``, ``child_life_time`` -> ``child.life_time``,
  ``dpd_timeout`` -> ``dpd_timeout``. They may be given in the planner's ``defaults`` and in
  ``ikelab_tunnels`` entries; they join the options there (checked by the agent's schema with
  the rest, a tunnel's setting winning over a host's ``ikelab_tunnel_options`` over the
  defaults), and a problem names the setting as it was written (``display_field``).
- ``start_action``: ``start`` (the default: the initiating end starts the tunnel when its agent
  loads it) or ``trap`` (an on-demand tunnel: the initiating end installs a trap and starts the
  tunnel when traffic needs it). The responding end waits (``none``) either way. Given by a
  tunnel's ``ikelab_tunnels`` entries (which must agree) or the defaults.
- ``module_options``: an end's merged options as the tunnel module's parameters.
- ``check_ends_agree``: both ends of a tunnel on the same IKE version and Phase 1 mode.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ansible_collections.ikelab.ipsec.plugins.module_utils.tunnel_settings import (
    Context,
    SpecError,
    duration,
    settings,
)
from ansible_collections.ikelab.ipsec.plugins.plugin_utils.plan_checks import ike_version
from ansible_collections.ikelab.ipsec.plugins.plugin_utils.plan_problems import Collector
from ansible_collections.ikelab.ipsec.plugins.plugin_utils.plan_topology import (
    IKE_SETTINGS,
    NAMED,
    UNSET,
    TunnelSpec,
    display_field,
)

START_ACTIONS = ("start", "trap")
# what an end gets when no setting names these (the agent's defaults): the ends must agree
_AGREE = {"version": 2, "aggressive": False}
RESPONDER_ACTION = "none"


def named_options(
    values: Mapping[str, Any], owner: str, field: str
) -> list[tuple[dict[str, Any], tuple[str, str]]]:
    """Settings given by parameter name (``values``, from ``field`` of ``owner``) as options,
    each with its own source (``<field>.<parameter>``), ready for the planner's merge."""
    out = []
    for param, value in values.items():
        if param not in NAMED or value is None:
            continue
        path = NAMED[param]
        option: dict[str, Any] = (
            {"child": {path[len("child.") :]: value}}
            if path.startswith("child.")
            else {path: value}
        )
        out.append((option, (owner, f"{field}.{param}")))
    return out


def start_actions(spec: TunnelSpec, default: Any, out: Collector) -> tuple[str, str]:
    """(initiator's, responder's) start_action of a tunnel; a bad or conflicting value is a
    problem (and the tunnel starts as usual meanwhile)."""
    chosen: tuple[str, str, str] | None = None  # (value, owner, field)
    for d in spec.declarations:
        if d.start_action is UNSET or d.start_action is None:
            continue
        where = f"{d.field}.start_action"
        if d.start_action not in START_ACTIONS:
            out.add(
                d.owner,
                (spec.id,),
                where,
                f"invalid: {d.start_action!r} (expected one of: {', '.join(START_ACTIONS)})",
            )
            continue
        if chosen is None:
            chosen = (d.start_action, d.owner, where)
        elif chosen[0] != d.start_action:
            out.add(
                d.owner,
                (spec.id,),
                where,
                f"conflicting settings: {d.start_action!r} here, {chosen[0]!r} in {chosen[2]} "
                f"of {chosen[1]}",
            )
    if chosen is not None:
        return chosen[0], RESPONDER_ACTION
    # a bad default is reported once (check_default), not per tunnel
    return (default if default in START_ACTIONS else "start"), RESPONDER_ACTION


def check_default(value: Any, field: str, out: Collector) -> None:
    if value is not None and value not in START_ACTIONS:
        out.add("", (), field, f"invalid: {value!r} (expected one of: {', '.join(START_ACTIONS)})")


def module_options(options: Mapping[str, Any]) -> dict[str, Any]:
    """Options (connection keys, child keys under ``child``) as the parameters of
    ``ikelab.ipsec.tunnel``: ``dpd_delay``, ``rekey_time`` and ``child_rekey_time`` always
    (None when unset); the other keys with parameters of their own (``NAMED``), ``version``,
    ``aggressive`` and ``allow_aggressive_psk`` when they are set; the rest goes to ``options``
    and ``child_options``."""
    conn = {k: v for k, v in options.items() if k != "child"}
    child = dict(options.get("child") or {})
    params: dict[str, Any] = {k: conn.pop(k) for k in IKE_SETTINGS if k in conn}
    for param, path in NAMED.items():
        source, key = (child, path[len("child.") :]) if path.startswith("child.") else (conn, path)
        if key in source:
            params[param] = source.pop(key)
        elif param in ("dpd_delay", "rekey_time", "child_rekey_time"):
            params[param] = None
    return {**params, "options": conn, "child_options": child}


def check_end(
    host: str,
    tid: str,
    options: Mapping[str, Any],
    sources: Mapping[str, tuple[str, str]],
    start_action: str,
    version: int | None,
    out: Collector,
) -> None:
    """The tunnel module's own rules for one end's merged options (an inactivity of 0, a
    dpd_timeout on IKEv2, a jitter longer than its rekey time, ...), which the agent's schema
    does not check: the plan fails as the module would, before any host is touched."""
    params = module_options(options)
    try:
        durations = {
            k: duration(params.get(k), k) for k in ("dpd_delay", "rekey_time", "child_rekey_time")
        }
        settings(
            params,
            params["options"],
            params["child_options"],
            Context(
                version=version,
                start_action=start_action,
                local_addrs=("192.0.2.1",),  # the planner's are IP addresses
                remote_addrs=("192.0.2.2",),
                **durations,
            ),
        )
    except SpecError as e:
        path = NAMED.get(e.field, e.field)
        owner, field = sources.get(path) or sources.get(path.split(".")[0]) or (host, "options")
        out.add(owner or host, (tid,), display_field(field, path), f"invalid: {e.reason}")


def check_ends_agree(
    tid: str,
    merged: Mapping[str, tuple[dict[str, Any], dict[str, tuple[str, str]]]],
    out: Collector,
) -> None:
    """Both ends speak the same IKE version and the same IKEv1 Phase 1 mode: the agents would
    otherwise never negotiate (a problem the agent's schema cannot see, having one end)."""
    if len(merged) != 2:
        return
    (a, (oa, sa)), (b, (ob, sb)) = merged.items()
    for key, default in _AGREE.items():
        va, vb = oa.get(key, default), ob.get(key, default)
        if key == "version":  # as the agent reads it ("1" is 1); None: refused by the schema
            va, vb = ike_version(va), ike_version(vb)
        if va == vb or not (_scalar(va) and _scalar(vb)):
            continue  # equal, or an invalid value that the schema check reported
        # name the setting that makes the difference: the responder's if it has one
        host, options, sources = (b, ob, sb) if key in ob else (a, oa, sa)
        owner, field = sources.get(key, (host, "options"))
        out.add(
            owner or host,
            (tid,),
            f"{field}.{key}",
            f"the ends disagree: {key} is {va!r} on {a} ({_origin(oa, sa, key, a)}) and "
            f"{vb!r} on {b} ({_origin(ob, sb, key, b)})",
        )


def _scalar(value: Any) -> bool:
    return isinstance(value, bool | int)


def _origin(
    options: Mapping[str, Any], sources: Mapping[str, tuple[str, str]], key: str, host: str
) -> str:
    if key not in options:
        return "the agent's default"
    owner, field = sources.get(key, (host, "options"))
    return f"{field}.{key}" + (f" of {owner}" if owner else "")
