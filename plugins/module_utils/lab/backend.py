# Copyright: contributors to the ikelab.ipsec collection
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The lab module's backends: ``LabBackend`` builds or converges a lab (state present),
``LabTeardown`` removes one (state absent). Both have ``needs_change()`` (a dry run: the lines
of what would change), ``apply()`` (the lines of what changed) and ``dump()`` (the result).

A second ``apply()`` with the same parameters changes nothing: namespaces, links, addresses,
sysctls and files are compared before they are touched, and a running site is left alone. A
site whose init died is started again; one whose configuration changed is restarted.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from typing import Any

from ansible_collections.ikelab.ipsec.plugins.module_utils.lab import guests
from ansible_collections.ikelab.ipsec.plugins.module_utils.lab import network as net
from ansible_collections.ikelab.ipsec.plugins.module_utils.lab import sites as proc
from ansible_collections.ikelab.ipsec.plugins.module_utils.lab.files import (
    ensure_dir,
    ensure_file,
    ensure_ssh_key,
    public_key,
    remove_file,
    remove_tree,
)
from ansible_collections.ikelab.ipsec.plugins.module_utils.lab.network import (
    Changes,
    LabError,
    VethEnd,
)
from ansible_collections.ikelab.ipsec.plugins.module_utils.lab.plan import (
    HOST_IF,
    LAN_IF,
    LAN_PREFIXLEN,
    MGMT_IF,
    WAN_BRIDGE,
    WAN_IF,
    LabPlan,
    LabSpec,
    SitePlan,
    build_plan,
    mgmt_bridge,
    owned_netns_index,
    owned_port_index,
    site_name,
    wan_netns,
)
from ansible_collections.ikelab.ipsec.plugins.module_utils.lab.render import (
    DEFAULT_CONTAINERLAB_IMAGE,
    MARKER,
    render_containerlab,
    render_inventory,
    render_known_hosts,
    render_site_config,
)

ROOT = "the root namespace"
KEY_NAME = "id_ed25519"
HOST_KEY = "ssh_host_ed25519_key"


@dataclass(frozen=True, slots=True)
class LabOptions:
    dir: str
    init_script: str | None = None
    inventory: str | None = None
    containerlab_file: str | None = None
    containerlab_image: str = DEFAULT_CONTAINERLAB_IMAGE
    ssh_key: str | None = None
    ready_timeout: float = 30.0

    @property
    def key(self) -> str:
        return self.ssh_key or os.path.join(self.dir, KEY_NAME)

    @property
    def known_hosts(self) -> str:
        return os.path.join(self.dir, "known_hosts")

    @property
    def sites_dir(self) -> str:
        return os.path.join(self.dir, "sites")

    def site_dir(self, name: str) -> str:
        return os.path.join(self.sites_dir, name)

    def host_key(self, name: str) -> str:
        return os.path.join(self.site_dir(name), HOST_KEY)

    def site_config(self, name: str) -> str:
        return os.path.join(self.site_dir(name), "site.json")


def running_sites(lab: str, options: LabOptions) -> dict[str, int]:
    """Sites of lab ``lab`` whose init runs: name -> PID (as the root namespace sees it)."""
    found = {}
    for ns in net.list_netns():
        owned = owned_netns_index(lab, ns)
        if owned is None or owned[1]:
            continue
        name = site_name(owned[0])
        rec = proc.running_init(options.site_dir(name), ns)
        if rec is not None:
            found[name] = rec.pid
    return dict(sorted(found.items(), key=lambda kv: int(kv[0][4:])))


