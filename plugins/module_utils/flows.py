# Copyright: ikelab.ipsec developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Interesting traffic through a tunnel, and proof that the Child SA carried it (stdlib only).

``FlowCheck`` finds the installed Child SA whose selectors cover the flow (or the one named by
``connection``/``child``), reads its counters from the agent before and after sending the
probes (``probes.SENDERS``, by protocol), and calls the traffic ``encrypted`` when the child's
packets out rose by at least what was sent and its packets in by at least the answers received.

On-demand tunnels: when no installed Child SA covers the flow but a trap policy of the agent
does (``list-traps``), the first traffic has to bring the Child SA up. The check then sends
probes at a short interval until the first answer (``first_packet``) and reports the time from
the first probe to that answer (``time_to_first_packet_ms``, with ``on_demand: true``); the
probes held or lost while the SA was negotiated do not count against the proof, which is then
made as always, with counters read before and after the regular probes through the new SA.
"""

from __future__ import annotations

import ipaddress
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ansible_collections.ikelab.ipsec.plugins.module_utils.agent_client import (
    CHILD_UP,
    AgentClient,
    AgentCommandError,
    AgentError,
    trap_state,
)
from ansible_collections.ikelab.ipsec.plugins.module_utils.first_packet import (
    FIRST_SENDERS,
    INTERVAL,
    FirstPacket,
    FirstSender,
)
from ansible_collections.ikelab.ipsec.plugins.module_utils.probes import (
    ICMPV6,
    SENDERS,
    FlowError,
    ProbeResult,
    Sender,
    family,
    route_source,
)

PROTOCOLS = {"icmp": 1, "tcp": 6, "udp": 17}
COUNTER_KEYS = ("packets_out", "packets_in", "bytes_out", "bytes_in")
SETTLE = 1.0  # seconds to let counters catch up with the last answer
INSTALLED_WAIT = 5.0  # seconds for the agent to list a Child SA that has carried an answer

__all__ = ["PROTOCOLS", "Flow", "FlowCheck", "FlowError", "ProbeResult", "Selector", "find_child"]


# --- traffic selectors and Child SAs ------------------------------------------------------------

_TS = re.compile(r"(?P<net>[^\[\]]+)(\[(?P<proto>\d+)/(?P<lo>\d+)(-(?P<hi>\d+))?\])?\Z")


@dataclass(frozen=True, slots=True)
class Selector:
    network: ipaddress.IPv4Network | ipaddress.IPv6Network
    protocol: int = 0
    port_lo: int = 0
    port_hi: int = 65535

    @classmethod
    def parse(cls, text: str) -> Selector:
        """``10.2.0.0/24`` or ``10.2.0.0/24[6/443]`` / ``[17/1000-2000]`` (as list-sas
        prints them; protocols as numbers)."""
        m = _TS.match(text.strip())
        if not m:
            raise ValueError(f"not a traffic selector: {text!r}")
        network = ipaddress.ip_network(m.group("net").strip(), strict=False)
        if m.group("proto") is None:
            return cls(network)
        lo = int(m.group("lo"))
        hi = int(m.group("hi")) if m.group("hi") else lo
        return cls(network, int(m.group("proto")), lo, hi)

    def covers(self, address: str, protocol: int, ports: tuple[int, ...] | None) -> bool:
        """Whether a packet to/from ``address`` of ``protocol`` falls under this selector;
        ``ports`` are the acceptable port values (None: any port, so the range must be full)."""
        addr = ipaddress.ip_address(address)
        if addr.version != self.network.version or addr not in self.network:
            return False
        if self.protocol and self.protocol != protocol:
            return False
        if ports is None:
            return (self.port_lo, self.port_hi) == (0, 65535)
        return any(self.port_lo <= p <= self.port_hi for p in ports)


def flow_protocol(
    protocol: str, destination: str, port: int
) -> tuple[int, tuple[int, ...] | None, tuple[int, ...] | None]:
    """(IP protocol, local ports, remote ports) of a flow as selectors see it. For ICMP the
    "port" is type << 8 | code (RFC 4301, 4.4.1.1): echo request or echo reply will do."""
    v6 = ipaddress.ip_address(destination).version == 6
    if protocol == "icmp":
        types = (128 << 8, 129 << 8) if v6 else (8 << 8, 0)
        return (ICMPV6 if v6 else 1), types, types
    return PROTOCOLS[protocol], None, (port,)


def _covers(ts: list[str], address: str, protocol: int, ports: tuple[int, ...] | None) -> bool:
    for text in ts:
        try:
            if Selector.parse(text).covers(address, protocol, ports):
                return True
        except ValueError:
            continue
    return False


@dataclass(frozen=True, slots=True)
class Flow:
    protocol: str
    source: str
    destination: str
    port: int = 0

    def describe(self) -> str:
        where = f":{self.port}" if self.protocol != "icmp" else ""
        return f"{self.protocol} {self.source} -> {self.destination}{where}"

    def covered_by(self, child: dict[str, Any]) -> bool:
        number, local, remote = flow_protocol(self.protocol, self.destination, self.port)
        return _covers(child.get("local_ts") or [], self.source, number, local) and _covers(
            child.get("remote_ts") or [], self.destination, number, remote
        )


def find_child(
    sas: list[dict[str, Any]],
    flow: Flow,
    connection: str | None = None,
    child: str | None = None,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """(IKE SA, Child SA) of the installed child carrying ``flow`` (the newest one when a
    rekey left two); ``FlowError`` says what exists otherwise."""
    seen: list[str] = []
    candidates = []
    for ike in sas:
        if connection is not None and ike.get("name") != connection:
            continue
        for ch in ike.get("children") or []:
            if child is not None and ch.get("name") != child:
                continue
            seen.append(
                f"{ike.get('name')}/{ch.get('name')} {ch.get('state')} "
                f"{','.join(ch.get('local_ts') or [])} === {','.join(ch.get('remote_ts') or [])}"
            )
            if ch.get("state") in CHILD_UP and flow.covered_by(ch):
                candidates.append((ike, ch))
    if not candidates:
        named = ""
        if connection is not None or child is not None:
            named = f" (connection {connection or 'any'}, child {child or 'any'})"
        what = "; ".join(seen) if seen else "no Child SAs at all"
        raise FlowError(
            f"no installed Child SA{named} covers {flow.describe()}: the tunnel is down or its "
            f"selectors do not cover the flow [{what}]"
        )
    return min(candidates, key=lambda c: c[1].get("installed") or 0)


def find_trap(
    traps: list[dict[str, Any]],
    flow: Flow,
    connection: str | None = None,
    child: str | None = None,
) -> dict[str, Any] | None:
    """The trap policy (``list-traps``) whose selectors cover ``flow``, if any."""
    for trap in traps:
        if connection is not None and trap.get("name") != connection:
            continue
        if child is not None and trap.get("child") != child:
            continue
        if flow.covered_by(trap):
            return trap
    return None


def counters(child: dict[str, Any]) -> dict[str, int]:
    return {k: int(child.get(k) or 0) for k in COUNTER_KEYS}


def same_child(
    sas: list[dict[str, Any]], ike_name: str, child: dict[str, Any]
) -> dict[str, Any] | None:
    for ike in sas:
        if ike.get("name") != ike_name:
            continue
        for ch in ike.get("children") or []:
            if (ch.get("spi_in"), ch.get("spi_out")) == (child.get("spi_in"), child.get("spi_out")):
                return ch
    return None


# --- the check -----------------------------------------------------------------------------------


@dataclass
class Outcome:
    probe: ProbeResult
    sa: dict[str, Any]
    before: dict[str, int]
    after: dict[str, int]
    delta: dict[str, int] = field(default_factory=dict)

    @property
    def encrypted(self) -> bool:
        return (
            self.delta["packets_out"] >= self.probe.sent
            and self.delta["packets_in"] >= self.probe.received
        )


class FlowCheck:
    """Backend of ``flow_check``: ``needs_change()`` is always False; ``apply()`` sends the
    probes and reads the counters; ``dump()`` is the result; ``failure()`` the reason to fail."""

    def __init__(
        self,
        params: dict[str, Any],
        client: AgentClient,
        senders: dict[str, Sender] | None = None,
        sleep: Callable[[float], None] = time.sleep,
        source_for: Callable[[str], str] = route_source,
        first_senders: dict[str, FirstSender] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        protocol = params.get("protocol") or "icmp"
        if protocol not in PROTOCOLS:
            raise FlowError(f"protocol: must be one of {', '.join(PROTOCOLS)}")
        destination = _address(params.get("destination"), "destination")
        source = params.get("source")
        source = source_for(destination) if not source else _address(source, "source")
        if family(source) != family(destination):
            raise FlowError("source and destination must be of the same address family")
        port = params.get("port")
        port = 9 if port is None else port
        if protocol != "icmp" and not (isinstance(port, int) and 0 < port < 65536):
            raise FlowError("port: must be 1-65535")
        count = params.get("count")
        count = 3 if count is None else count
        if not isinstance(count, int) or not 0 < count <= 100:
            raise FlowError("count: must be 1-100")
        wait = params.get("wait")
        self.wait = 2.0 if wait is None else float(wait)
        if not 0 < self.wait <= 60:
            raise FlowError("wait: must be a number of seconds in (0, 60]")
        on_demand_wait = params.get("on_demand_wait")
        self.on_demand_wait = 10.0 if on_demand_wait is None else float(on_demand_wait)
        if not 0 < self.on_demand_wait <= 120:
            raise FlowError("on_demand_wait: must be a number of seconds in (0, 120]")
        self.flow = Flow(protocol, source, destination, port if protocol != "icmp" else 0)
        self.count = count
        self.connection = params.get("connection") or None
        self.child = params.get("child") or None
        self.client = client
        self.senders = senders or SENDERS
        self.sleep = sleep
        self.clock = clock
        self.first_senders = first_senders or FIRST_SENDERS
        self.outcome: Outcome | None = None
        self.first: FirstPacket | None = None  # on demand: the first probes and their answer
        self.trap: dict[str, Any] | None = None  # on demand: the trap the traffic hit

    def needs_change(self) -> bool:
        return False

    def _sas(self) -> list[dict[str, Any]]:
        try:
            return self.client.list_sas(self.connection)
        except AgentError as e:
            raise FlowError(str(e))

    def apply(self) -> Outcome | None:
        if not self._on_demand():
            return None  # the first traffic got no answer: failure() says why
        for _attempt in range(2):
            outcome = self._once()
            if outcome is not None:
                self.outcome = outcome
                return outcome
        raise FlowError(
            f"the Child SA carrying {self.flow.describe()} was rekeyed or deleted during both "
            "attempts: its counters cannot be compared"
        )

    def _traps(self) -> list[dict[str, Any]] | None:
        try:
            return self.client.list_traps(self.connection)
        except AgentCommandError:
            return None  # an agent without on-demand tunnels
        except AgentError as e:
            raise FlowError(str(e))

    def _on_demand(self) -> bool:
        """When no Child SA carries the flow but a trap covers it, send the first traffic and
        wait for the Child SA it brings up; False when no answer came back. Without a trap,
        the ``FlowError`` of ``find_child`` (the tunnel is down: nothing is sent)."""
        sas = self._sas()
        try:
            find_child(sas, self.flow, self.connection, self.child)
            return True
        except FlowError as down:
            trap = find_trap(self._traps() or [], self.flow, self.connection, self.child)
            if trap is None:
                raise down
        f = self.flow
        self.first = self.first_senders[f.protocol](
            f.source, f.destination, f.port, self.on_demand_wait, INTERVAL
        )
        self.trap = trap_state(
            find_trap(self._traps() or [], f, self.connection, self.child) or trap
        )
        if not self.first.arrived:
            return False
        deadline = self.clock() + INSTALLED_WAIT
        while True:
            try:
                find_child(self._sas(), f, self.connection, self.child)
                return True
            except FlowError:
                if self.clock() >= deadline:
                    raise FlowError(
                        f"{f.describe()}: the first traffic through the on-demand tunnel "
                        f"(trap reqid {trap.get('reqid')}) was answered, but no installed Child "
                        f"SA covers the flow {INSTALLED_WAIT:g}s later: it did not go through "
                        "the tunnel"
                    )
                self.sleep(0.1)

    def _once(self) -> Outcome | None:
        ike, child = find_child(self._sas(), self.flow, self.connection, self.child)
        before = counters(child)
        f = self.flow
        probe = self.senders[f.protocol](f.source, f.destination, f.port, self.count, self.wait)
        deadline = time.monotonic() + SETTLE
        while True:
            now_child = same_child(self._sas(), str(ike.get("name")), child)
            if now_child is None:
                return None  # rekeyed or deleted meanwhile: the counters are not comparable
            after = counters(now_child)
            outcome = Outcome(
                probe,
                {
                    "name": ike.get("name"),
                    "child": child.get("name"),
                    "spi_in": child.get("spi_in"),
                    "spi_out": child.get("spi_out"),
                    "local_ts": child.get("local_ts"),
                    "remote_ts": child.get("remote_ts"),
                },
                before,
                after,
                {k: after[k] - before[k] for k in COUNTER_KEYS},
            )
            if outcome.encrypted or time.monotonic() >= deadline:
                return outcome
            self.sleep(0.1)

    def failure(self) -> str | None:
        if self.first is not None and not self.first.arrived:
            return (
                f"{self.flow.describe()}: the tunnel is on demand (trap reqid "
                f"{(self.trap or {}).get('reqid')}, no Child SA yet) and nothing came back from "
                f"{self.first.sent} probe(s) within {self.on_demand_wait:g}s "
                f"({self.first.outcome}; the trap was hit {(self.trap or {}).get('acquires')} "
                "time(s)): the Child SA was not negotiated, or the peer does not answer"
            )
        o = self.outcome
        if o is None:
            return "not run"
        d = o.delta
        seen = (
            f"Child SA {o.sa['name']}/{o.sa['child']} counters: packets out +{d['packets_out']}, "
            f"in +{d['packets_in']}"
        )
        if not o.probe.arrived:
            return (
                f"{self.flow.describe()}: nothing came back from {o.probe.sent} probe(s) "
                f"({', '.join(o.probe.outcomes)}); {seen}"
            )
        if not o.encrypted:
            return (
                f"{self.flow.describe()}: answers arrived ({o.probe.received}/{o.probe.sent}) but "
                f"the {seen} did not rise by what was sent and received: the traffic did not "
                "go through the tunnel"
            )
        return None

    def dump(self) -> dict[str, Any]:
        o = self.outcome
        out: dict[str, Any] = {
            "changed": False,
            "protocol": self.flow.protocol,
            "source": self.flow.source,
            "destination": self.flow.destination,
        }
        if self.flow.protocol != "icmp":
            out["port"] = self.flow.port
        if o is not None or self.first is not None:
            out["on_demand"] = self.first is not None
        if self.first is not None:
            first = self.first.as_dict()
            out.update(
                time_to_first_packet_ms=first["elapsed_ms"], first_packet=first, trap=self.trap
            )
        if o is not None:
            out.update(
                arrived=o.probe.arrived,
                sent=o.probe.sent,
                received=o.probe.received,
                outcomes=list(o.probe.outcomes),
                sa=o.sa,
                counters_before=o.before,
                counters_after=o.after,
                delta=o.delta,
                encrypted=o.encrypted,
            )
        return out


def _address(value: Any, name: str) -> str:
    try:
        return str(ipaddress.ip_address(str(value).strip()))
    except ValueError:
        raise FlowError(f"{name}: {value!r} is not an IP address")
