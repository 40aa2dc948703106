# Copyright: contributors to the ikelab.ipsec collection
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The site-to-site planner: every tunnel of the inventory, validated before a host is touched.

``make_plan(hostvars, groups, hosts=..., topology=..., secrets_dir=..., generate_keys=...,
defaults=..., auth=..., pki_dir=...)`` returns a ``Plan`` or raises ``PlanError`` listing every problem, one per line,
each naming host, tunnel and field (see ``plan_problems``). Pure: it reads no file except to
test whether a PSK file exists (``exists``), and never a key.

Inputs (the ``ikelab.ipsec.tunnel_plan`` action gathers them from ``hostvars``):

- ``hostvars``: inventory name -> that host's variables: ``ikelab_underlay_address``,
  ``ikelab_protected_subnets``, ``ikelab_ike_id`` (default: the inventory name),
  ``ikelab_ike_proposals``/``ikelab_esp_proposals`` (a profile name or keyword proposals),
  ``ikelab_tunnels``, ``ikelab_tunnel_options`` (options for every tunnel of the host) and
  ``ikelab_topology``. Every inventory host should be present: a peer missing here is "not in
  the inventory".
- ``groups``: group name -> inventory names; ``hosts``: the play's hosts (default: all).
- ``topology``: overrides ``ikelab_topology`` of the play's hosts (see ``plan_topology``);
  None or ``{}`` leaves it to them.
- ``defaults``: ``ike_proposals``/``esp_proposals`` (default ``modern``; ``compat`` on an
  IKEv1 tunnel, see below), ``options`` (for
  every tunnel), ``allow_weak`` (default false) and ``version``, ``aggressive``,
  ``allow_aggressive_psk`` (for every tunnel; None leaves the agent's defaults: IKEv2, no
  Aggressive Mode).

Tunnel ``a--b`` (a < b): ``a`` initiates (``start_action: start``, or ``trap`` for an
on-demand tunnel, see ``plan_settings``), ``b`` responds (``none``); on ``a`` the connection is named ``b`` (or the ``name`` of a's ``ikelab_tunnels``
entry); the PSK is ``<secrets_dir>/a--b.psk``. Settings precedence for an end: the tunnel's
(``ikelab_tunnels`` entries, which must agree) over the host's variables over ``defaults``.
Options are agent settings: connection keys at the top level, child keys under ``child``;
entries carry them as the tunnel module's parameters (``module_options``). ``version``,
``aggressive`` and ``allow_aggressive_psk`` may also be given by name (tunnel entries,
``defaults``) or as options (``ikelab_tunnel_options``); they are checked with the rest by the
agent's schema (Aggressive Mode needs version 1, and with a PSK the opt-in), and the two ends
of a tunnel must agree on ``version`` and ``aggressive``.

Authentication: ``auth`` is ``psk`` (the default: one PSK file per tunnel) or
``pubkey`` (certificates, for every tunnel of the plan). With ``pubkey`` each end's entry
carries ``auth: pubkey``, ``certs: [<pki_dir>/<host>.crt]``, ``private_key:
<pki_dir>/<host>.key`` and ``cacerts: [<pki_dir>/ca.crt]`` (``pki_dir``, a directory
on the managed hosts, default ``/etc/ikelab/pki``; ``host_pki_paths`` gives the same paths),
no ``psk_file``, and no PSK file is needed; the tunnel summary says ``auth``.

