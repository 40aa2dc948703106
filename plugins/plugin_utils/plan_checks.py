# Copyright: contributors to the ikelab.ipsec collection
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Checks of one site's variables, of the fleet (duplicates, routes) and of tunnel options;
an end's proposals are checked in ``plan_proposals``.

Every check reports into a ``Collector`` and returns ``None`` for a value it refused, so the
planner goes on and reports every problem at once. IKE identities and tunnel options are
checked by the agent's own configuration schema (``ikeagent.config``).
"""

from __future__ import annotations

import functools
import ipaddress
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ansible_collections.ikelab.ipsec.plugins.plugin_utils.agent_import import ensure_importable
from ansible_collections.ikelab.ipsec.plugins.plugin_utils.plan_problems import Collector
from ansible_collections.ikelab.ipsec.plugins.plugin_utils.plan_proposals import (
    ProposalSet,
    builtin_proposals,
    check_proposals,
    for_version,
    negotiate_tunnel,
)
from ansible_collections.ikelab.ipsec.plugins.plugin_utils.plan_topology import (
    TunnelSpec,
    display_field,
)

ensure_importable()

from ikeagent.config.errors import ConfigError, Invalid  # noqa: E402
from ikeagent.config.identity import parse_identity  # noqa: E402
from ikeagent.config.schema import parse_config  # noqa: E402
from ikeagent.config.values import Version  # noqa: E402
from ikeagent.crypto.suites import Kind  # noqa: E402

# what the planner and the tests import from here; ProposalSet, check_proposals, for_version and
# negotiate_tunnel moved to plan_proposals and stay importable here
__all__ = [
    "PROPOSAL_VARS",
    "TUNNEL_OPTIONS",
    "UNDERLAY",
    "Kind",
    "ProposalSet",
    "Site",
    "check_options",
    "check_proposals",
    "check_routes",
    "check_site",
    "check_unique",
    "for_version",
    "ike_version",
    "negotiate_tunnel",
    "overlapping",
]

UNDERLAY = "ikelab_underlay_address"
SUBNETS = "ikelab_protected_subnets"
IKE_ID = "ikelab_ike_id"
PROPOSAL_VARS = {Kind.IKE: "ikelab_ike_proposals", Kind.ESP: "ikelab_esp_proposals"}
TUNNEL_OPTIONS = "ikelab_tunnel_options"

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network

# Keys of the agent's connection and child sections that the planner sets from the inventory.
PLANNED_CONNECTION_KEYS = {
    "local_addrs": UNDERLAY,
    "remote_addrs": UNDERLAY,
    "proposals": "ike_proposals",
    "local": IKE_ID,
    "local-1": IKE_ID,
    "remote": IKE_ID,
    "remote-1": IKE_ID,
    "children": "options.child",
}
PLANNED_CHILD_KEYS = {
    "local_ts": SUBNETS,
    "remote_ts": SUBNETS,
    "esp_proposals": "esp_proposals",
    "start_action": "the planner (the end whose name sorts first starts; start_action: trap "
    "in ikelab_tunnels or the defaults makes it trap)",
}
# a setting the schema asks for because of another one: named where that other one was set
# (Aggressive Mode with a PSK needs allow_aggressive_psk beside aggressive)
_RELATED = {"allow_aggressive_psk": "aggressive"}
_SAMPLE = "tunnel"  # connection name in the sample configuration built for the schema


@dataclass(frozen=True, slots=True)
class Site:
    """One host's validated variables; None where a value was refused (and reported)."""

    name: str
    underlay: Address | None
    subnets: tuple[Network, ...] | None
    ike_id: str | None
    identity: tuple[int, bytes] | None  # (ID type, data): what makes two IKE ids the same
    proposals: dict[Kind, ProposalSet | None]
    options: dict[str, Any]


