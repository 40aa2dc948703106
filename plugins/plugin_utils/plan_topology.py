# Copyright: contributors to the ikelab.ipsec collection
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Which tunnels exist: the topology and each host's ``ikelab_tunnels``, merged by host pair.

Topologies (``ikelab_topology``):

- ``{type: full_mesh, group: G}``: a tunnel between every two hosts of G.
- ``{type: hub_and_spoke, hubs: G1, spokes: G2}``: every spoke to every hub, and the hubs
  meshed among themselves; spokes have no tunnels to each other (a spoke reaches the hubs'
  protected subnets only: there is no transit through a hub). A host may not be both.
- ``{type: pairs, pairs: [[a, b], ...]}``: the listed pairs.

Per host, ``ikelab_tunnels: [{peer: HOST, name, ike_proposals, esp_proposals, version,
aggressive, allow_aggressive_psk, start_action, <NAMED_SETTINGS>, options}]`` adds a tunnel to
HOST (or gives settings to a topology tunnel); ``version`` (1 or 2), ``aggressive`` and
``allow_aggressive_psk`` are the agent's connection settings of those names, given first-class;
``start_action`` (start or trap) and the lifetimes, liveness and on-demand settings
(``NAMED_SETTINGS``, the tunnel module's parameter names) are read by ``plan_settings``. A pair declared several times (on
both sides, twice, or also by the topology) is one tunnel; the settings are checked for
conflicts by the planner. A tunnel with one end outside the play is an error (only one end
would be configured); a topology tunnel with no end in the play is left out.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ansible_collections.ikelab.ipsec.plugins.module_utils.tunnel_settings import SETTINGS
from ansible_collections.ikelab.ipsec.plugins.plugin_utils.plan_problems import Collector

TOPOLOGY = "ikelab_topology"
TUNNELS = "ikelab_tunnels"
TOPOLOGY_KEYS: dict[str, tuple[str, ...]] = {
    "full_mesh": ("group",),
    "hub_and_spoke": ("hubs", "spokes"),
    "pairs": ("pairs",),
}
# connection settings a tunnel entry (and the planner's defaults) may give by name
IKE_SETTINGS = ("version", "aggressive", "allow_aggressive_psk")
# the tunnel module's parameters for lifetimes, liveness and on-demand keys (plan_settings),
# and the agent option each stands for (``child.x`` for a child key)
NAMED: dict[str, str] = {
    "dpd_delay": "dpd_delay",
    "rekey_time": "rekey_time",
    "child_rekey_time": "child.rekey_time",
    **{s.param: (f"child.{s.key}" if s.child else s.key) for s in SETTINGS},
}
NAMED_SETTINGS = tuple(NAMED)
_BY_PATH = {path: param for param, path in NAMED.items()}
TUNNEL_KEYS = (
    "peer",
    "name",
    "ike_proposals",
    "esp_proposals",
    *IKE_SETTINGS,
    "start_action",
    *NAMED_SETTINGS,
    "options",
)
UNSET: Any = object()  # a setting a declaration leaves to the hosts' variables


def display_field(field: str, path: str) -> str:
    """The field a problem names: ``<source>.<option path>``, except that a setting given by
    its parameter name (``NAMED``) is named as written (``defaults.inactivity``, not
    ``defaults.inactivity.child.inactivity``)."""
    head, dot, last = field.rpartition(".")
    if head and dot and _BY_PATH.get(path) == last:
        return field
    return f"{field}.{path}"


def tunnel_id(a: str, b: str) -> str:
    """``a--b`` with the ends sorted."""
    lo, hi = sorted((a, b))
    return f"{lo}--{hi}"


@dataclass(frozen=True, slots=True)
class Declaration:
    """One statement that a tunnel exists, from the topology or from a host's ikelab_tunnels."""

    owner: str  # the host whose ikelab_tunnels holds it, "" for the topology
    ends: tuple[str, str]  # (owner, peer), or the topology's pair
    field: str  # where it was written: "ikelab_tunnels[0]", "ikelab_topology.pairs[1]"
    name: str | None = None  # connection name on the owner (ikelab_tunnels only)
    ike_proposals: Any = UNSET
    esp_proposals: Any = UNSET
    options: Any = UNSET
    settings: Any = UNSET  # the IKE_SETTINGS given by name: {"version": 1, ...}
    start_action: Any = UNSET  # start or trap: what the initiating end does
    named: Any = UNSET  # NAMED_SETTINGS given: {"inactivity": "5m", ...}

    @property
    def id(self) -> str:
        return tunnel_id(*self.ends)


@dataclass(slots=True)
class TunnelSpec:
    id: str
    ends: tuple[str, str]  # sorted: ends[0] initiates
    declarations: list[Declaration] = field(default_factory=list)


def _members(
    groups: Mapping[str, Sequence[str]], key: str, topo: Mapping[str, Any], out: Collector
) -> list[str] | None:
    name = topo.get(key)
    path = f"{TOPOLOGY}.{key}"
    if not isinstance(name, str) or not name:
        out.add("", (), path, "required: the name of an inventory group")
        return None
    if name not in groups:
        out.add("", (), path, f"group {name!r} is not in the inventory")
        return None
    return sorted(set(groups[name]))


