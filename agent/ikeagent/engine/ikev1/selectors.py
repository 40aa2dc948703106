"""Quick Mode client identities (RFC 2407 4.6.2) <-> traffic selector ranges."""

from __future__ import annotations

import ipaddress

from ikeagent.engine.ikev2.selectors import TsRange
from ikeagent.wire import v1 as w1

_SUBNET = {4: w1.IdType.ID_IPV4_ADDR_SUBNET, 6: w1.IdType.ID_IPV6_ADDR_SUBNET}
_ADDR = {4: w1.IdType.ID_IPV4_ADDR, 6: w1.IdType.ID_IPV6_ADDR}
_RANGE = {4: w1.IdType.ID_IPV4_ADDR_RANGE, 6: w1.IdType.ID_IPV6_ADDR_RANGE}


class BadClientId(ValueError):
    """A Quick Mode ID payload that names no usable selector (INVALID_ID_INFORMATION)."""


def _port(ts: TsRange) -> int:
    return ts.port_start if ts.port_start == ts.port_end else 0


def to_id(ts: TsRange) -> w1.Identification:
    """A selector as an ID payload: an address, a subnet or a range. IKEv1 carries one port (or
    all), so a port range wider than one port becomes 'any port'."""
    v = ts.version
    nets = list(ipaddress.summarize_address_range(ts.start, ts.end))
    if len(nets) == 1 and nets[0].prefixlen == nets[0].max_prefixlen:
        return w1.Identification(_ADDR[v], ts.protocol, _port(ts), ts.start.packed)
    if len(nets) == 1:
        net = nets[0]
        return w1.Identification(
            _SUBNET[v], ts.protocol, _port(ts), net.network_address.packed + net.netmask.packed
        )
    return w1.Identification(_RANGE[v], ts.protocol, _port(ts), ts.start.packed + ts.end.packed)


def from_id(p: w1.Identification) -> TsRange:
    t, data = int(p.id_type), p.data
    port_start, port_end = (p.port, p.port) if p.port else (0, 65535)
    try:
        if t in (w1.IdType.ID_IPV4_ADDR, w1.IdType.ID_IPV6_ADDR):
            a = ipaddress.ip_address(data)
            start, end = a, a
        elif t in (w1.IdType.ID_IPV4_ADDR_SUBNET, w1.IdType.ID_IPV6_ADDR_SUBNET):
            half = len(data) // 2
            if half not in (4, 16) or len(data) != 2 * half:
                raise BadClientId(f"subnet ID of {len(data)} bytes")
            addr = ipaddress.ip_address(data[:half])
            net = ipaddress.ip_network((addr, _prefix(data[half:])), strict=False)
            start, end = net.network_address, net.broadcast_address
        elif t in (w1.IdType.ID_IPV4_ADDR_RANGE, w1.IdType.ID_IPV6_ADDR_RANGE):
            half = len(data) // 2
            if half not in (4, 16) or len(data) != 2 * half:
                raise BadClientId(f"range ID of {len(data)} bytes")
            start, end = ipaddress.ip_address(data[:half]), ipaddress.ip_address(data[half:])
            if start > end:
                raise BadClientId("range ID with start after end")
        else:
            raise BadClientId(f"ID type {t} is not an address, subnet or range")
    except ValueError as exc:
        if isinstance(exc, BadClientId):
            raise
        raise BadClientId(f"bad address in ID: {exc}") from None
    if (t in (1, 4, 7)) != (start.version == 4):
        raise BadClientId("ID type and address family differ")
    return TsRange(start, end, p.protocol, port_start, port_end)


def _prefix(mask: bytes) -> int:
    """The prefix length of a netmask given as an address; non-contiguous masks are refused."""
    bits = len(mask) * 8
    value = int.from_bytes(mask, "big")
    ones = bin(value).count("1")
    if value != ((1 << bits) - 1) ^ ((1 << (bits - ones)) - 1):
        raise BadClientId(f"non-contiguous netmask {mask.hex()}")
    return ones


def host(addr: str) -> TsRange:
    a = ipaddress.ip_address(addr)
    return TsRange(a, a)