def check_underlay(host: str, value: Any, tunnels: Sequence[str], out: Collector) -> Address | None:
    if value is None or value == "":
        out.add(host, tunnels, UNDERLAY, "missing: the address IKE runs over")
        return None
    if not isinstance(value, str):
        out.add(host, tunnels, UNDERLAY, f"invalid: expected an IP address, got {value!r}")
        return None
    try:
        addr = ipaddress.ip_address(value.strip())
    except ValueError:
        out.add(host, tunnels, UNDERLAY, f"invalid: {value!r} is not an IP address")
        return None
    if addr.is_unspecified or addr.is_multicast or addr.is_loopback:
        out.add(host, tunnels, UNDERLAY, f"invalid: {addr} is not a unicast address of a gateway")
        return None
    return addr


def check_subnets(
    host: str, value: Any, tunnels: Sequence[str], out: Collector
) -> tuple[Network, ...] | None:
    if value is None or value == "" or value == []:
        out.add(host, tunnels, SUBNETS, "missing: the subnets behind this gateway (CIDR list)")
        return None
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, Sequence):
        out.add(host, tunnels, SUBNETS, f"invalid: expected a list of subnets, got {value!r}")
        return None
    nets: list[Network] = []
    bad = False
    for i, item in enumerate(items):
        field = f"{SUBNETS}[{i}]"
        if not isinstance(item, str):
            out.add(host, tunnels, field, f"invalid: expected a CIDR subnet, got {item!r}")
            bad = True
            continue
        try:
            nets.append(ipaddress.ip_network(item.strip(), strict=True))
        except ValueError as e:
            why = str(e) if item.strip() in str(e) else f"{item!r}: {e}"
            out.add(host, tunnels, field, f"invalid: {why}")
            bad = True
    for i, a in enumerate(nets):
        for b in nets[i + 1 :]:
            if a.version == b.version and a.overlaps(b):
                out.add(host, tunnels, SUBNETS, f"overlapping: {a} overlaps {b} of the same host")
                bad = True
    return None if bad else tuple(nets)


def check_ike_id(
    host: str, value: Any, tunnels: Sequence[str], out: Collector
) -> tuple[str, tuple[int, bytes]] | None:
    """The IKE id (default: the inventory name), parsed as the agent parses it."""
    text = host if value is None else value
    try:
        ident = parse_identity(text)
    except Invalid as e:
        out.add(host, tunnels, IKE_ID, f"invalid: {e}")
        return None
    if ident is None:
        out.add(host, tunnels, IKE_ID, f"invalid: {text!r} matches any peer, give one identity")
        return None
    return str(text).strip(), (int(ident.id_type), ident.data)


def ike_version(value: Any) -> int | None:
    """The IKE version a ``version`` setting asks for, read as the agent's schema reads it
    (absent: 2); None for a value the schema refuses (reported by ``check_options``)."""
    if value is None:
        return 2
    try:
        return Version().check(value)
    except Invalid:
        return None


def check_site(
    host: str,
    hv: Mapping[str, Any],
    defaults: Mapping[Kind, Any],
    allow_weak: bool,
    tunnels: Sequence[str],
    out: Collector,
) -> Site:
    """``defaults``: kind -> the action's default proposals, None where it names none."""
    ident = check_ike_id(host, hv.get(IKE_ID), tunnels, out)
    props: dict[Kind, ProposalSet | None] = {}
    for kind, var in PROPOSAL_VARS.items():
        if hv.get(var) is None and defaults.get(kind) is None:
            props[kind] = builtin_proposals(kind)
        elif hv.get(var) is None:
            props[kind] = check_proposals(
                "", f"defaults.{kind.value}_proposals", defaults[kind], kind, allow_weak, (), out
            )
        else:
            props[kind] = check_proposals(host, var, hv[var], kind, allow_weak, tunnels, out)
    options = hv.get(TUNNEL_OPTIONS)
    if options is not None and not isinstance(options, Mapping):
        out.add(host, tunnels, TUNNEL_OPTIONS, "invalid: expected a mapping of agent settings")
        options = None
    return Site(
        name=host,
        underlay=check_underlay(host, hv.get(UNDERLAY), tunnels, out),
        subnets=check_subnets(host, hv.get(SUBNETS), tunnels, out),
        ike_id=ident[0] if ident else None,
        identity=ident[1] if ident else None,
        proposals=props,
        options=dict(options or {}),
    )