class LabBackend:
    """Converge the lab to ``spec`` (state present)."""

    def __init__(self, spec: LabSpec, options: LabOptions) -> None:
        self.spec = spec
        self.options = options
        self.plan: LabPlan = build_plan(spec)

    def needs_change(self) -> list[str]:
        changes = Changes(dry=True)
        self._converge(changes)
        return changes.lines

    def apply(self) -> list[str]:
        changes = Changes()
        self._converge(changes)
        return changes.lines

    def dump(self) -> dict[str, Any]:
        running = running_sites(self.spec.name, self.options)
        o = self.options
        return {
            "name": self.spec.name,
            "dir": o.dir,
            "inventory": o.inventory,
            "containerlab_file": o.containerlab_file,
            "ssh_private_key": o.key,
            "known_hosts": o.known_hosts,
            "bridge": self.plan.bridge,
            "bridge_address": self.plan.bridge_address,
            "wan_netns": self.plan.wan_netns,
            "engine": self.spec.engine,
            "sites": [
                {**s.as_dict(), "running": s.name in running, "pid": running.get(s.name)}
                for s in self.plan.sites
            ],
        }

    # -- converge ------------------------------------------------------------------------

    def _converge(self, ch: Changes) -> None:
        o = self.options
        if not o.init_script:
            raise LabError("is required with state=present", field="init_script")
        proc.check_tools(o.init_script)
        if self.spec.engine == "uml":
            guests.check_tools(o.init_script)
        with net.handle(None) as root:  # before anything is made
            net.check_root_conflicts(root, self.spec.management, self.plan.bridge)
        ensure_dir(o.dir, ch)
        ensure_dir(o.sites_dir, ch)
        ensure_ssh_key(o.key, f"ikelab-lab-{self.spec.name}", ch)
        for site in self.plan.sites:
            ensure_dir(o.site_dir(site.name), ch)
            ensure_ssh_key(o.host_key(site.name), f"{self.spec.name}-{site.name}", ch)
        self._remove_extra_sites(ch)
        self._network(ch)
        self._sites(ch)
        self._files(ch)

    def _network(self, ch: Changes) -> None:
        plan = self.plan
        wan = plan.wan_netns
        net.ensure_netns(wan, ch)
        for site in plan.sites:
            net.ensure_netns(site.netns, ch)
            net.ensure_netns(site.lan_netns, ch)
        names = [wan, *(n for s in plan.sites for n in (s.netns, s.lan_netns))]
        with contextlib.ExitStack() as stack:
            root = stack.enter_context(net.handle(None))
            h: dict[str, Any] = {}
            for name in names:
                if net.netns_exists(name):
                    h[name] = stack.enter_context(net.handle(name))
            net.ensure_bridge(root, ROOT, plan.bridge, plan.bridge_mac, ch)
            net.ensure_addresses(
                root,
                ROOT,
                plan.bridge,
                [f"{plan.bridge_address}/{self.spec.management.prefixlen}"],
                ch,
            )
            net.ensure_up(root, ROOT, plan.bridge, ch)
            if wan in h:
                net.ensure_bridge(h[wan], wan, WAN_BRIDGE, None, ch)
                net.ensure_up(h[wan], wan, WAN_BRIDGE, ch)
            for site in plan.sites:
                self._site_network(
                    site, root, h.get(site.netns), h.get(site.lan_netns), h.get(wan), ch
                )

    def _site_network(
        self, site: SitePlan, root: Any, gw: Any, lan: Any, wan: Any, ch: Changes
    ) -> None:
        wan_ns = self.plan.wan_netns
        if gw is not None:
            net.ensure_veth(
                VethEnd(root, None, site.mgmt_port, site.mac("port")),
                VethEnd(gw, site.netns, MGMT_IF, site.mac(MGMT_IF)),
                ch,
            )
            net.ensure_master(root, ROOT, site.mgmt_port, self.plan.bridge, ch)
            net.ensure_up(root, ROOT, site.mgmt_port, ch)
        if gw is not None and wan is not None:
            net.ensure_veth(
                VethEnd(gw, site.netns, WAN_IF, site.mac(WAN_IF)),
                VethEnd(wan, wan_ns, site.name, site.mac("wan-port")),
                ch,
            )
            net.ensure_master(wan, wan_ns, site.name, WAN_BRIDGE, ch)
            net.ensure_up(wan, wan_ns, site.name, ch)
        if gw is not None and lan is not None:
            net.ensure_veth(
                VethEnd(gw, site.netns, LAN_IF, site.mac(LAN_IF)),
                VethEnd(lan, site.lan_netns, HOST_IF, site.mac("host")),
                ch,
            )
        guest = self.spec.engine == "uml"
        if gw is not None:
            addresses = {
                MGMT_IF: f"{site.management_address}/{site.management_prefixlen}",
                WAN_IF: f"{site.underlay_address}/{site.underlay_prefixlen}",
                LAN_IF: f"{site.lan_address}/{LAN_PREFIXLEN}",
            }
            for ifname, cidr in addresses.items():
                # with a guest, the namespace's ends only carry its frames: no address here
                net.ensure_addresses(gw, site.netns, ifname, [] if guest else [cidr], ch)
            for ifname in ("lo", *addresses):
                net.ensure_up(gw, site.netns, ifname, ch)
        if lan is not None:
            net.ensure_addresses(
                lan, site.lan_netns, HOST_IF, [f"{site.lan_host}/{LAN_PREFIXLEN}"], ch
            )
            for ifname in ("lo", HOST_IF):
                net.ensure_up(lan, site.lan_netns, ifname, ch)
            if not ch.dry or lan.link_lookup(ifname=HOST_IF):
                net.ensure_default_route(lan, site.lan_netns, site.lan_address, ch)
        if gw is not None or not ch.dry:
            net.ensure_sysctl(site.netns, "net.ipv4.ip_forward", "0" if guest else "1", ch)
            # a guest's carriers must not speak IPv6 (router solicitations, DAD) themselves
            if os.path.isdir("/proc/sys/net/ipv6"):
                for scope in ("all", "default"):
                    key = f"net.ipv6.conf.{scope}.disable_ipv6"
                    net.ensure_sysctl(site.netns, key, "1" if guest else "0", ch)

    def _remove_extra_sites(self, ch: Changes) -> None:
        lab, n = self.spec.name, self.spec.sites
        extra = []
        for ns in net.list_netns():
            owned = owned_netns_index(lab, ns)
            if owned is not None and owned[0] > n:
                extra.append((owned[0], owned[1], ns))
        for index, is_lan, ns in sorted(extra, key=lambda e: (e[0], e[1])):
            _stop_namespace(ns, self.options.site_dir(site_name(index)), is_lan, ch)
            net.remove_netns(ns, ch)
        with net.handle(None) as root:
            ports = [i for i in net.root_links(root) if (owned_port_index(lab, i) or 0) > n]
            if extra and not ch.dry:
                net.wait_links_gone(root, ports)
            for ifname in ports:
                net.delete_link(root, ROOT, ifname, ch)
        if os.path.isdir(self.options.sites_dir):
            stale = [
                d
                for d in os.listdir(self.options.sites_dir)
                if d.startswith("site") and d[4:].isdigit() and int(d[4:]) > n
            ]
            remove_tree(self.options.sites_dir, sorted(stale), ch)

    def _sites(self, ch: Changes) -> None:
        o = self.options
        started: dict[str, tuple[str, str, str]] = {}
        for site in self.plan.sites:
            sd = o.site_dir(site.name)
            text = render_site_config(
                site,
                o.host_key(site.name),
                o.key + ".pub",
                self.spec.engine,
                self.spec.guest_memory,
            )
            config_changed = ensure_file(o.site_config(site.name), text, ch)
            rec = proc.running_init(sd, site.netns)
            if rec is not None and not config_changed:
                continue
            if rec is not None:
                ch.note(f"restart {site.name} (its configuration changed)")
            elif proc.load_record(sd) is not None:
                ch.note(f"start {site.name} again (its init is gone)")
            else:
                ch.note(f"start {site.name}")
            if ch.dry:
                continue
            if rec is not None:  # a capture someone runs in the namespace may stay
                proc.stop_site(site.netns, sd, everything=False)
            if self.spec.engine == "uml":
                guests.start_guest(site.netns, sd, str(o.init_script), o.site_config(site.name))
            else:
                proc.start_site(site.netns, sd, str(o.init_script), o.site_config(site.name))
            started[site.name] = (site.netns, sd, site.management_address)
        if started:
            proc.wait_ready(started, o.ready_timeout)

    def _files(self, ch: Changes) -> None:
        o = self.options
        keys = []
        for site in self.plan.sites:
            if not os.path.exists(o.host_key(site.name) + ".pub"):
                ch.note(f"write {o.known_hosts}")  # dry run: the host keys do not exist yet
                keys = []
                break
            keys.append((site.management_address, public_key(o.host_key(site.name))))
        if keys:
            ensure_file(o.known_hosts, render_known_hosts(keys), ch, mode=0o644)
        if o.inventory:
            text = render_inventory(self.plan, o.key, o.known_hosts)
            ensure_file(o.inventory, text, ch, mode=0o644)
        if o.containerlab_file:
            text = render_containerlab(self.plan, o.containerlab_image)
            ensure_file(o.containerlab_file, text, ch, mode=0o644)


