# Copyright: contributors to the ikelab.ipsec collection
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Namespaces, veth pairs, bridges, addresses, routes and sysctls through pyroute2.

Every ``ensure_*`` function compares what exists with what is wanted, records a change in a
``Changes`` log and applies it unless the log is a dry run (check mode). Nothing shells out to
``ip``. Functions take open pyroute2 handles (``IPRoute()`` for the root namespace,
``IPRoute(netns=NAME, flags=0)`` inside one) so a run opens each namespace once.
"""

from __future__ import annotations

import contextlib
import errno
import ipaddress
import os
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

NETNS_DIR = "/run/netns"
IFF_UP = 0x1


class LabError(RuntimeError):
    """The lab cannot be built as asked; ``field`` names the option to blame, if any."""

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(f"{field}: {message}" if field else message)
        self.field = field


@dataclass(slots=True)
class Changes:
    """What a run changed (or, dry, would change), in order, as readable lines."""

    dry: bool = False
    lines: list[str] = field(default_factory=list)

    def note(self, line: str) -> bool:
        self.lines.append(line)
        return True

    @property
    def changed(self) -> bool:
        return bool(self.lines)


def netns_path(name: str) -> str:
    return os.path.join(NETNS_DIR, name)


def netns_exists(name: str) -> bool:
    return os.path.exists(netns_path(name))


def list_netns() -> list[str]:
    try:
        return sorted(os.listdir(NETNS_DIR))
    except FileNotFoundError:
        return []


def _pyroute2() -> Any:
    try:
        import pyroute2  # noqa: PLC0415 (only on the controller; keeps the pure parts importable)
    except ImportError as exc:
        raise LabError(
            "pyroute2 is not importable by this python: run the lab module with the "
            "controller's virtual environment (ansible_python_interpreter: "
            "'{{ ansible_playbook_python }}')"
        ) from exc
    return pyroute2


@contextlib.contextmanager
def handle(netns: str | None = None) -> Iterator[Any]:
    """A pyroute2 IPRoute in ``netns`` (None: the root namespace); never creates one."""
    pr = _pyroute2()
    ipr = pr.IPRoute() if netns is None else pr.IPRoute(netns=netns, flags=0)
    try:
        yield ipr
    finally:
        ipr.close()


def ensure_netns(name: str, changes: Changes) -> bool:
    """Create the namespace (with ``lo`` up) when missing; True if it was (or would be)."""
    if netns_exists(name):
        return False
    changes.note(f"create network namespace {name}")
    if not changes.dry:
        _pyroute2().netns.create(name)
        with handle(name) as ipr:
            ipr.link("set", index=ipr.link_lookup(ifname="lo")[0], state="up")
    return True


def remove_netns(name: str, changes: Changes) -> None:
    if not netns_exists(name):
        return
    changes.note(f"remove network namespace {name}")
    if not changes.dry:
        _pyroute2().netns.remove(name)


def link(ipr: Any, ifname: str) -> Any | None:
    found = ipr.link_lookup(ifname=ifname)
    return ipr.get_links(found[0])[0] if found else None


def link_kind(msg: Any) -> str | None:
    info = msg.get_attr("IFLA_LINKINFO")
    return info.get_attr("IFLA_INFO_KIND") if info is not None else None


def ensure_bridge(ipr: Any, where: str, ifname: str, mac: str | None, changes: Changes) -> None:
    msg = link(ipr, ifname)
    if msg is not None:
        if link_kind(msg) != "bridge":
            raise LabError(f"{ifname} in {where} exists and is not a bridge; remove it first")
        return
    changes.note(f"create bridge {ifname} in {where}")
    if not changes.dry:
        kwargs: dict[str, Any] = {"ifname": ifname, "kind": "bridge"}
        if mac:
            kwargs["address"] = mac
        ipr.link("add", **kwargs)


@dataclass(frozen=True, slots=True)
class VethEnd:
    """One end of a veth pair: a handle, where it is (for messages and ``net_ns_fd``)."""

    ipr: Any
    netns: str | None  # None: the root namespace
    ifname: str
    mac: str

    @property
    def where(self) -> str:
        return self.netns or "the root namespace"


def ensure_veth(a: VethEnd, b: VethEnd, changes: Changes) -> bool:
    """A veth pair between ``a`` and ``b`` (created from ``a``'s side); a lone half is
    replaced. True when the pair is (or would be) new."""
    la, lb = link(a.ipr, a.ifname), link(b.ipr, b.ifname)
    if la is not None and lb is not None:
        for end, msg in ((a, la), (b, lb)):
            if link_kind(msg) != "veth":
                raise LabError(f"{end.ifname} in {end.where} exists and is not a veth")
        return False
    for end, msg in ((a, la), (b, lb)):
        if msg is not None:
            changes.note(f"remove {end.ifname} in {end.where} (its peer is gone)")
            if not changes.dry:
                end.ipr.link("del", index=msg["index"])
    changes.note(f"create veth {a.ifname} ({a.where}) <-> {b.ifname} ({b.where})")
    if not changes.dry:
        if b.netns is None:
            raise LabError("a veth pair is created with its peer in a named namespace")
        peer = {"ifname": b.ifname, "address": b.mac, "net_ns_fd": b.netns}
        a.ipr.link("add", ifname=a.ifname, kind="veth", address=a.mac, peer=peer)
    return True


def _index(ipr: Any, ifname: str, where: str) -> int:
    found = ipr.link_lookup(ifname=ifname)
    if not found:
        raise LabError(f"no interface {ifname} in {where}")
    return int(found[0])


def ensure_master(ipr: Any, where: str, ifname: str, master: str, changes: Changes) -> None:
    if changes.dry and not ipr.link_lookup(ifname=ifname):
        return  # created by this run
    idx = _index(ipr, ifname, where)
    master_idx = ipr.link_lookup(ifname=master)
    current = ipr.get_links(idx)[0].get_attr("IFLA_MASTER")
    if master_idx and current == master_idx[0]:
        return
    changes.note(f"attach {ifname} to {master} in {where}")
    if not changes.dry:
        ipr.link("set", index=idx, master=_index(ipr, master, where))


def ensure_up(ipr: Any, where: str, ifname: str, changes: Changes) -> None:
    if changes.dry and not ipr.link_lookup(ifname=ifname):
        return
    idx = _index(ipr, ifname, where)
    if ipr.get_links(idx)[0]["flags"] & IFF_UP:
        return
    changes.note(f"set {ifname} up in {where}")
    if not changes.dry:
        ipr.link("set", index=idx, state="up")


def ensure_addresses(
    ipr: Any, where: str, ifname: str, wanted: list[str], changes: Changes
) -> None:
    """Exactly the IPv4 addresses ``wanted`` ("a.b.c.d/len") on ``ifname``."""
    found = ipr.link_lookup(ifname=ifname)
    if not found:
        if changes.dry:
            return
        raise LabError(f"no interface {ifname} in {where}")
    idx = found[0]
    current = {
        f"{msg.get_attr('IFA_ADDRESS')}/{msg['prefixlen']}"
        for msg in ipr.get_addr(index=idx, family=socket.AF_INET)
    }
    for cidr in sorted(current - set(wanted)):
        changes.note(f"remove address {cidr} from {ifname} in {where}")
        if not changes.dry:
            iface = ipaddress.ip_interface(cidr)
            ipr.addr("del", index=idx, address=str(iface.ip), prefixlen=iface.network.prefixlen)
    for cidr in wanted:
        if cidr in current:
            continue
        changes.note(f"add address {cidr} to {ifname} in {where}")
        if not changes.dry:
            iface = ipaddress.ip_interface(cidr)
            ipr.addr("add", index=idx, address=str(iface.ip), prefixlen=iface.network.prefixlen)


def ensure_default_route(ipr: Any, where: str, gateway: str, changes: Changes) -> None:
    routes = [
        r
        for r in ipr.get_routes(family=socket.AF_INET, table=254)
        if r["dst_len"] == 0 and r["type"] == 1  # RTN_UNICAST
    ]
    if any(r.get_attr("RTA_GATEWAY") == gateway for r in routes) and len(routes) == 1:
        return
    changes.note(f"set the default route via {gateway} in {where}")
    if not changes.dry:
        ipr.route("replace", dst="0.0.0.0/0", gateway=gateway)


def _sysctl_path(key: str) -> str:
    return "/proc/sys/" + key.replace(".", "/")


def ensure_sysctl(netns: str, key: str, value: str, changes: Changes) -> None:
    """A network sysctl inside ``netns`` (the /proc/sys/net view follows the thread's netns)."""
    if not netns_exists(netns):
        if changes.dry:
            changes.note(f"set {key}={value} in {netns}")
            return
        raise LabError(f"no network namespace {netns}")
    pr = _pyroute2()
    pr.netns.pushns(netns)
    try:
        with open(_sysctl_path(key)) as f:
            current = f.read().strip()
        if current == value:
            return
        changes.note(f"set {key}={value} in {netns}")
        if not changes.dry:
            with open(_sysctl_path(key), "w") as f:
                f.write(value)
    finally:
        pr.netns.popns()


def check_root_conflicts(ipr: Any, network: ipaddress.IPv4Network, bridge: str) -> None:
    """Refuse a management network that the root namespace already uses elsewhere."""
    own = ipr.link_lookup(ifname=bridge)
    own_idx = own[0] if own else None
    for msg in ipr.get_addr(family=socket.AF_INET):
        if msg["index"] == own_idx:
            continue
        net = ipaddress.ip_network(f"{msg.get_attr('IFA_ADDRESS')}/{msg['prefixlen']}", False)
        if net.overlaps(network):
            name = msg.get_attr("IFA_LABEL") or f"interface {msg['index']}"
            raise LabError(
                f"{network} overlaps {net} on {name} in the root namespace (another lab? "
                "choose another management_network)",
                field="management_network",
            )
    for r in ipr.get_routes(family=socket.AF_INET, table=254):
        if r["dst_len"] == 0 or r.get_attr("RTA_OIF") == own_idx:
            continue
        net = ipaddress.ip_network(f"{r.get_attr('RTA_DST')}/{r['dst_len']}", False)
        if net.overlaps(network):
            raise LabError(
                f"{network} overlaps the route to {net} in the root namespace",
                field="management_network",
            )


def delete_link(ipr: Any, where: str, ifname: str, changes: Changes) -> None:
    found = ipr.link_lookup(ifname=ifname)
    if not found:
        return
    changes.note(f"remove {ifname} from {where}")
    if changes.dry:
        return
    try:
        ipr.link("del", index=found[0])
    except _pyroute2().NetlinkError as exc:
        if exc.code != errno.ENODEV:  # gone meanwhile (a removed namespace takes its veths)
            raise


def wait_links_gone(ipr: Any, names: list[str], timeout: float = 2.0) -> None:
    """Namespaces are destroyed asynchronously: wait until their veth peers vanish."""
    deadline = time.monotonic() + timeout
    while any(ipr.link_lookup(ifname=n) for n in names) and time.monotonic() < deadline:
        time.sleep(0.02)


def root_links(ipr: Any) -> list[str]:
    return [msg.get_attr("IFLA_IFNAME") for msg in ipr.get_links()]


def netns_pids(name: str) -> list[int]:
    """Processes whose network namespace is ``name`` (zombies have none and are skipped)."""
    try:
        st = os.stat(netns_path(name))
    except FileNotFoundError:
        return []
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            ns = os.stat(f"/proc/{entry}/ns/net")
        except OSError:
            continue
        if (ns.st_dev, ns.st_ino) == (st.st_dev, st.st_ino):
            pids.append(int(entry))
    return pids