# --- the fleet: duplicates and routes ----------------------------------------------------------


def check_unique(sites: dict[str, Site], tunnels_of: dict[str, list[str]], out: Collector) -> None:
    """No two hosts share an underlay address or an IKE identity."""
    checks: tuple[tuple[str, str, Callable[[Site], Any]], ...] = (
        (UNDERLAY, "underlay address", lambda s: s.underlay),
        (IKE_ID, "IKE id", lambda s: s.identity),
    )
    for field, what, key in checks:
        by_value: dict[Any, list[Site]] = {}
        for site in sites.values():
            if key(site) is not None:
                by_value.setdefault(key(site), []).append(site)
        for same in by_value.values():
            for site in same if len(same) > 1 else ():
                others = ", ".join(s.name for s in same if s is not site)
                shown = site.underlay if field == UNDERLAY else site.ike_id
                out.add(
                    site.name,
                    tunnels_of[site.name],
                    field,
                    f"duplicate: {shown} is also the {what} of {others}",
                )


def overlaps(a: Sequence[Any], b: Sequence[Any]) -> list[tuple[Any, Any]]:
    return [(x, y) for x in a for y in b if x.version == y.version and x.overlaps(y)]


def check_routes(specs: Mapping[str, TunnelSpec], sites: dict[str, Site], out: Collector) -> None:
    """A host's own subnets must not overlap a peer's, and no two peers of a host may share a
    destination: the host could not route it through both tunnels."""
    peers: dict[str, list[tuple[str, str]]] = {}
    for spec in specs.values():
        a, b = spec.ends
        peers.setdefault(a, []).append((b, spec.id))
        peers.setdefault(b, []).append((a, spec.id))
        sa, sb = sites[a].subnets, sites[b].subnets
        if sa and sb:
            for x, y in overlaps(sa, sb):
                out.add(a, (spec.id,), SUBNETS, f"overlaps: {x} of {a} overlaps {y} of peer {b}")
            if not {n.version for n in sa} & {n.version for n in sb}:
                out.add(
                    a,
                    (spec.id,),
                    SUBNETS,
                    f"no common address family between the subnets of {a} and {b}",
                )
    for host, theirs in sorted(peers.items()):
        tunnel_to = dict(theirs)
        routed = [(n, p) for p, _subnet in theirs for n in sites[p].subnets or ()]
        for (x, p), (y, q) in overlapping(routed):
            if p == q:
                continue  # one peer's own overlaps are reported on that peer
            if q < p:
                (x, p), (y, q) = (y, q), (x, p)
            out.add(
                host,
                (tunnel_to[p], tunnel_to[q]),
                SUBNETS,
                f"overlaps: {x} of {p} overlaps {y} of {q}; {host} cannot route one "
                "destination through two tunnels",
            )


def overlapping(items: Sequence[tuple[Any, str]]) -> list[tuple[tuple[Any, str], ...]]:
    """Every pair of overlapping networks among (network, tag) items, in O(n log n + pairs):
    CIDR networks are nested or disjoint, so after sorting by start (widest first) the
    networks still open form a chain of containers, each containing the next."""
    pairs = []
    chain: list[tuple[Any, str]] = []
    for item in sorted(
        items, key=lambda i: (i[0].version, i[0].network_address, i[0].prefixlen, i[1])
    ):
        net = item[0]
        while chain and (
            chain[-1][0].version != net.version
            or chain[-1][0].broadcast_address < net.network_address
        ):
            chain.pop()
        pairs += [(outer, item) for outer in chain]
        chain.append(item)
    return pairs


# --- options ----------------------------------------------------------------------------------


