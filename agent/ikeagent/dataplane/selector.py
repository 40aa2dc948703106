"""Matching IP packets against traffic selectors (RFC 7296 3.13, RFC 4301 4.4.1).

Addresses are compared as integers against precompiled (low, high) ranges. Ports follow RFC
7296 3.13.1: TCP/UDP/SCTP/UDP-Lite ports, ICMP/ICMPv6 type (high octet) and code (low octet);
when a packet carries no port information (non-initial fragment, truncated header, other
protocols), its ports are OPAQUE (-1) and only a selector covering every port matches.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from .base import TrafficSelector

# (version, source, destination, protocol, source port, destination port)
PacketInfo = tuple[int, int, int, int, int, int]

OPAQUE = -1
_PORT_PROTOCOLS = frozenset({6, 17, 132, 136})
_ICMP_PROTOCOLS = frozenset({1, 58})
_IPV6_SKIPPABLE = frozenset({0, 43, 60})  # hop-by-hop, routing, destination options


def _ports(pkt: bytes | bytearray | memoryview, proto: int, offset: int) -> tuple[int, int]:
    if len(pkt) < offset + 4:
        return OPAQUE, OPAQUE
    if proto in _PORT_PROTOCOLS:
        return (pkt[offset] << 8 | pkt[offset + 1], pkt[offset + 2] << 8 | pkt[offset + 3])
    if proto in _ICMP_PROTOCOLS:
        value = pkt[offset] << 8 | pkt[offset + 1]
        return value, value
    return OPAQUE, OPAQUE


def packet_info(pkt: bytes | bytearray | memoryview) -> PacketInfo | None:
    """Addresses, protocol and ports of an IPv4 or IPv6 packet; None when it is not one."""
    if not pkt:
        return None
    version = pkt[0] >> 4
    if version == 4:
        if len(pkt) < 20:
            return None
        src = int.from_bytes(pkt[12:16], "big")
        dst = int.from_bytes(pkt[16:20], "big")
        proto = pkt[9]
        if (pkt[6] & 0x1F) | pkt[7]:  # non-initial fragment: no L4 header
            return 4, src, dst, proto, OPAQUE, OPAQUE
        sport, dport = _ports(pkt, proto, (pkt[0] & 0x0F) * 4)
        return 4, src, dst, proto, sport, dport
    if version == 6:
        if len(pkt) < 40:
            return None
        src = int.from_bytes(pkt[8:24], "big")
        dst = int.from_bytes(pkt[24:40], "big")
        proto = pkt[6]
        offset = 40
        for _ in range(8):  # bounded walk over extension headers
            if proto not in _IPV6_SKIPPABLE or len(pkt) < offset + 2:
                break
            proto, offset = pkt[offset], offset + (pkt[offset + 1] + 1) * 8
        if proto == 44:  # fragment header: only the first fragment has ports
            if len(pkt) < offset + 8:
                return 6, src, dst, proto, OPAQUE, OPAQUE
            first = not ((pkt[offset + 2] << 8 | pkt[offset + 3]) & 0xFFF8)
            proto, offset = pkt[offset], offset + 8
            if not first:
                return 6, src, dst, proto, OPAQUE, OPAQUE
        sport, dport = _ports(pkt, proto, offset)
        return 6, src, dst, proto, sport, dport
    return None


@dataclass(frozen=True, slots=True)
class CompiledSelector:
    version: int
    low: int
    high: int
    protocol: int
    port_start: int
    port_end: int

    @classmethod
    def of(cls, ts: TrafficSelector) -> CompiledSelector:
        net = ts.network
        return cls(
            net.version,
            int(net.network_address),
            int(net.broadcast_address),
            ts.protocol,
            ts.port_start,
            ts.port_end,
        )

    @property
    def narrow(self) -> bool:
        """Whether the selector looks beyond addresses."""
        return bool(self.protocol) or (self.port_start, self.port_end) != (0, 65535)

    def matches(self, version: int, addr: int, proto: int, port: int) -> bool:
        if version != self.version or not self.low <= addr <= self.high:
            return False
        if self.protocol and proto != self.protocol:
            return False
        if (self.port_start, self.port_end) == (0, 65535):
            return True
        return self.port_start <= port <= self.port_end


class SelectorPair:
    """The local and remote selectors of one child: which packets it protects."""

    __slots__ = ("local", "remote", "narrow")

    def __init__(
        self, local_ts: tuple[TrafficSelector, ...], remote_ts: tuple[TrafficSelector, ...]
    ) -> None:
        self.local = tuple(CompiledSelector.of(ts) for ts in local_ts)
        self.remote = tuple(CompiledSelector.of(ts) for ts in remote_ts)
        self.narrow = any(s.narrow for s in self.local + self.remote)

    def outbound(self, info: PacketInfo) -> bool:
        """A packet leaving through the tunnel: source local, destination remote."""
        version, src, dst, proto, sport, dport = info
        return any(s.matches(version, src, proto, sport) for s in self.local) and any(
            s.matches(version, dst, proto, dport) for s in self.remote
        )

    def inbound(self, info: PacketInfo) -> bool:
        """A packet that arrived through the tunnel: source remote, destination local."""
        version, src, dst, proto, sport, dport = info
        return any(s.matches(version, src, proto, sport) for s in self.remote) and any(
            s.matches(version, dst, proto, dport) for s in self.local
        )


_V4_ADDRS = struct.Struct(">II")
_V6_ADDRS = struct.Struct(">QQQQ")


def address_key(
    buf: bytes | bytearray | memoryview, pos: int = 0, length: int | None = None
) -> tuple | None:
    """The source and destination addresses of the packet at ``buf[pos:pos+length]`` as a
    tuple of ints, a cache key for address-only matching; None when it is not IP."""
    if length is None:
        length = len(buf) - pos
    if length < 20:
        return None
    version = buf[pos] >> 4
    if version == 4:
        return _V4_ADDRS.unpack_from(buf, pos + 12)
    if version == 6 and length >= 40:
        return _V6_ADDRS.unpack_from(buf, pos + 8)
    return None
