"""Routes for the xfrm data plane: the kernel looks a route up before it applies a policy.

A host whose routing table has no route covering a child's remote traffic selectors (no
default route, or one through another interface) would answer "network unreachable" before
the XFRM policy is ever consulted, so, as strongSwan's kernel-netlink does
(``charon.install_routes``, ``charon.routing_table`` 220, ``charon.routing_table_prio`` 220):

- a routing table of the agent's own (220 by default) and an ``ip rule`` at priority 220
  sending every lookup there first (the table only holds our routes, so other lookups fall
  through to ``main``);
- for each remote TS of a child (or of a trap), a route to its network via the underlay next hop towards the
  peer (or straight on the interface the peer is reached through when it is on-link), with
  ``src`` a local address inside the local TS when the host has one, so traffic the gateway
  itself originates takes the protected source address and matches the policy.

Ownership: routes and the rule carry the protocol number ``RTPROT_IKEAGENT`` in our table;
``reconcile`` removes only those (leftovers of an earlier run), never another daemon's.
Routes are shared by children with the same remote network (reference counted by reqid); two
children to one network from different local networks (other ``src``) share the kernel's one
route to it: the newest's is in, and the other's comes back when that one goes.
Failures are logged and counted, never raised: policies and SAs work without our routes on a
host whose own routing already covers the remote networks.
"""

from __future__ import annotations

import ipaddress
import logging
import socket
from collections.abc import Callable
from dataclasses import dataclass

from pyroute2.netlink.exceptions import NetlinkError

from ..base import ChildSa, TrapPolicy

log = logging.getLogger(__name__)

DEFAULT_ROUTING_TABLE = 220
DEFAULT_ROUTING_PRIORITY = 220
# rtm_protocol of everything we add (not in iproute2's rt_protos list; 0-4 are the kernel's)
RTPROT_IKEAGENT = 157
RT_TABLE_MAIN = 254
# what rtnetlink requests raise (pyroute2's NetlinkError is no OSError)
_ERRORS = (OSError, NetlinkError)


@dataclass(frozen=True, slots=True)
class RouteSpec:
    """One route in our table: destination network, next hop (None when on-link), output
    interface index and preferred source (None when no local address is inside local TS)."""

    dst: ipaddress.IPv4Network | ipaddress.IPv6Network
    gateway: str | None
    oif: int
    src: str | None

    @property
    def family(self) -> int:
        return socket.AF_INET if self.dst.version == 4 else socket.AF_INET6


def open_iproute(netns: str | None) -> object:
    """pyroute2's IPRoute, in the named network namespace when one is given."""
    from pyroute2 import IPRoute, NetNS

    return NetNS(netns) if netns else IPRoute()