def check_options(
    host: str,
    tid: str,
    options: Mapping[str, Any],
    sources: Mapping[str, tuple[str, str]],
    start_action: str,
    out: Collector,
) -> None:
    """Check one end's options with the agent's schema: connection keys at the top, child keys
    under ``child``. ``sources`` maps an option key (``x`` or ``child.x``) to the (host, field)
    it came from, so that a problem names the variable the user wrote."""
    conn: dict[str, Any] = {}
    child: dict[str, Any] = {}
    for key, value in options.items():
        where = sources.get(key, (host, "options"))
        if key == "child":
            if not isinstance(value, Mapping):
                out.add(
                    where[0] or host,
                    (tid,),
                    f"{where[1]}.child",
                    "invalid: expected a mapping of child (CHILD_SA) settings",
                )
                continue
            for ckey, cvalue in value.items():
                cwhere = sources.get(f"child.{ckey}", where)
                if ckey in PLANNED_CHILD_KEYS:
                    out.add(
                        cwhere[0] or host,
                        (tid,),
                        f"{cwhere[1]}.child.{ckey}",
                        f"not allowed: set from {PLANNED_CHILD_KEYS[ckey]}",
                    )
                else:
                    child[ckey] = cvalue
        elif key in PLANNED_CONNECTION_KEYS:
            out.add(
                where[0] or host,
                (tid,),
                f"{where[1]}.{key}",
                f"not allowed: set from {PLANNED_CONNECTION_KEYS[key]}",
            )
        else:
            conn[key] = value
    for path, reason in _schema_problems(json.dumps([conn, child], sort_keys=True), start_action):
        key, rest = _option_key(path)
        reason = _without_planned_keys(reason, child=key.startswith("child."))
        where = (
            sources.get(key)
            or sources.get(key.split(".")[0])
            or sources.get(_RELATED.get(key, ""))
            or (host, "options")
        )
        out.add(where[0] or host, (tid,), display_field(where[1], key) + rest, reason)


@functools.lru_cache(maxsize=4096)  # a fleet has few distinct option sets
def _schema_problems(options_json: str, start_action: str) -> tuple[tuple[str, str], ...]:
    """The agent schema's problems with a sample connection carrying these options."""
    conn, child = json.loads(options_json)
    sample = {
        "connections": {
            _SAMPLE: {
                **conn,
                "local_addrs": ["192.0.2.1"],
                "remote_addrs": ["192.0.2.2"],
                # the planner checks the real ones; these suit IKEv1 (version: 1) too
                "proposals": ["aes256-sha256-modp2048"],
                "local": {"auth": "psk", "id": "local.invalid"},
                "remote": {"auth": "psk", "id": "remote.invalid"},
                "children": {
                    "net": {
                        **child,
                        "local_ts": ["10.0.0.0/24"],
                        "remote_ts": ["10.255.0.0/24"],
                        "esp_proposals": ["aes256-sha256"],
                        "start_action": start_action,
                    }
                },
            }
        }
    }
    try:
        parse_config(sample)
    except ConfigError as e:
        return tuple(e.problems)
    return ()


def _option_key(path: str) -> tuple[str, str]:
    """``connections.tunnel.children.net.rekey_time[0]`` -> (``child.rekey_time``, ``[0]``)."""
    prefix = f"connections.{_SAMPLE}."
    rest = path[len(prefix) :] if path.startswith(prefix) else path
    child = rest.startswith("children.net.")
    if child:
        rest = rest[len("children.net.") :]
    cut = min((i for i in (rest.find("."), rest.find("[")) if i >= 0), default=len(rest))
    key, tail = rest[:cut], rest[cut:]
    return (f"child.{key}" if child else key), tail


def _without_planned_keys(reason: str, child: bool) -> str:
    """The schema's "unknown key (expected one of: ...)" without the keys the planner sets."""
    head = "unknown key (expected one of: "
    if not reason.startswith(head) or not reason.endswith(")"):
        return reason
    planned = PLANNED_CHILD_KEYS if child else PLANNED_CONNECTION_KEYS
    keys = [k for k in reason[len(head) : -1].split(", ") if k not in planned]
    if not child:
        keys.append("child")
    return head + ", ".join(keys) + ")"