def topology_declarations(
    topology: Any, groups: Mapping[str, Sequence[str]], out: Collector
) -> list[Declaration]:
    """The tunnels a topology asks for (nothing for an absent or empty topology)."""
    if topology is None or topology == {}:
        return []
    if not isinstance(topology, Mapping):
        out.add("", (), TOPOLOGY, f"expected a mapping, got {type(topology).__name__}")
        return []
    kind = topology.get("type")
    if kind not in TOPOLOGY_KEYS:
        expected = ", ".join(TOPOLOGY_KEYS)
        out.add(
            "", (), f"{TOPOLOGY}.type", f"{kind!r} is not a topology (expected one of: {expected})"
        )
        return []
    allowed = ("type", *TOPOLOGY_KEYS[kind])
    for key in topology:
        if key not in allowed:
            out.add(
                "",
                (),
                f"{TOPOLOGY}.{key}",
                f"unknown key for type {kind} (expected one of: {', '.join(allowed)})",
            )
    if kind == "full_mesh":
        hosts = _members(groups, "group", topology, out)
        return [
            Declaration("", (a, b), f"{TOPOLOGY}.group")
            for a, b in itertools.combinations(hosts or [], 2)
        ]
    if kind == "hub_and_spoke":
        hubs = _members(groups, "hubs", topology, out)
        spokes = _members(groups, "spokes", topology, out)
        if hubs is None or spokes is None:
            return []
        for both in sorted(set(hubs) & set(spokes)):
            out.add(both, (), f"{TOPOLOGY}.spokes", "the host is both a hub and a spoke")
        spokes = [s for s in spokes if s not in hubs]
        decls = [
            Declaration("", (a, b), f"{TOPOLOGY}.hubs") for a, b in itertools.combinations(hubs, 2)
        ]
        decls += [Declaration("", (s, h), f"{TOPOLOGY}.spokes") for s in spokes for h in hubs]
        return decls
    return _pairs(topology.get("pairs"), out)


def _pairs(pairs: Any, out: Collector) -> list[Declaration]:
    path = f"{TOPOLOGY}.pairs"
    if not isinstance(pairs, Sequence) or isinstance(pairs, str) or not pairs:
        out.add("", (), path, "required: a list of [host, host] pairs")
        return []
    decls = []
    for i, pair in enumerate(pairs):
        ok = (
            isinstance(pair, Sequence)
            and not isinstance(pair, str)
            and len(pair) == 2
            and all(isinstance(h, str) and h for h in pair)
        )
        if not ok:
            out.add("", (), f"{path}[{i}]", f"expected a pair of host names, got {pair!r}")
            continue
        decls.append(Declaration("", (pair[0], pair[1]), f"{path}[{i}]"))
    return decls


def host_declarations(host: str, value: Any, out: Collector) -> list[Declaration]:
    """The entries of one host's ``ikelab_tunnels``."""
    if value is None:
        return []
    if not isinstance(value, Sequence) or isinstance(value, str):
        out.add(host, (), TUNNELS, "expected a list of {peer: HOST, ...} entries")
        return []
    decls = []
    for i, entry in enumerate(value):
        path = f"{TUNNELS}[{i}]"
        if not isinstance(entry, Mapping):
            out.add(host, (), path, "expected a mapping {peer: HOST, ...}")
            continue
        peer = entry.get("peer")
        if not isinstance(peer, str) or not peer:
            out.add(host, (), f"{path}.peer", "required: the inventory name of the other end")
            continue
        tid = (tunnel_id(host, peer),)
        bad = False
        for key in entry:
            if key not in TUNNEL_KEYS:
                out.add(
                    host,
                    tid,
                    f"{path}.{key}",
                    f"unknown key (expected one of: {', '.join(TUNNEL_KEYS)})",
                )
                bad = True
        name = entry.get("name")
        if name is not None and not isinstance(name, str):
            out.add(host, tid, f"{path}.name", "expected a string")
            bad = True
        options = entry.get("options", UNSET)
        if options is not UNSET and options is not None and not isinstance(options, Mapping):
            out.add(host, tid, f"{path}.options", "expected a mapping of agent settings")
            bad = True
        if bad:
            continue
        settings = {k: entry[k] for k in IKE_SETTINGS if entry.get(k) is not None}
        named = {k: entry[k] for k in NAMED_SETTINGS if entry.get(k) is not None}
        decls.append(
            Declaration(
                host,
                (host, peer),
                path,
                name,
                entry.get("ike_proposals", UNSET),
                entry.get("esp_proposals", UNSET),
                UNSET if options is None else options,
                settings or UNSET,
                entry.get("start_action", UNSET),
                named or UNSET,
            )
        )
    return decls


def merge_declarations(
    declarations: Sequence[Declaration],
    inventory: frozenset[str],
    play: frozenset[str],
    out: Collector,
) -> dict[str, TunnelSpec]:
    """One TunnelSpec per host pair, sorted by id; bad ends are reported and left out."""
    tunnels: dict[str, TunnelSpec] = {}
    for d in declarations:
        a, b = d.ends
        reporter = d.owner or next((h for h in d.ends if h in play), "")
        where = f"{d.field}.peer" if d.owner else d.field
        if a == b:
            out.add(reporter or a, (d.id,), where, "a tunnel to itself")
            continue
        unknown = [h for h in d.ends if h not in inventory]
        if unknown:
            for h in unknown:
                out.add(reporter, (d.id,), where, f"host {h} is not in the inventory")
            continue
        outside = [h for h in d.ends if h not in play]
        if len(outside) == 2:
            continue  # a topology tunnel between hosts this play does not configure
        if outside:
            out.add(
                reporter,
                (d.id,),
                where,
                f"host {outside[0]} is not in the play (only one end of the tunnel "
                "would be configured)",
            )
            continue
        ends = tuple(sorted(d.ends))
        spec = tunnels.setdefault(d.id, TunnelSpec(d.id, (ends[0], ends[1])))
        spec.declarations.append(d)
    return dict(sorted(tunnels.items()))