IKEv1 (an end's effective ``version`` is 1): proposals that no setting names (the tunnel's
``ike_proposals``/``esp_proposals``, the host's ``ikelab_*_proposals``, ``defaults``) are the
``compat`` profile instead of ``modern`` (AEAD only, which IKEv1 Phase 1 cannot use); named
proposals that IKEv1 cannot express are a problem of their field (``plan_checks.for_version``,
the agent's own IKEv1 mapping). Ends on different versions are one problem, not negotiated.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ansible_collections.ikelab.ipsec.plugins.plugin_utils.plan_checks import (
    PROPOSAL_VARS,
    TUNNEL_OPTIONS,
    UNDERLAY,
    Kind,
    ProposalSet,
    Site,
    check_options,
    check_proposals,
    check_routes,
    check_site,
    check_unique,
    for_version,
    ike_version,
    negotiate_tunnel,
)
from ansible_collections.ikelab.ipsec.plugins.plugin_utils.plan_problems import (
    Collector,
    PlanError,
    Problem,
)
from ansible_collections.ikelab.ipsec.plugins.plugin_utils.plan_settings import (
    check_default,
    check_end,
    check_ends_agree,
    module_options,
    named_options,
    start_actions,
)
from ansible_collections.ikelab.ipsec.plugins.plugin_utils.plan_topology import (
    IKE_SETTINGS,
    NAMED_SETTINGS,
    TOPOLOGY,
    UNSET,
    TunnelSpec,
    display_field,
    host_declarations,
    merge_declarations,
    topology_declarations,
)

__all__ = ["CHILD_NAME", "DEFAULTS", "Plan", "PlanError", "Problem", "make_plan", "module_options"]

DEFAULTS: dict[str, Any] = {
    "ike_proposals": "modern",
    "esp_proposals": "modern",
    "options": {},
    "allow_weak": False,
    "version": None,
    "aggressive": None,
    "allow_aggressive_psk": None,
    "start_action": None,  # start or trap (plan_settings), and the tunnel module's settings:
    **dict.fromkeys(NAMED_SETTINGS),
}
PKI_DIR = "/etc/ikelab/pki"
AUTH_METHODS = ("psk", "pubkey")
CHILD_NAME = "net"
_CONNECTION_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,62}\Z")


@dataclass(frozen=True, slots=True)
class Plan:
    hosts: dict[str, list[dict[str, Any]]]  # per play host, its tunnel entries (by peer)
    tunnels: list[dict[str, Any]]  # every tunnel, by id

    def as_dict(self) -> dict[str, Any]:
        return {"plan": self.hosts, "tunnels": self.tunnels}


@dataclass(frozen=True, slots=True)
class _Settings:
    proposals: dict[Kind, Any]  # None: not given (the built-in profile)
    options: dict[str, Any]
    named: dict[str, Any]  # IKE_SETTINGS given by name in the defaults
    lifetimes: dict[str, Any]  # NAMED_SETTINGS given in the defaults
    start_action: Any
    allow_weak: bool
    secrets_dir: str
    generate_keys: bool
    exists: Callable[[str], bool]
    auth: str = "psk"
    pki_dir: str = PKI_DIR


def _settings(
    defaults: Mapping[str, Any] | None,
    secrets_dir: str,
    generate_keys: bool,
    exists: Callable[[str], bool],
    out: Collector,
    auth: Any = "psk",
    pki_dir: Any = PKI_DIR,
) -> _Settings:
    merged = dict(DEFAULTS)
    if defaults is not None and not isinstance(defaults, Mapping):
        out.add("", (), "defaults", "invalid: expected a mapping")
        defaults = None
    for key, value in (defaults or {}).items():
        if key not in DEFAULTS:
            out.add(
                "", (), f"defaults.{key}", f"unknown key (expected one of: {', '.join(DEFAULTS)})"
            )
        elif value is not None:
            merged[key] = value
    if not isinstance(merged["options"], Mapping):
        out.add("", (), "defaults.options", "invalid: expected a mapping of agent settings")
        merged["options"] = {}
    if not isinstance(merged["allow_weak"], bool):
        out.add("", (), "defaults.allow_weak", "invalid: expected true or false")
        merged["allow_weak"] = False
    if auth not in AUTH_METHODS:
        out.add("", (), "auth", f"invalid: expected one of {', '.join(AUTH_METHODS)}")
        auth = "psk"
    if not isinstance(pki_dir, str) or not pki_dir.startswith("/"):
        out.add("", (), "pki_dir", "invalid: expected an absolute path on the hosts")
        pki_dir = PKI_DIR
    if not isinstance(secrets_dir, str) or not secrets_dir:
        out.add("", (), "secrets_dir", "required: the controller directory holding the PSK files")
        secrets_dir = ""
    # the settings given by name join the options: the agent's schema checks them together,
    # and a problem names defaults.<key>
    named = {k: merged[k] for k in IKE_SETTINGS if merged[k] is not None}
    check_default(merged["start_action"], "defaults.start_action", out)
    # proposals the defaults do not name stay None: the built-in profile, per IKE version
    given = {k: v for k, v in (defaults or {}).items() if v is not None}
    return _Settings(
        proposals={kind: given.get(f"{kind.value}_proposals") for kind in PROPOSAL_VARS},
        options=dict(merged["options"]),
        named=named,
        lifetimes={k: merged[k] for k in NAMED_SETTINGS if merged[k] is not None},
        start_action=merged["start_action"],
        allow_weak=merged["allow_weak"],
        secrets_dir=secrets_dir,
        generate_keys=bool(generate_keys),
        exists=exists,
        auth=auth,
        pki_dir=pki_dir.rstrip("/") or "/",
    )


