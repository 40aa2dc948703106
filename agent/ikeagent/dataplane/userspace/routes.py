"""Routes that steer protected traffic into the TUN device (pyroute2, never the ``ip`` tool).

Like strongSwan's kernel-libipsec, routes go to their own table (220 by default) that a
routing rule (priority 220, both address families) consults before ``main``; with
``table=254`` (main) no rule is added. Every remote traffic-selector network gets a route
``dst via <tun> src <first local address inside the local selectors>`` (``src`` only when the
host has such an address), reference-counted because several children may share a network.
When the peer's own address lies inside a remote selector (e.g. 0.0.0.0/0), a host route to
the peer copied from the current path is added first, so ESP and IKE never loop into the TUN.
"""

from __future__ import annotations

import errno
import ipaddress
import logging
import socket

from pyroute2.netlink.exceptions import NetlinkError

from ..base import ChildSa, TrafficSelector

log = logging.getLogger(__name__)

MAIN_TABLE = 254
RouteKey = tuple[str, int]  # (network or host, 0 for a TUN route / oif of a pinned route)


def _family(net: ipaddress.IPv4Network | ipaddress.IPv6Network) -> int:
    return socket.AF_INET6 if net.version == 6 else socket.AF_INET


class Routes:
    def __init__(self, ipr: object, ifindex: int, table: int = 220, priority: int = 220) -> None:
        self.ipr = ipr
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

    def add_child(self, child: ChildSa) -> list[str]:
        """Add the routes of a child's remote selectors; returns their keys for ``remove``."""
        keys: list[str] = []
        sources: dict[int, str] | None = None  # looked up only when a new route is needed
        remote = ipaddress.ip_address(child.remote_addr)
        if any(
            remote in ts.network for ts in child.remote_ts if ts.network.version == remote.version
        ):
            pin_key = f"pin:{remote}"
            if pin_key in self._refs:
                self._refs[pin_key] += 1
                keys.append(pin_key)
            else:
                pin = self._pin_spec(remote)
                if pin is not None and self._add(pin_key, pin):
                    keys.append(pin_key)
        for ts in child.remote_ts:
            net = ts.network
            if str(net) in self._refs:
                self._refs[str(net)] += 1
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
        for key in keys:
            count = self._refs.get(key, 0) - 1
            if count > 0:
                self._refs[key] = count
            elif key in self._refs:
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
        if key in self._refs:
            self._refs[key] += 1
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
