"""Selector matching, the memory data plane and choosing a data plane."""

from __future__ import annotations

import ipaddress
import struct

import pytest

from ikeagent.dataplane.base import (
    ChildSa,
    Dataplane,
    ExpireKind,
    SaCounters,
    SaExpired,
    SaKeys,
    TrafficSelector,
)
from ikeagent.dataplane.factory import (
    DataplaneUnavailable,
    choose_dataplane,
    create_dataplane,
)
from ikeagent.dataplane.memory import MemoryDataplane
from ikeagent.dataplane.selector import OPAQUE, SelectorPair, address_key, packet_info
from ikeagent.dataplane.userspace import UserspaceDataplane


def ts(text: str, protocol: int = 0, ports: tuple[int, int] = (0, 65535)) -> TrafficSelector:
    return TrafficSelector(ipaddress.ip_network(text), protocol, *ports)


def v4(src: str, dst: str, proto: int, l4: bytes, frag: int = 0) -> bytes:
    return (
        struct.pack(">BBHHHBBH", 0x45, 0, 20 + len(l4), 0, frag, 64, proto, 0)
        + ipaddress.ip_address(src).packed
        + ipaddress.ip_address(dst).packed
        + l4
    )


def v6(src: str, dst: str, nh: int, rest: bytes) -> bytes:
    return (
        struct.pack(">IHBB", 6 << 28, len(rest), nh, 64)
        + ipaddress.ip_address(src).packed
        + ipaddress.ip_address(dst).packed
        + rest
    )


A, B = int(ipaddress.ip_address("10.1.0.1")), int(ipaddress.ip_address("10.2.0.1"))


def test_packet_info_ipv4_udp_icmp_and_fragments() -> None:
    assert packet_info(v4("10.1.0.1", "10.2.0.1", 17, struct.pack(">HHHH", 1234, 53, 8, 0))) == (
        4,
        A,
        B,
        17,
        1234,
        53,
    )
    assert packet_info(v4("10.1.0.1", "10.2.0.1", 1, b"\x08\x00\x00\x00")) == (
        4,
        A,
        B,
        1,
        0x0800,
        0x0800,
    )
    later_fragment = v4("10.1.0.1", "10.2.0.1", 17, bytes(8), frag=0x0010)
    assert packet_info(later_fragment)[4:] == (OPAQUE, OPAQUE)
    assert packet_info(v4("10.1.0.1", "10.2.0.1", 6, b"\x00"))[4:] == (OPAQUE, OPAQUE)
    assert packet_info(b"") is None and packet_info(b"\x45" + bytes(10)) is None


def test_packet_info_ipv6_with_extension_headers() -> None:
    tcp = struct.pack(">HH", 443, 5555) + bytes(16)
    hop_by_hop = bytes([6, 0]) + bytes(6)  # next header TCP, 8 bytes long
    info = packet_info(v6("2001:db8::1", "2001:db8:1::1", 0, hop_by_hop + tcp))
    assert info is not None and info[0] == 6 and info[3:] == (6, 443, 5555)
    first_fragment = bytes([17, 0, 0, 0]) + bytes(4) + struct.pack(">HH", 7, 8)
    assert packet_info(v6("2001:db8::1", "2001:db8::2", 44, first_fragment))[3:] == (17, 7, 8)
    later = bytes([17, 0, 0, 0x10]) + bytes(4) + bytes(8)
    assert packet_info(v6("2001:db8::1", "2001:db8::2", 44, later))[4:] == (OPAQUE, OPAQUE)


def test_selector_pair_directions_and_ports() -> None:
    pair = SelectorPair((ts("10.1.0.0/24"),), (ts("10.2.0.0/16", 17, (53, 53)),))
    assert pair.narrow
    out = packet_info(v4("10.1.0.1", "10.2.9.9", 17, struct.pack(">HHHH", 999, 53, 8, 0)))
    assert pair.outbound(out) and not pair.inbound(out)
    back = packet_info(v4("10.2.9.9", "10.1.0.1", 17, struct.pack(">HHHH", 53, 999, 8, 0)))
    assert pair.inbound(back) and not pair.outbound(back)
    other_port = packet_info(v4("10.1.0.1", "10.2.9.9", 17, struct.pack(">HHHH", 999, 54, 8, 0)))
    assert not pair.outbound(other_port)
    fragment = packet_info(v4("10.1.0.1", "10.2.9.9", 17, bytes(8), frag=0x20))
    assert not pair.outbound(fragment)  # OPAQUE ports do not match a narrowed range
    wide = SelectorPair((ts("10.1.0.0/24"),), (ts("0.0.0.0/0"),))
    assert not wide.narrow and wide.outbound(fragment)
    assert not wide.outbound(packet_info(v6("2001:db8::1", "2001:db8::2", 59, b"")))