def _stop_namespace(ns: str, site_dir: str, is_lan: bool, ch: Changes) -> None:
    if is_lan:
        if net.netns_pids(ns):
            ch.note(f"kill the processes in {ns}")
            if not ch.dry:
                proc.kill_netns_processes(ns)
        return
    if proc.running_init(site_dir, ns) is not None or net.netns_pids(ns):
        ch.note(f"stop the site in {ns}")
        if not ch.dry:
            proc.stop_site(ns, site_dir)


class LabTeardown:
    """Remove lab ``name`` (state absent): its sites' processes, namespaces, bridge, ports and
    files; nothing that does not carry the lab's names or the generated-file marker."""

    def __init__(self, name: str, options: LabOptions) -> None:
        self.name = name
        self.options = options

    def needs_change(self) -> list[str]:
        changes = Changes(dry=True)
        self._remove(changes)
        return changes.lines

    def apply(self) -> list[str]:
        changes = Changes()
        self._remove(changes)
        return changes.lines

    def dump(self) -> dict[str, Any]:
        o = self.options
        return {
            "name": self.name,
            "dir": o.dir,
            "inventory": o.inventory,
            "containerlab_file": o.containerlab_file,
            "ssh_private_key": o.key,
            "known_hosts": o.known_hosts,
            "sites": [],
        }

    def _remove(self, ch: Changes) -> None:
        lab, o = self.name, self.options
        owned = []
        for ns in net.list_netns():
            idx = owned_netns_index(lab, ns)
            if idx is not None:
                owned.append((idx[0], idx[1], ns))
        # sites first (their sshd closes its connections while the links still exist)
        for index, is_lan, ns in sorted(owned, key=lambda e: (e[1], e[0])):
            _stop_namespace(ns, o.site_dir(site_name(index)), is_lan, ch)
        wan = wan_netns(lab)
        if net.netns_exists(wan):
            _stop_namespace(wan, "", True, ch)
        for ns in sorted(entry[2] for entry in owned):
            net.remove_netns(ns, ch)
        net.remove_netns(wan, ch)
        with net.handle(None) as root:
            ports = [i for i in net.root_links(root) if owned_port_index(lab, i) is not None]
            if owned and not ch.dry:
                net.wait_links_gone(root, ports)
            for ifname in ports:
                net.delete_link(root, ROOT, ifname, ch)
            net.delete_link(root, ROOT, mgmt_bridge(lab), ch)
        if o.inventory:
            remove_file(o.inventory, ch, marker=MARKER)
        if o.containerlab_file:
            remove_file(o.containerlab_file, ch, marker=MARKER)
        entries = ["sites", "known_hosts", "secrets"]  # secrets: the tunnels' keys
        if o.ssh_key is None:
            entries += [KEY_NAME, KEY_NAME + ".pub"]
        remove_tree(o.dir, entries, ch)
