"""Traffic Selector payloads TSi and TSr (RFC 7296 section 3.13)."""

from __future__ import annotations

import struct
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv6Address
from typing import ClassVar, Self

from ikeagent.wire.errors import InvalidLength, InvalidSyntax
from ikeagent.wire.v2.base import Payload, need
from ikeagent.wire.v2.enums import PayloadType, TsType

_TS_HEAD = struct.Struct(">BBBB")  # Number of TSs, RESERVED (3)
_SELECTOR = struct.Struct(">BBHHH")  # TS Type, IP Protocol ID, Selector Length, ports
_V4 = TsType.TS_IPV4_ADDR_RANGE
_V6 = TsType.TS_IPV6_ADDR_RANGE
# TS type -> (selector length, address length, address class)
_LAYOUT: dict[int, tuple[int, int, type[IPv4Address] | type[IPv6Address]]] = {
    _V4: (16, 4, IPv4Address),
    _V6: (40, 16, IPv6Address),
}
_TS_TYPES = {int(t): t for t in TsType}


@dataclass(frozen=True, slots=True)
class TrafficSelector:
    """One address range with an IP protocol (0 = any) and a port range (0..65535 = any)."""

    ts_type: TsType
    ip_protocol: int
    start_port: int
    end_port: int
    start_addr: IPv4Address | IPv6Address
    end_addr: IPv4Address | IPv6Address

    def to_bytes(self) -> bytes:
        layout = _LAYOUT.get(self.ts_type)
        if layout is None:
            raise ValueError(f"cannot encode traffic selector type {self.ts_type}")
        size, _, addr_cls = layout
        if type(self.start_addr) is not addr_cls or type(self.end_addr) is not addr_cls:
            raise ValueError(f"{TsType(self.ts_type).name} needs {addr_cls.__name__} addresses")
        return (
            _SELECTOR.pack(self.ts_type, self.ip_protocol, size, self.start_port, self.end_port)
            + self.start_addr.packed
            + self.end_addr.packed
        )


@dataclass(frozen=True, slots=True)
class TrafficSelectors(Payload):
    """Shared base of TSi and TSr."""

    selectors: tuple[TrafficSelector, ...]

    def body_bytes(self) -> bytes:
        if len(self.selectors) > 255:
            raise ValueError("more than 255 traffic selectors")
        return _TS_HEAD.pack(len(self.selectors), 0, 0, 0) + b"".join(
            s.to_bytes() for s in self.selectors
        )

    @classmethod
    def from_body(cls, body: bytes) -> Self:
        need(body, _TS_HEAD.size, cls.__name__)
        count = body[0]
        off, end = _TS_HEAD.size, len(body)
        selectors = []
        for _ in range(count):
            if end - off < _SELECTOR.size:
                raise InvalidLength("traffic selector cut short")
            ts_type, proto, size, sport, eport = _SELECTOR.unpack_from(body, off)
            layout = _LAYOUT.get(ts_type)
            if layout is None:
                raise InvalidSyntax(f"unsupported traffic selector type {ts_type}")
            want, alen, addr_cls = layout
            if size != want:
                raise InvalidLength(f"traffic selector of type {ts_type} with length {size}")
            if off + size > end:
                raise InvalidLength("traffic selector overruns its payload")
            a = off + _SELECTOR.size
            selectors.append(
                TrafficSelector(
                    _TS_TYPES[ts_type],
                    proto,
                    sport,
                    eport,
                    addr_cls(body[a : a + alen]),
                    addr_cls(body[a + alen : a + 2 * alen]),
                )
            )
            off += size
        if off != end:
            raise InvalidLength(f"{end - off} bytes after the last traffic selector")
        return cls(tuple(selectors))


@dataclass(frozen=True, slots=True)
class TrafficSelectorsInitiator(TrafficSelectors):
    TYPE: ClassVar[PayloadType] = PayloadType.TSi


@dataclass(frozen=True, slots=True)
class TrafficSelectorsResponder(TrafficSelectors):
    TYPE: ClassVar[PayloadType] = PayloadType.TSr