def test_address_key() -> None:
    packet = v4("10.1.0.1", "10.2.0.1", 1, bytes(8))
    assert address_key(packet) == (A, B)
    assert address_key(b"\x00" * 4 + packet, 4, len(packet)) == (A, B)
    assert address_key(b"\x45" + bytes(5)) is None


# -- memory data plane ---------------------------------------------------------------------


def child(reqid: int, spi_in: int, spi_out: int) -> ChildSa:
    return ChildSa(
        reqid=reqid,
        name="c",
        local_addr="192.0.2.1",
        remote_addr="192.0.2.2",
        inbound=SaKeys(spi_in, 20, bytes(20), None),
        outbound=SaKeys(spi_out, 20, bytes(20), None),
        local_ts=(ts("10.1.0.0/24"),),
        remote_ts=(ts("10.2.0.0/24"),),
    )


def test_memory_dataplane_records_and_counts() -> None:
    dp = MemoryDataplane()
    assert isinstance(dp, Dataplane)
    dp.start()
    assert dp.attach_encap_socket(object(), ("0.0.0.0", 4500), lambda *a: None) is False
    dp.install_child(child(1, 0x10, 0x20))
    dp.install_child(child(1, 0x11, 0x21))
    assert dp.outbound_pair(1).outbound.spi == 0x21
    assert dp.installed_spis() == {0x10, 0x20, 0x11, 0x21}
    assert dp.bump(1, 0x11, 0x21, bytes_in=100, packets_in=1, now=5.0) == SaCounters(
        bytes_in=100, packets_in=1, last_used=5.0
    )
    dp.delete_child_sas(1, 0x10, 0x20)
    dp.delete_child_sas(1, 0x99, 0x98)  # unknown: recorded, no error
    with pytest.raises(KeyError):
        dp.counters(1, 0x10, 0x20)
    assert dp.policies[1].inbound.spi == 0x10  # policy stays while pairs remain
    dp.remove_policy(1)
    assert dp.pairs == {} and dp.policies == {}
    assert [entry[0] for entry in dp.log] == [
        "start",
        "attach_encap_socket",
        "install",
        "install",
        "delete",
        "delete",
        "remove_policy",
    ]
    dp.close()
    assert dp.closed


def test_memory_dataplane_events_wake_the_runtime() -> None:
    dp = MemoryDataplane()
    woken = []
    dp.set_event_callback(lambda: woken.append(True))
    event = SaExpired(1, 0x10, ExpireKind.SOFT)
    dp.raise_event(event)
    assert woken == [True]
    assert dp.poll_events() == [event] and dp.poll_events() == []


# -- choosing a data plane -----------------------------------------------------------------


def test_choose_auto_without_kernel_esp_is_userspace() -> None:
    name, reason = choose_dataplane("auto", probe=lambda: (False, "no ESP here"))
    assert (name, reason) == ("userspace", "no ESP here")


def test_choose_auto_with_kernel_esp_until_xfrm_exists() -> None:
    name, reason = choose_dataplane("auto", probe=lambda: (True, "ESP ok"))
    assert name in ("xfrm", "userspace") and "ESP ok" in reason


def test_choose_configured_and_unknown() -> None:
    assert choose_dataplane("memory") == ("memory", "configured")
    with pytest.raises(ValueError):
        choose_dataplane("kernel-magic")


def test_create() -> None:
    assert isinstance(create_dataplane("memory"), MemoryDataplane)
    plane = create_dataplane("userspace", ifname="ipsec7", mtu=1380)
    assert isinstance(plane, UserspaceDataplane) and plane.ifname == "ipsec7"
    with pytest.raises(DataplaneUnavailable):
        create_dataplane("nope")