def _topology(
    topology: Any, hostvars: Mapping[str, Mapping[str, Any]], play: Sequence[str], out: Collector
) -> Any:
    """The topology parameter, else the play hosts' ``ikelab_topology`` (which must agree).
    An empty mapping is no topology, as None (a role default of ``{}`` defers to the hosts)."""
    if topology is not None and topology != {}:
        return topology
    seen: dict[str, tuple[str, Any]] = {}
    for host in play:
        value = hostvars[host].get(TOPOLOGY)
        if value is not None:
            seen.setdefault(json.dumps(value, sort_keys=True, default=str), (host, value))
    if len(seen) > 1:
        (h1, v1), (h2, v2) = list(seen.values())[:2]
        out.add(h2, (), TOPOLOGY, f"the play's hosts disagree: {h1} has {v1!r}, {h2} has {v2!r}")
        return None
    return next(iter(seen.values()))[1] if seen else None


def make_plan(
    hostvars: Mapping[str, Mapping[str, Any]],
    groups: Mapping[str, Sequence[str]],
    hosts: Sequence[str] | None = None,
    topology: Any = None,
    secrets_dir: str = "",
    generate_keys: bool = False,
    defaults: Mapping[str, Any] | None = None,
    exists: Callable[[str], bool] = os.path.exists,
    problems: Iterable[Problem] = (),
    auth: str = "psk",
    pki_dir: str = PKI_DIR,
) -> Plan:
    """Every tunnel of the inventory with both ends ready for ``ikelab.ipsec.tunnel``.

    ``problems``: found while gathering the inputs (reported with the planner's own, which
    leave those hosts' fields alone)."""
    out = Collector(problems)
    inventory = frozenset(hostvars)
    for host in sorted(set(hosts or ()) - inventory):
        out.add(host, (), "hosts", "not in the inventory")
    play = sorted(set(hosts if hosts is not None else inventory) & inventory)
    settings = _settings(defaults, secrets_dir, generate_keys, exists, out, auth, pki_dir)

    decls = topology_declarations(_topology(topology, hostvars, play, out), groups, out)
    for host in play:
        decls += host_declarations(host, hostvars[host].get("ikelab_tunnels"), out)
    specs = merge_declarations(decls, inventory, frozenset(play), out)

    tunnels_of: dict[str, list[str]] = {}
    for spec in specs.values():
        for end in spec.ends:
            tunnels_of.setdefault(end, []).append(spec.id)
    sites = {
        host: check_site(host, hostvars[host], settings.proposals, settings.allow_weak, tids, out)
        for host, tids in sorted(tunnels_of.items())
    }
    check_unique(sites, tunnels_of, out)
    check_routes(specs, sites, out)

    entries: dict[str, list[dict[str, Any]]] = {host: [] for host in play}
    name_fields: dict[tuple[str, str], str] = {}
    planned = []
    for spec in specs.values():
        tunnel = _plan_tunnel(spec, sites, settings, out)
        for host, (_name, field) in tunnel["names"].items():
            name_fields[(host, spec.id)] = field
        if tunnel["summary"] is not None:
            planned.append(tunnel["summary"])
            for end in spec.ends:
                entries[end].append(tunnel["ends"][end])
    _check_names(entries, name_fields, out)
    out.raise_if_any()
    for host in entries:
        entries[host].sort(key=lambda e: e["peer"])
    return Plan(hosts=entries, tunnels=planned)


