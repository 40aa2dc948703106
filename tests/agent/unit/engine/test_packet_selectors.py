"""The selectors of a triggering packet (RFC 7296 2.9) and what a Child SA's policy covers."""

from __future__ import annotations

import ipaddress

from ikeagent.dataplane.base import TrafficSelector
from ikeagent.engine.ikev2.selectors import TsRange, covering, from_config, with_packet


def ranges(*specs: str | tuple[str, int, int, int]) -> tuple[TsRange, ...]:
    out = []
    for s in specs:
        net, proto, lo, hi = (s, 0, 0, 65535) if isinstance(s, str) else s
        out.append(TrafficSelector(ipaddress.ip_network(net), proto, lo, hi))
    return from_config(tuple(out))


def test_the_packets_addresses_go_first_within_the_range_that_holds_them() -> None:
    local = ranges("10.1.0.0/24", ("10.9.0.0/16", 6, 443, 443))
    remote = ranges("10.2.0.0/24")
    tsi, tsr = with_packet(local, remote, ("10.9.1.2", "10.2.0.7"))
    # the host takes the protocol and ports of the configured range it lies in
    assert [str(t) for t in tsi] == ["10.9.1.2/32[6/443]", "10.1.0.0/24", "10.9.0.0/16[6/443]"]
    assert [str(t) for t in tsr] == ["10.2.0.7/32", "10.2.0.0/24"]


def test_no_packet_or_one_outside_the_ranges_offers_the_configured_ones() -> None:
    local, remote = ranges("10.1.0.0/24"), ranges("10.2.0.0/24")
    assert with_packet(local, remote, None) == (local, remote)
    assert with_packet(local, remote, ("10.1.0.5", "192.0.2.9")) == (local, remote)
    assert with_packet(local, remote, ("2001:db8::1", "10.2.0.1")) == (local, remote)
    assert with_packet(local, remote, ("not an address", "10.2.0.1")) == (local, remote)
    # a host range is the packet's already: not offered twice
    host = ranges("10.1.0.5/32")
    tsi, tsr = with_packet(host, remote, ("10.1.0.5", "10.2.0.1"))
    assert tsi == host and [str(t) for t in tsr] == ["10.2.0.1/32", "10.2.0.0/24"]


def test_covering_drops_ranges_another_holds() -> None:
    both = ranges("10.1.0.5/32", "10.1.0.0/24", "10.3.0.0/24")
    assert covering(both) == ranges("10.1.0.0/24", "10.3.0.0/24")
    assert covering(ranges("10.1.0.5/32")) == ranges("10.1.0.5/32")
    # a range narrower in protocol is held by the any-protocol one
    assert covering(ranges(("10.1.0.0/24", 6, 0, 65535), "10.1.0.0/24")) == ranges("10.1.0.0/24")
