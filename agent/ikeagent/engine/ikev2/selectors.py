"""Traffic selectors: config networks <-> wire ranges, and narrowing (RFC 7296 2.9)."""

from __future__ import annotations

import functools
import ipaddress
from dataclasses import dataclass

from ikeagent.dataplane.base import TrafficSelector
from ikeagent.wire.v2 import TrafficSelector as WireTs
from ikeagent.wire.v2 import TsType

Addr = ipaddress.IPv4Address | ipaddress.IPv6Address


@dataclass(frozen=True, slots=True)
class TsRange:
    start: Addr
    end: Addr
    protocol: int = 0
    port_start: int = 0
    port_end: int = 65535

    @property
    def version(self) -> int:
        return self.start.version

    def to_wire(self) -> WireTs:
        ts_type = TsType.TS_IPV4_ADDR_RANGE if self.version == 4 else TsType.TS_IPV6_ADDR_RANGE
        return WireTs(ts_type, self.protocol, self.port_start, self.port_end, self.start, self.end)

    def to_config(self) -> tuple[TrafficSelector, ...]:
        return tuple(
            TrafficSelector(net, self.protocol, self.port_start, self.port_end)
            for net in ipaddress.summarize_address_range(self.start, self.end)
        )

    def intersect(self, other: TsRange) -> TsRange | None:
        if self.version != other.version:
            return None
        if self.protocol and other.protocol and self.protocol != other.protocol:
            return None
        start, end = max(self.start, other.start), min(self.end, other.end)
        if start > end:
            return None
        ps, pe = max(self.port_start, other.port_start), min(self.port_end, other.port_end)
        if ps > pe:
            # OPAQUE ports (start 65535, end 0) only match themselves; treat as no overlap
            return None
        return TsRange(start, end, self.protocol or other.protocol, ps, pe)

    def contains(self, other: TsRange) -> bool:
        return self.intersect(other) == other

    def __str__(self) -> str:
        nets = list(ipaddress.summarize_address_range(self.start, self.end))
        text = str(nets[0]) if len(nets) == 1 else f"{self.start}..{self.end}"
        if self.protocol or (self.port_start, self.port_end) != (0, 65535):
            ports = (
                str(self.port_start)
                if self.port_start == self.port_end
                else f"{self.port_start}-{self.port_end}"
            )
            text += f"[{self.protocol}/{ports}]"
        return text


@functools.lru_cache(maxsize=1024)  # config selectors: a few distinct tuples, asked for often
def from_config(ts: tuple[TrafficSelector, ...]) -> tuple[TsRange, ...]:
    return tuple(
        TsRange(
            t.network.network_address,
            t.network.broadcast_address,
            t.protocol,
            t.port_start,
            t.port_end,
        )
        for t in ts
    )


def with_packet(
    local: tuple[TsRange, ...], remote: tuple[TsRange, ...], packet: tuple[str, str] | None
) -> tuple[tuple[TsRange, ...], tuple[TsRange, ...]]:
    """RFC 7296 2.9: a Child SA raised by a packet offers, first in TSi and TSr, selectors of
    just that packet's source and destination (each within the configured selector that holds
    it, so its protocol and ports), then the configured ones: a responder that cannot take the
    whole range picks the part this traffic needs. Without a packet, or when an address lies
    in no configured selector, the configured ones alone."""
    if packet is None:
        return local, remote
    first = []
    for ranges, text in ((local, packet[0]), (remote, packet[1])):
        try:
            addr = ipaddress.ip_address(text)
        except ValueError:
            return local, remote
        holder = next(
            (r for r in ranges if r.version == addr.version and r.start <= addr <= r.end), None
        )
        if holder is None:
            return local, remote
        host = TsRange(addr, addr, holder.protocol, holder.port_start, holder.port_end)
        first.append((host,) if host != holder else ())
    return first[0] + local, first[1] + remote


def covering(ranges: tuple[TsRange, ...]) -> tuple[TsRange, ...]:
    """``ranges`` without those another one holds (a packet's selectors beside the range they
    came from): what a Child SA's policy really covers."""
    return tuple(r for r in ranges if not any(o != r and o.contains(r) for o in ranges))


def from_wire(selectors: tuple[WireTs, ...]) -> tuple[TsRange, ...]:
    out = []
    for s in selectors:
        if int(s.ts_type) not in (TsType.TS_IPV4_ADDR_RANGE, TsType.TS_IPV6_ADDR_RANGE):
            continue
        if s.start_addr > s.end_addr:
            continue
        out.append(TsRange(s.start_addr, s.end_addr, s.ip_protocol, s.start_port, s.end_port))
    return tuple(out)


def narrow(ours: tuple[TsRange, ...], theirs: tuple[TsRange, ...]) -> tuple[TsRange, ...]:
    """Intersections of every pair, without duplicates, in our order."""
    out: list[TsRange] = []
    for a in ours:
        for b in theirs:
            c = a.intersect(b)
            if c is not None and c not in out:
                out.append(c)
    return tuple(out)


def is_subset(narrowed: tuple[TsRange, ...], proposed: tuple[TsRange, ...]) -> bool:
    return bool(narrowed) and all(any(p.contains(n) for p in proposed) for n in narrowed)


@functools.lru_cache(maxsize=1024)  # negotiated selectors repeat from one SA to the next
def to_config(ranges: tuple[TsRange, ...]) -> tuple[TrafficSelector, ...]:
    out: list[TrafficSelector] = []
    for r in ranges:
        out.extend(r.to_config())
    return tuple(out)