def _tunnel_setting(
    spec: TunnelSpec, attr: str, kind: Kind, settings: _Settings, out: Collector
) -> ProposalSet | None:
    """A proposal setting given by the tunnel's declarations (which must agree), else None."""
    chosen: ProposalSet | None = None
    for d in spec.declarations:
        value = getattr(d, attr)
        if value is UNSET:
            continue
        ps = check_proposals(
            d.owner, f"{d.field}.{attr}", value, kind, settings.allow_weak, (spec.id,), out
        )
        if ps is None:
            continue
        if chosen is None:
            chosen = ps
        elif ps.keywords != chosen.keywords:
            out.add(
                d.owner,
                (spec.id,),
                ps.field,
                f"conflicting settings: {', '.join(ps.keywords)} here, "
                f"{', '.join(chosen.keywords)} in {chosen.field} of {chosen.owner}",
            )
    return chosen


def _tunnel_options(
    spec: TunnelSpec, out: Collector
) -> tuple[dict[str, Any], dict[str, tuple[str, str]]]:
    """Options of the tunnel's declarations merged key by key (``child`` keys too)."""
    merged: dict[str, Any] = {}
    sources: dict[str, tuple[str, str]] = {}
    for d in spec.declarations:
        if d.settings is not UNSET:
            _merge_options(merged, sources, d.settings, (d.owner, d.field), (out, spec.id))
        for option, source in named_options({} if d.named is UNSET else d.named, d.owner, d.field):
            _merge_options(merged, sources, option, source, (out, spec.id))
        if d.options is UNSET:
            continue
        _merge_options(
            merged, sources, d.options, (d.owner, f"{d.field}.options"), conflicts=(out, spec.id)
        )
    return merged, sources


def _merge_options(
    merged: dict[str, Any],
    sources: dict[str, tuple[str, str]],
    options: Mapping[str, Any],
    source: tuple[str, str],
    conflicts: tuple[Collector, str] | None = None,
) -> None:
    """Merge ``options`` into ``merged``; with ``conflicts``, differing values are problems,
    else the new value wins."""
    for key, value in options.items():
        if key == "child" and isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            child = dict(merged[key])
            for ckey, cvalue in value.items():
                _merge_one(child, sources, ckey, cvalue, source, conflicts, prefix="child.")
            merged[key] = child
            continue
        _merge_one(merged, sources, key, value, source, conflicts)


def _merge_one(
    target: dict[str, Any],
    sources: dict[str, tuple[str, str]],
    key: str,
    value: Any,
    source: tuple[str, str],
    conflicts: tuple[Collector, str] | None,
    prefix: str = "",
) -> None:
    path = prefix + key
    if conflicts is not None and key in target and target[key] != value:
        out, tid = conflicts
        first = sources.get(path, source)
        out.add(
            source[0],
            (tid,),
            display_field(source[1], path),
            f"conflicting settings: {value!r} here, {target[key]!r} in "
            f"{display_field(first[1], path)} of {first[0]}",
        )
        return
    target[key] = dict(value) if isinstance(value, Mapping) else value
    sources[path] = source
    if isinstance(value, Mapping):
        for ckey in value:
            sources[f"{path}.{ckey}"] = source


