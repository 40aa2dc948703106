# Copyright: contributors to the ikelab.ipsec collection
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""One tunnel of the plan: the entries of both ends (``ikelab.ipsec.tunnel`` parameters) and
the tunnel's summary.

``plan_tunnel(spec, sites, settings, out)`` merges an end's options (the tunnel's over the
host's ``ikelab_tunnel_options`` over the defaults), checks them, picks and negotiates the
proposals, and names the PSK file or, with ``auth: pubkey``, the certificates
(``host_pki_paths``). ``Settings`` holds what the planner read from its parameters.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from ansible_collections.ikelab.ipsec.plugins.plugin_utils.plan_checks import (
    PROPOSAL_VARS,
    TUNNEL_OPTIONS,
    UNDERLAY,
    Site,
    check_options,
    ike_version,
)
from ansible_collections.ikelab.ipsec.plugins.plugin_utils.plan_problems import Collector
from ansible_collections.ikelab.ipsec.plugins.plugin_utils.plan_proposals import (
    Kind,
    ProposalSet,
    check_proposals,
    for_version,
    negotiate_tunnel,
)
from ansible_collections.ikelab.ipsec.plugins.plugin_utils.plan_settings import (
    check_end,
    check_ends_agree,
    module_options,
    named_options,
    start_actions,
)
from ansible_collections.ikelab.ipsec.plugins.plugin_utils.plan_topology import (
    UNSET,
    TunnelSpec,
    display_field,
)

PKI_DIR = "/etc/ikelab/pki"
CHILD_NAME = "net"


@dataclass(frozen=True, slots=True)
class Settings:
    """What the planner read from its parameters, the same for every tunnel."""

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


def _tunnel_setting(
    spec: TunnelSpec, attr: str, kind: Kind, settings: Settings, out: Collector
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


def plan_tunnel(
    spec: TunnelSpec, sites: dict[str, Site], settings: Settings, out: Collector
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
