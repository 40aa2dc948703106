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
proposals that IKEv1 cannot express are a problem of their field
(``plan_proposals.for_version``, the agent's own IKEv1 mapping). Ends on different versions are
one problem, not negotiated.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ansible_collections.ikelab.ipsec.plugins.module_utils.tunnel_config import AUTH_METHODS
from ansible_collections.ikelab.ipsec.plugins.plugin_utils.plan_checks import (
    PROPOSAL_VARS,
    check_routes,
    check_site,
    check_unique,
)
from ansible_collections.ikelab.ipsec.plugins.plugin_utils.plan_entries import (
    CHILD_NAME,
    PKI_DIR,
    Settings,
    host_pki_paths,
    plan_tunnel,
)
from ansible_collections.ikelab.ipsec.plugins.plugin_utils.plan_problems import (
    Collector,
    PlanError,
    Problem,
)
from ansible_collections.ikelab.ipsec.plugins.plugin_utils.plan_settings import (
    check_default,
    module_options,
)
from ansible_collections.ikelab.ipsec.plugins.plugin_utils.plan_topology import (
    IKE_SETTINGS,
    NAMED_SETTINGS,
    TOPOLOGY,
    host_declarations,
    merge_declarations,
    topology_declarations,
)

__all__ = [
    "CHILD_NAME",
    "DEFAULTS",
    "Plan",
    "PlanError",
    "Problem",
    "host_pki_paths",
    "make_plan",
    "module_options",
]

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
_CONNECTION_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,62}\Z")


@dataclass(frozen=True, slots=True)
class Plan:
    hosts: dict[str, list[dict[str, Any]]]  # per play host, its tunnel entries (by peer)
    tunnels: list[dict[str, Any]]  # every tunnel, by id

    def as_dict(self) -> dict[str, Any]:
        return {"plan": self.hosts, "tunnels": self.tunnels}


def _settings(
    defaults: Mapping[str, Any] | None,
    secrets_dir: str,
    generate_keys: bool,
    exists: Callable[[str], bool],
    out: Collector,
    auth: Any = "psk",
    pki_dir: Any = PKI_DIR,
) -> Settings:
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
    return Settings(
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
        tunnel = plan_tunnel(spec, sites, settings, out)
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