def _plan_tunnel(
    spec: TunnelSpec, sites: dict[str, Site], settings: _Settings, out: Collector
) -> dict[str, Any]:
    """``ends`` (host -> entry), ``summary`` (None when a problem left an end unplanned) and
    ``names`` (host -> (connection name, field) given by ikelab_tunnels)."""
    a, b = spec.ends
    tid = spec.id
    ends = (sites[a], sites[b])
    if (
        ends[0].underlay
        and ends[1].underlay
        and ends[0].underlay.version != ends[1].underlay.version
    ):
        out.add(
            a,
            (tid,),
            UNDERLAY,
            f"address families differ: {ends[0].underlay} of {a}, {ends[1].underlay} of {b}",
        )

    names = _connection_names(spec, out)
    shared_options, shared_sources = _tunnel_options(spec, out)
    actions = start_actions(spec, settings.start_action, out)
    merged_ends: dict[str, tuple[dict[str, Any], dict[str, tuple[str, str]]]] = {}
    for me, start in zip(ends, actions, strict=True):
        options: dict[str, Any] = {}
        sources: dict[str, tuple[str, str]] = {}
        _merge_options(options, sources, settings.named, ("", "defaults"))
        _merge_options(options, sources, settings.options, ("", "defaults.options"))
        for option, source in named_options(settings.lifetimes, "", "defaults"):
            _merge_options(options, sources, option, source)
        _merge_options(options, sources, me.options, (me.name, TUNNEL_OPTIONS))
        _merge_options(options, sources, shared_options, ("", "options"))
        sources |= shared_sources
        known = len(out.problems)
        check_options(me.name, tid, options, sources, start, out)
        if len(out.problems) == known:  # the module's own rules, on what the schema accepts
            check_end(
                me.name, tid, options, sources, start, ike_version(options.get("version")), out
            )
        merged_ends[me.name] = (options, sources)
    check_ends_agree(tid, merged_ends, out)
    versions = {host: ike_version(merged[0].get("version")) for host, merged in merged_ends.items()}

    proposals: dict[str, dict[Kind, ProposalSet | None]] = {a: {}, b: {}}
    for kind in PROPOSAL_VARS:
        attr = f"{kind.value}_proposals"
        shared = _tunnel_setting(spec, attr, kind, settings, out)
        for site in ends:
            chosen = shared or site.proposals[kind]
            if chosen is not None:
                # IKEv1: the built-in profile becomes compat, named proposals are checked
                chosen = for_version(site.name, tid, chosen, kind, versions[site.name], out)
            proposals[site.name][kind] = chosen
    negotiated = None
    pa, pb = _complete(proposals[a]), _complete(proposals[b])
    # ends on different versions never negotiate: _check_ends_agree said so
    if pa is not None and pb is not None and versions[a] == versions[b]:
        negotiated = negotiate_tunnel(tid, a, b, pa, pb, out, version=versions[a] or 2)

    pubkey = settings.auth == "pubkey"
    psk = os.path.join(settings.secrets_dir, f"{tid}.psk") if settings.secrets_dir else ""
    present = bool(psk) and not pubkey and settings.exists(psk)
    if psk and not pubkey and not present and not settings.generate_keys:
        out.add(
            a,
            (tid,),
            "psk_file",
            f"missing key: {psk} does not exist (create it with ikelab.ipsec.keygen, or "
            "plan with generate_keys)",
        )

    result: dict[str, Any] = {"ends": {}, "names": names, "summary": None}
    for me, peer, start in ((ends[0], ends[1], actions[0]), (ends[1], ends[0], actions[1])):
        options = merged_ends[me.name][0]
        if negotiated is None or None in (me.underlay, peer.underlay, me.subnets, peer.subnets):
            continue
        if me.ike_id is None or peer.ike_id is None:
            continue
        result["ends"][me.name] = {
            "name": names.get(me.name, (peer.name, ""))[0],
            "peer": peer.name,
            "tunnel_id": tid,
            "local_addrs": [str(me.underlay)],
            "remote_addrs": [str(peer.underlay)],
            "local_id": me.ike_id,
            "remote_id": peer.ike_id,
            "local_ts": [str(n) for n in me.subnets or ()],
            "remote_ts": [str(n) for n in peer.subnets or ()],
            "ike_proposals": proposals[me.name][Kind.IKE].keywords,  # type: ignore[union-attr]
            "esp_proposals": proposals[me.name][Kind.ESP].keywords,  # type: ignore[union-attr]
            "start_action": start,
            "on_demand": actions[0] == "trap",  # the initiating end traps (plan_settings)
            "psk_file": None if pubkey else psk,
            **(host_pki_paths(settings.pki_dir, me.name) if pubkey else {}),
            "child": CHILD_NAME,
            **module_options(options),
            "negotiated": negotiated,
        }
    if len(result["ends"]) != 2:
        return result
    ea, eb = result["ends"][a], result["ends"][b]
    result["summary"] = {
        "id": tid,
        "ends": [a, b],
        "initiator": a,
        "responder": b,
        "connections": {a: ea["name"], b: eb["name"]},
        "underlay": {a: ea["local_addrs"][0], b: eb["local_addrs"][0]},
        "subnets": {a: ea["local_ts"], b: eb["local_ts"]},
        "ike_ids": {a: ea["local_id"], b: eb["local_id"]},
        "auth": settings.auth,
        "start_action": actions[0],
        "psk_file": None if pubkey else psk,
        "psk_present": None if pubkey else present,
        "negotiated": negotiated,
    }
    return result


