"""Quick Mode client IDs (RFC 2407 4.6.2.2-4.6.2.8) <-> selector ranges."""

from __future__ import annotations

import ipaddress

import pytest

from ikeagent.engine.ikev1.selectors import BadClientId, from_id, to_id
from ikeagent.engine.ikev2.selectors import TsRange
from ikeagent.wire import v1 as w1


def rng(net: str) -> TsRange:
    n = ipaddress.ip_network(net)
    return TsRange(n.network_address, n.broadcast_address)


@pytest.mark.parametrize(
    "net,id_type",
    [
        ("10.1.0.0/24", w1.IdType.ID_IPV4_ADDR_SUBNET),
        ("0.0.0.0/0", w1.IdType.ID_IPV4_ADDR_SUBNET),
        ("192.0.2.7/32", w1.IdType.ID_IPV4_ADDR),
        ("2001:db8:a::/64", w1.IdType.ID_IPV6_ADDR_SUBNET),
        ("::/0", w1.IdType.ID_IPV6_ADDR_SUBNET),
        ("2001:db8::1/128", w1.IdType.ID_IPV6_ADDR),
    ],
)
def test_subnets_and_hosts_round_trip(net: str, id_type: int) -> None:
    ts = rng(net)
    p = to_id(ts)
    assert p.id_type == id_type
    assert from_id(p) == ts


def test_a_range_that_is_no_subnet_is_a_range_id() -> None:
    ts = TsRange(ipaddress.ip_address("10.0.0.3"), ipaddress.ip_address("10.0.0.9"))
    p = to_id(ts)
    assert p.id_type == w1.IdType.ID_IPV4_ADDR_RANGE and p.data == bytes([10, 0, 0, 3, 10, 0, 0, 9])
    assert from_id(p) == ts


def test_subnet_id_bytes_as_on_the_wire() -> None:
    # RFC 2407 4.6.2.5: ID_IPV6_ADDR_SUBNET is the address then the mask, 16 octets each
    data = ipaddress.ip_address("2001:db8:b::").packed + bytes([0xFF] * 8 + [0] * 8)
    p = w1.Identification(w1.IdType.ID_IPV6_ADDR_SUBNET, 0, 0, data)
    assert from_id(p) == rng("2001:db8:b::/64")


def test_one_port_and_protocol_are_kept() -> None:
    p = w1.Identification(
        w1.IdType.ID_IPV4_ADDR_SUBNET, 17, 53, bytes([10, 2, 0, 0, 255, 255, 255, 0])
    )
    ts = from_id(p)
    assert (ts.protocol, ts.port_start, ts.port_end) == (17, 53, 53)
    assert to_id(ts) == p


@pytest.mark.parametrize(
    "id_type,data",
    [
        (w1.IdType.ID_IPV4_ADDR_SUBNET, bytes([10, 0, 0, 0, 255, 0, 255, 0])),  # holes in the mask
        (w1.IdType.ID_IPV4_ADDR_SUBNET, bytes([10, 0, 0, 0, 255])),  # short
        (w1.IdType.ID_IPV4_ADDR_RANGE, bytes([10, 0, 0, 9, 10, 0, 0, 3])),  # end before start
        (w1.IdType.ID_IPV4_ADDR, bytes(16)),  # IPv6 address in an IPv4 ID
        (w1.IdType.ID_FQDN, b"gw.example"),  # no address at all
    ],
)
def test_bad_client_ids_are_refused(id_type: int, data: bytes) -> None:
    with pytest.raises(BadClientId):
        from_id(w1.Identification(id_type, 0, 0, data))