class RouteTable:
    """Our routing table and its rule, over rtnetlink (pyroute2)."""

    def __init__(
        self,
        netns: str | None = None,
        table: int = DEFAULT_ROUTING_TABLE,
        priority: int = DEFAULT_ROUTING_PRIORITY,
        connect: Callable[[str | None], object] = open_iproute,
    ) -> None:
        if not 0 < table < 0xFFFF_FFFF or table in (253, 254, 255):
            raise ValueError("routing_table must be a free table number (not 253-255)")
        self.netns = netns
        self.table = table
        self.priority = priority
        self._connect = connect
        self._ipr = None  # type: ignore[var-annotated]
        self._routes: dict[RouteSpec, set[int]] = {}
        self._families: set[int] = set()  # families whose rule we added
        self.stats: dict[str, int] = dict.fromkeys(
            ("routes_installed", "routes_removed", "route_failures", "reconciled_routes"), 0
        )

    # -- lifecycle --------------------------------------------------------------------------

    def start(self, reconcile: bool = True) -> None:
        if self._ipr is None:
            self._ipr = self._connect(self.netns)
            if reconcile:
                self.reconcile()

    def close(self) -> None:
        if self._ipr is None:
            return
        for spec in list(self._routes):
            self._del_route(spec)
        self._routes.clear()
        for family in sorted(self._families):
            self._del_rule(family)
        self._families.clear()
        self._ipr.close()
        self._ipr = None

    def reconcile(self) -> int:
        """Remove the routes and rules with our protocol in our table (an earlier run's)."""
        ipr = self._ipr
        removed = 0
        for family in (socket.AF_INET, socket.AF_INET6):
            try:
                routes = ipr.get_routes(family=family, table=self.table)  # type: ignore[union-attr]
            except _ERRORS as exc:
                log.warning("listing routes of table %d failed: %s", self.table, exc)
                continue
            for route in routes:
                if route.get("proto") != RTPROT_IKEAGENT:
                    continue
                if _table(route) != self.table:
                    continue
                try:
                    ipr.route("del", **_route_key(route))  # type: ignore[union-attr]
                    removed += 1
                except _ERRORS as exc:
                    log.warning("removing a leftover route failed: %s", exc)
            try:
                rules = ipr.get_rules(family=family)  # type: ignore[union-attr]
            except _ERRORS:
                rules = []
            for rule in rules:
                if rule.get_attr("FRA_PROTOCOL") == RTPROT_IKEAGENT and _table(rule) == self.table:
                    try:
                        ipr.rule(  # type: ignore[union-attr]
                            "del",
                            family=family,
                            table=self.table,
                            priority=rule.get_attr("FRA_PRIORITY"),
                        )
                    except _ERRORS as exc:
                        log.warning("removing a leftover rule failed: %s", exc)
        self.stats["reconciled_routes"] += removed
        if removed:
            log.info("removed %d routes left by an earlier run from table %d", removed, self.table)
        return removed

    # -- routes of children -----------------------------------------------------------------

    def install(self, sa: ChildSa | TrapPolicy) -> list[RouteSpec]:
        """Routes for ``sa``'s remote TS (a child's or a trap's; those installed for another
        reqid already are shared)."""
        if self._ipr is None:
            return []
        added = []
        for spec in self.specs(sa):
            owners = self._routes.get(spec)
            if owners is not None:
                owners.add(sa.reqid)
                continue
            if not self._ensure_rule(spec.family):
                continue
            if self._add_route(spec):
                self._routes[spec] = {sa.reqid}
                added.append(spec)
        return added

    def remove(self, reqid: int) -> None:
        for spec, owners in list(self._routes.items()):
            owners.discard(reqid)
            if owners:
                continue
            del self._routes[spec]
            # another reqid's route to the same network (another source address) replaced
            # ours in the kernel, or is to take its place: put it (back) in, else delete
            other = next((s for s in self._routes if s.dst == spec.dst), None)
            if other is None:
                self._del_route(spec)
            elif not self._add_route(other):
                self._routes.pop(other, None)

    def installed(self) -> list[RouteSpec]:
        return list(self._routes)

    def specs(self, sa: ChildSa | TrapPolicy) -> list[RouteSpec]:
        """What to install for ``sa``: one route per remote TS network (a host-to-host TS
        equal to the peer's own address needs none: the peer is reachable already)."""
        hop = self._next_hop(sa.remote_addr, sa.local_addr)
        if hop is None:
            return []
        gateway, oif = hop
        specs = []
        for remote in sa.remote_ts:
            dst = remote.network
            if dst.num_addresses == 1 and dst.network_address == ipaddress.ip_address(
                sa.remote_addr
            ):
                continue
            if dst.version != ipaddress.ip_address(sa.remote_addr).version:
                continue  # a route via an underlay of the other family cannot exist
            src = self._local_address_in(
                [ts.network for ts in sa.local_ts if ts.network.version == dst.version]
            )
            specs.append(RouteSpec(dst, gateway, oif, src))
        return list(dict.fromkeys(specs))

    # -- rtnetlink --------------------------------------------------------------------------

    def _next_hop(self, remote: str, local: str) -> tuple[str | None, int] | None:
        """(gateway or None when on-link, output interface) of the route towards the peer."""
        family = socket.AF_INET6 if ":" in remote else socket.AF_INET
        try:
            answer = self._ipr.route("get", dst=remote, family=family)  # type: ignore[union-attr]
        except _ERRORS as exc:
            self.stats["route_failures"] += 1
            log.warning("no route to the peer %s (%s): no route for its subnets", remote, exc)
            return None
        if not answer:
            return None
        msg = answer[0]
        return msg.get_attr("RTA_GATEWAY"), msg.get_attr("RTA_OIF")

    def _local_address_in(self, networks: list) -> str | None:
        if not networks:
            return None
        try:
            addrs = self._ipr.get_addr()  # type: ignore[union-attr]
        except _ERRORS:
            return None
        for msg in addrs:
            text = msg.get_attr("IFA_LOCAL") or msg.get_attr("IFA_ADDRESS")
            if not text:
                continue
            addr = ipaddress.ip_address(text)
            if any(addr.version == n.version and addr in n for n in networks):
                return str(addr)
        return None

    def _ensure_rule(self, family: int) -> bool:
        if family in self._families:
            return True
        try:
            for rule in self._ipr.get_rules(family=family):  # type: ignore[union-attr]
                if (
                    _table(rule) == self.table
                    and rule.get_attr("FRA_PRIORITY") == self.priority
                    and rule.get_attr("FRA_PROTOCOL") == RTPROT_IKEAGENT
                ):
                    self._families.add(family)
                    return True
            self._ipr.rule(  # type: ignore[union-attr]
                "add",
                family=family,
                table=self.table,
                priority=self.priority,
                protocol=RTPROT_IKEAGENT,
            )
        except _ERRORS as exc:
            self.stats["route_failures"] += 1
            log.warning("adding the rule for table %d failed: %s", self.table, exc)
            return False
        self._families.add(family)
        return True

    def _del_rule(self, family: int) -> None:
        try:
            self._ipr.rule(  # type: ignore[union-attr]
                "del", family=family, table=self.table, priority=self.priority
            )
        except _ERRORS as exc:
            log.warning("removing the rule for table %d failed: %s", self.table, exc)

    def _route_args(self, spec: RouteSpec) -> dict:
        args: dict = {
            "dst": str(spec.dst),
            "family": spec.family,
            "table": self.table,
            "proto": RTPROT_IKEAGENT,
            "oif": spec.oif,
        }
        if spec.gateway:
            args["gateway"] = spec.gateway
        if spec.src:
            args["prefsrc"] = spec.src
        return args

    def _add_route(self, spec: RouteSpec) -> bool:
        try:
            self._ipr.route("replace", **self._route_args(spec))  # type: ignore[union-attr]
        except _ERRORS as exc:
            self.stats["route_failures"] += 1
            log.warning("adding the route to %s (table %d) failed: %s", spec.dst, self.table, exc)
            return False
        self.stats["routes_installed"] += 1
        log.info(
            "route to %s via %s src %s in table %d", spec.dst, spec.gateway, spec.src, self.table
        )
        return True

    def _del_route(self, spec: RouteSpec) -> None:
        try:
            self._ipr.route(  # type: ignore[union-attr]
                "del", dst=str(spec.dst), family=spec.family, table=self.table
            )
            self.stats["routes_removed"] += 1
        except _ERRORS as exc:
            log.warning("removing the route to %s failed: %s", spec.dst, exc)


def _table(msg: object) -> int:
    return msg.get_attr("RTA_TABLE") or msg.get_attr("FRA_TABLE") or msg.get("table")  # type: ignore[attr-defined]


def _route_key(route: object) -> dict:
    family = route["family"]  # type: ignore[index]
    dst = route.get_attr("RTA_DST") or ("0.0.0.0" if family == socket.AF_INET else "::")  # type: ignore[attr-defined]
    return {
        "dst": f"{dst}/{route['dst_len']}",  # type: ignore[index]
        "family": family,
        "table": _table(route),
    }