def host_pki_paths(pki_dir: str, host: str) -> dict[str, Any]:
    """The ``auth: pubkey`` parameters of a host's tunnel entries: its certificate and key and
    the CA certificate, in ``pki_dir`` on the host (``site_to_site`` puts them there)."""
    return {
        "auth": "pubkey",
        "certs": [f"{pki_dir}/{host}.crt"],
        "private_key": f"{pki_dir}/{host}.key",
        "cacerts": [f"{pki_dir}/ca.crt"],
    }


def _complete(proposals: Mapping[Kind, ProposalSet | None]) -> dict[Kind, ProposalSet] | None:
    """The end's proposals of every kind, or None when one was refused (and reported)."""
    done = {kind: ps for kind, ps in proposals.items() if ps is not None}
    return done if len(done) == len(PROPOSAL_VARS) else None


def _connection_names(spec: TunnelSpec, out: Collector) -> dict[str, tuple[str, str]]:
    """host -> (connection name, field) for ends whose ikelab_tunnels entry names it."""
    names: dict[str, tuple[str, str]] = {}
    for d in spec.declarations:
        if d.name is None:
            continue
        field = f"{d.field}.name"
        if d.owner in names and names[d.owner][0] != d.name:
            out.add(
                d.owner,
                (spec.id,),
                field,
                f"conflicting settings: {d.name!r} here, {names[d.owner][0]!r} in "
                f"{names[d.owner][1]}",
            )
            continue
        names.setdefault(d.owner, (d.name, field))
    return names


def _check_names(
    entries: dict[str, list[dict[str, Any]]],
    fields: dict[tuple[str, str], str],
    out: Collector,
) -> None:
    """Connection names are valid file names and unique on each host."""
    for host, host_entries in entries.items():
        seen: dict[str, str] = {}
        for e in host_entries:
            name, tid = e["name"], e["tunnel_id"]
            field = fields.get((host, tid), "name")
            if not _CONNECTION_NAME.match(name):
                out.add(
                    host,
                    (tid,),
                    field,
                    f"invalid connection name {name!r} (letters, digits, '_', '.', '-'; "
                    "give the ikelab_tunnels entry a name)",
                )
            elif name in seen:
                out.add(
                    host, (seen[name], tid), field, f"duplicate connection name {name!r} on {host}"
                )
            seen.setdefault(name, tid)
