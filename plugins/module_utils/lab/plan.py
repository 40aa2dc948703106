# Copyright: contributors to the ikelab.ipsec collection
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The lab's address plan and names: pure functions over validated parameters.

Site i (1-based) of lab ``L``:

- network namespaces ``L-site<i>`` (the gateway, PID 1 is the site init), ``L-site<i>-lan``
  (one host behind it) and ``L-wan`` (the underlay bridge ``br0``);
- management: bridge ``L-mgmt`` in the root namespace with the network's first address, the
  site's ``mgmt0`` at the network's address ``10 + i`` (its bridge port is ``L-m<i>``);
- underlay: ``wan0`` at the underlay network's address ``10 + i``;
- protected subnet: the first /24 of the i-th block of the LAN pool (a /8 pool gives
  ``10.i.0.0/24``), the gateway's ``lan0`` at its address 1, the host's ``eth0`` at 10.

Everything here is deterministic, so a plan can be compared with what runs.
"""

from __future__ import annotations

import hashlib
import ipaddress
import re
from dataclasses import dataclass

DEFAULT_NAME = "ikl"
DEFAULT_MANAGEMENT = "198.18.0.0/24"
DEFAULT_UNDERLAY = "192.0.2.0/24"
DEFAULT_LAN_POOL = "10.0.0.0/8"
ENGINES = ("netns", "uml")
DEFAULT_GUEST_MEMORY = 256  # MiB per User-mode Linux guest
GUEST_MEMORY_RANGE = (128, 4096)

NAME_RE = re.compile(r"[a-z][a-z0-9]{0,4}")
SITE_OFFSET = 10  # site i has host address SITE_OFFSET + i on the management and underlay nets
LAN_GATEWAY = 1
LAN_HOST = 10
LAN_PREFIXLEN = 24

# interface names inside the namespaces (private to each namespace, so fixed)
MGMT_IF = "mgmt0"
WAN_IF = "wan0"
LAN_IF = "lan0"
HOST_IF = "eth0"
WAN_BRIDGE = "br0"


class LabParameterError(ValueError):
    """A parameter is invalid; ``field`` names it (as the module's option)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field


@dataclass(frozen=True, slots=True)
class LabSpec:
    """Validated lab parameters (build with ``LabSpec.parse``)."""

    name: str
    sites: int
    management: ipaddress.IPv4Network
    underlay: ipaddress.IPv4Network
    lan_pool: ipaddress.IPv4Network
    engine: str = "netns"  # what a gateway is: namespaces, or a User-mode Linux guest
    guest_memory: int = DEFAULT_GUEST_MEMORY

    @classmethod
    def parse(
        cls,
        name: str = DEFAULT_NAME,
        sites: int = 4,
        management_network: str = DEFAULT_MANAGEMENT,
        underlay_network: str = DEFAULT_UNDERLAY,
        lan_pool: str = DEFAULT_LAN_POOL,
        engine: str = "netns",
        guest_memory: int = DEFAULT_GUEST_MEMORY,
    ) -> LabSpec:
        if not isinstance(name, str) or not NAME_RE.fullmatch(name):
            raise LabParameterError(
                "name",
                f"{name!r} must be 1-5 characters, a lowercase letter followed by lowercase "
                "letters or digits (it prefixes namespace and interface names)",
            )
        management = _network("management_network", management_network)
        underlay = _network("underlay_network", underlay_network)
        pool = _network("lan_pool", lan_pool)
        if pool.prefixlen > 16:
            raise LabParameterError(
                "lan_pool", f"{pool} is too small: it needs a prefix of /16 or shorter"
            )
        for (fa, a), (fb, b) in (
            (("management_network", management), ("underlay_network", underlay)),
            (("management_network", management), ("lan_pool", pool)),
            (("underlay_network", underlay), ("lan_pool", pool)),
        ):
            if a.overlaps(b):
                raise LabParameterError(fb, f"{b} overlaps {fa} {a}")
        if isinstance(sites, bool) or not isinstance(sites, int) or sites < 1:
            raise LabParameterError("sites", f"{sites!r} must be a positive integer")
        limits = {
            "management_network": _host_limit(management),
            "underlay_network": _host_limit(underlay),
            "lan_pool": 255,
        }
        for field, limit in limits.items():
            if sites > limit:
                raise LabParameterError(
                    "sites", f"{sites} sites do not fit: {field} holds at most {limit}"
                )
        if engine not in ENGINES:
            raise LabParameterError("engine", f"{engine!r} is not one of {', '.join(ENGINES)}")
        low, high = GUEST_MEMORY_RANGE
        if (
            isinstance(guest_memory, bool)
            or not isinstance(guest_memory, int)
            or not low <= guest_memory <= high
        ):
            raise LabParameterError(
                "guest_memory", f"{guest_memory!r} must be a number of MiB from {low} to {high}"
            )
        return cls(name, sites, management, underlay, pool, engine, guest_memory)

    def site_names(self) -> list[str]:
        return [site_name(i) for i in range(1, self.sites + 1)]


def _network(field: str, value: object) -> ipaddress.IPv4Network:
    try:
        net = ipaddress.ip_network(str(value), strict=True)
    except ValueError as exc:
        raise LabParameterError(field, f"{value!r} is not a network address ({exc})")
    if not isinstance(net, ipaddress.IPv4Network):
        raise LabParameterError(field, f"{net} must be an IPv4 network")
    if net.prefixlen > 28:
        raise LabParameterError(field, f"{net} is too small")
    return net


def _host_limit(net: ipaddress.IPv4Network) -> int:
    """Sites that fit: host addresses SITE_OFFSET+1 .. broadcast-1."""
    return max(0, net.num_addresses - 2 - SITE_OFFSET)


def site_name(index: int) -> str:
    return f"site{index}"


def site_index(name: str) -> int | None:
    m = re.fullmatch(r"site([1-9][0-9]*)", name)
    return int(m.group(1)) if m else None


@dataclass(frozen=True, slots=True)
class SitePlan:
    """Names and addresses of one site."""

    lab: str
    index: int
    name: str
    netns: str
    lan_netns: str
    mgmt_port: str  # the bridge port in the root namespace
    management_address: str
    management_prefixlen: int
    underlay_address: str
    underlay_prefixlen: int
    protected_subnet: str
    lan_address: str
    lan_host: str

    def mac(self, ifname: str) -> str:
        return stable_mac(self.lab, self.name, ifname)

    def as_dict(self) -> dict[str, object]:
        return {
            "name": self.name,
            "index": self.index,
            "netns": self.netns,
            "lan_netns": self.lan_netns,
            "management_address": self.management_address,
            "underlay_address": self.underlay_address,
            "protected_subnet": self.protected_subnet,
            "lan_address": self.lan_address,
            "lan_host": self.lan_host,
        }


@dataclass(frozen=True, slots=True)
class LabPlan:
    spec: LabSpec
    sites: tuple[SitePlan, ...]

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def wan_netns(self) -> str:
        return wan_netns(self.spec.name)

    @property
    def bridge(self) -> str:
        return mgmt_bridge(self.spec.name)

    @property
    def bridge_address(self) -> str:
        return str(self.spec.management[1])

    @property
    def bridge_mac(self) -> str:
        return stable_mac(self.spec.name, "", "mgmt")


def wan_netns(lab: str) -> str:
    return f"{lab}-wan"


def mgmt_bridge(lab: str) -> str:
    return f"{lab}-mgmt"


def site_netns(lab: str, index: int) -> str:
    return f"{lab}-{site_name(index)}"


def lan_netns(lab: str, index: int) -> str:
    return f"{lab}-{site_name(index)}-lan"


def mgmt_port(lab: str, index: int) -> str:
    return f"{lab}-m{index}"


def owned_netns_index(lab: str, netns: str) -> tuple[int, bool] | None:
    """``(site index, is_lan)`` when ``netns`` is one of lab ``lab``'s site namespaces."""
    m = re.fullmatch(re.escape(lab) + r"-site([1-9][0-9]*)(-lan)?", netns)
    return (int(m.group(1)), m.group(2) is not None) if m else None


def owned_port_index(lab: str, ifname: str) -> int | None:
    """The site index when ``ifname`` is one of lab ``lab``'s management bridge ports."""
    m = re.fullmatch(re.escape(lab) + r"-m([1-9][0-9]*)", ifname)
    return int(m.group(1)) if m else None


def stable_mac(lab: str, site: str, ifname: str) -> str:
    """A locally administered unicast MAC derived from the names: a recreated site keeps its
    MAC addresses, so neighbours' ARP caches stay right."""
    digest = hashlib.sha256(f"ikelab-lab/{lab}/{site}/{ifname}".encode()).digest()
    return ":".join(f"{b:02x}" for b in (0x02, *digest[:5]))


def lan_subnet(pool: ipaddress.IPv4Network, index: int) -> ipaddress.IPv4Network:
    block = 1 << (32 - (pool.prefixlen + 8))
    base = int(pool.network_address) + index * block
    return ipaddress.IPv4Network((base, LAN_PREFIXLEN))


def build_plan(spec: LabSpec) -> LabPlan:
    sites = []
    for i in range(1, spec.sites + 1):
        subnet = lan_subnet(spec.lan_pool, i)
        sites.append(
            SitePlan(
                lab=spec.name,
                index=i,
                name=site_name(i),
                netns=site_netns(spec.name, i),
                lan_netns=lan_netns(spec.name, i),
                mgmt_port=mgmt_port(spec.name, i),
                management_address=str(spec.management[SITE_OFFSET + i]),
                management_prefixlen=spec.management.prefixlen,
                underlay_address=str(spec.underlay[SITE_OFFSET + i]),
                underlay_prefixlen=spec.underlay.prefixlen,
                protected_subnet=str(subnet),
                lan_address=str(subnet[LAN_GATEWAY]),
                lan_host=str(subnet[LAN_HOST]),
            )
        )
    return LabPlan(spec, tuple(sites))
