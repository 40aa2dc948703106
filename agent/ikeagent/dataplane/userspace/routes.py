"""Routes that steer protected traffic into the TUN device (pyroute2, never the ``ip`` tool).

Like strongSwan's kernel-libipsec, routes go to their own table (220 by default) that a
routing rule (priority 220, both address families) consults before ``main``; with
``table=254`` (main) no rule is added. Every remote traffic-selector network gets a route
``dst via <tun> src <first local address inside the local selectors>`` (``src`` only when the
host has such an address), reference-counted because several children may share a network.
When the peer's own address lies inside a remote selector (e.g. 0.0.0.0/0), a host route to
the peer copied from the current path is added first, so ESP and IKE never loop into the TUN.

A route whose last user went away is kept for ``grace`` seconds before it is deleted: SAs of
the same networks come and go (rekeys, reconnects, many peers with one policy), and a route
re-used within that time costs no netlink round trip. Meanwhile traffic for those networks
still goes to the TUN device, where, with no SA, it is dropped: never sent in clear.
"""

from __future__ import annotations

import errno
import ipaddress
import logging
import socket
import time

from pyroute2.netlink.exceptions import NetlinkError

from ..base import ChildSa, TrafficSelector, TrapPolicy

log = logging.getLogger(__name__)

MAIN_TABLE = 254
RouteKey = tuple[str, int]  # (network or host, 0 for a TUN route / oif of a pinned route)


def _family(net: ipaddress.IPv4Network | ipaddress.IPv6Network) -> int:
    return socket.AF_INET6 if net.version == 6 else socket.AF_INET


class Routes:
    def __init__(
        self, ipr: object, ifindex: int, table: int = 220, priority: int = 220, grace: float = 5.0
    ) -> None:
        self.ipr = ipr
        self.grace = grace
        self._doomed: dict[str, float] = {}  # unused routes -> when to delete them
        self.ifindex = ifindex
        self.table = table
        self.priority = priority
        self._refs: dict[str, int] = {}
        self._specs: dict[str, dict] = {}
        self._rules: list[int] = []  # families whose rule we added

    # -- rules ------------------------------------------------------------------------------

    def setup(self) -> None:
        if self.table == MAIN_TABLE:
            return
        for family in (socket.AF_INET, socket.AF_INET6):
            try:
                self.ipr.rule("add", family=family, table=self.table, priority=self.priority)
            except NetlinkError as exc:
                if exc.code != errno.EEXIST:
                    log.warning("cannot add routing rule for table %s: %s", self.table, exc)
                continue
            self._rules.append(family)

    def teardown(self) -> None:
        for key in list(self._refs):
            self._delete(key)
        self._refs.clear()
        self._doomed.clear()
        for family in self._rules:
            try:
                self.ipr.rule("del", family=family, table=self.table, priority=self.priority)
            except NetlinkError as exc:
                log.debug("routing rule already gone: %s", exc)
        self._rules.clear()

    # -- routes -----------------------------------------------------------------------------

    def local_source(self, local_ts: tuple[TrafficSelector, ...]) -> dict[int, str]:
        """The first host address inside the local selectors, per address family."""
        found: dict[int, str] = {}
        for msg in self.ipr.get_addr():
            text = msg.get_attr("IFA_ADDRESS")
            if not text:
                continue
            addr = ipaddress.ip_address(text.split("%")[0])
            if addr.is_link_local:
                continue
            for ts in local_ts:
                if addr.version == ts.network.version and addr in ts.network:
                    found.setdefault(_family(ts.network), str(addr))
        return found

    def add_child(self, child: ChildSa | TrapPolicy) -> list[str]:
        """Add the routes of a child's (or a trap's) remote selectors; returns their keys for
        ``remove``."""
        keys: list[str] = []
        sources: dict[int, str] | None = None  # looked up only when a new route is needed
        remote = ipaddress.ip_address(child.remote_addr)
        if any(
            remote in ts.network for ts in child.remote_ts if ts.network.version == remote.version
        ):
            pin_key = f"pin:{remote}"
            if self._reuse(pin_key):
                keys.append(pin_key)
            else:
                pin = self._pin_spec(remote)
                if pin is not None and self._add(pin_key, pin):
                    keys.append(pin_key)
        for ts in child.remote_ts:
            net = ts.network
            if self._reuse(str(net)):
                keys.append(str(net))
                continue
            if sources is None:
                sources = self.local_source(child.local_ts)
            spec = {
                "dst": str(net),
                "oif": self.ifindex,
                "table": self.table,
                "family": _family(net),
            }
            src = sources.get(_family(net))
            if src:
                spec["prefsrc"] = src
            if self._add(str(net), spec):
                keys.append(str(net))
        return keys

    def remove(self, keys: list[str]) -> None:
        now = time.monotonic()
        for key in keys:
            count = self._refs.get(key, 0) - 1
            if count > 0:
                self._refs[key] = count
            elif key in self._refs:
                if self.grace > 0:
                    self._refs[key] = 0
                    self._doomed[key] = now + self.grace
                else:
                    self._delete(key)

    def _reuse(self, key: str) -> bool:
        """Take another reference on an existing (or lingering) route."""
        if key not in self._refs:
            return False
        self._refs[key] += 1
        self._doomed.pop(key, None)
        return True

    def next_expiry(self) -> float | None:
        return min(self._doomed.values()) if self._doomed else None

    def expire(self, now: float | None = None) -> None:
        """Delete the unused routes whose grace ran out (all of them when ``now`` is None)."""
        for key, deadline in list(self._doomed.items()):
            if now is None or deadline <= now:
                del self._doomed[key]
                if self._refs.get(key) == 0:
                    self._delete(key)

    def _pin_spec(self, remote: ipaddress.IPv4Address | ipaddress.IPv6Address) -> dict | None:
        try:
            (msg,) = self.ipr.route("get", dst=str(remote))[:1]
        except (NetlinkError, ValueError) as exc:
            log.warning("no path to peer %s to pin: %s", remote, exc)
            return None
        oif = msg.get_attr("RTA_OIF")
        if oif is None or oif == self.ifindex:
            return None
        spec = {
            "dst": f"{remote}/{remote.max_prefixlen}",
            "oif": oif,
            "table": self.table,
            "family": socket.AF_INET6 if remote.version == 6 else socket.AF_INET,
        }
        gateway = msg.get_attr("RTA_GATEWAY")
        if gateway:
            spec["gateway"] = gateway
        return spec

    def _add(self, key: str, spec: dict) -> bool:
        if self._reuse(key):
            return True
        try:
            self.ipr.route("add", **spec)
        except NetlinkError as exc:
            log.warning("cannot add route %s: %s", spec.get("dst"), exc)
            return False
        self._refs[key] = 1
        self._specs[key] = spec
        return True

    def _delete(self, key: str) -> None:
        self._refs.pop(key, None)
        spec = self._specs.pop(key, None)
        if spec is None:
            return
        try:
            self.ipr.route("del", **spec)
        except NetlinkError as exc:
            log.debug("route %s already gone: %s", spec.get("dst"), exc)
