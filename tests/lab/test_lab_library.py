"""Tests of the lab library itself (the parts that can be wrong without a peer noticing)."""

from __future__ import annotations

import os

import pytest

from ikelab_testing import vici
from ikelab_testing.agent import child_states
from ikelab_testing.capture import _classify
from ikelab_testing.charon import Child, Connection, Secret, swanctl_conf
from ikelab_testing.netns import Lab, TopologySpec


def test_vici_round_trip_keeps_sections_lists_and_values() -> None:
    msg = {
        "child": "net",
        "timeout": "10",
        "conn": {"local_ts": ["10.1.0.0/24", "10.3.0.0/24"], "inner": {"x": "y"}, "empty": []},
        "after": "z",
    }
    assert vici.decode(vici.encode(msg)) == msg


def test_vici_encoding_bytes() -> None:
    # element types per the VICI protocol: KEY_VALUE=3, SECTION_START=1, SECTION_END=2,
    # LIST_START=4, LIST_ITEM=5, LIST_END=6; names u8-prefixed, values u16-prefixed
    assert vici.encode({"a": "bc"}) == b"\x03\x01a\x00\x02bc"
    assert vici.encode({"s": {}}) == b"\x01\x01s\x02"
    assert vici.encode({"l": ["x"]}) == b"\x04\x01l\x05\x00\x01x\x06"


def test_vici_decode_rejects_unknown_element() -> None:
    with pytest.raises(vici.ViciError):
        vici.decode(b"\x09")


def test_swanctl_conf_renders_connection_and_hides_psk_as_hex() -> None:
    conn = Connection(
        "site-b",
        ["192.0.2.1"],
        ["192.0.2.2"],
        "gw-a.example",
        "gw-b.example",
        [Child("net", ["10.1.0.0/24"], ["10.2.0.0/24"], rekey_time="30s", start_action="trap")],
        rekey_time="1m",
        mobike=False,
    )
    text = swanctl_conf([conn], [Secret("ab", ["gw-a.example", "gw-b.example"], b'pa ss"')])
    assert "site-b {" in text
    assert "local_addrs = 192.0.2.1" in text
    assert "proposals = aes256gcm16-prfsha256-x25519" in text
    assert "mobike = no" in text
    assert "rekey_time = 1m" in text and "rekey_time = 30s" in text
    assert "start_action = trap" in text
    assert "ike-ab {" in text
    assert "secret = 0x" + b'pa ss"'.hex() in text
    assert "pa ss" not in text
    assert "pa ss" not in repr(Secret("ab", [], b"pa ss"))
    # braces balance
    assert text.count("{") == text.count("}")


@pytest.mark.parametrize(
    ("protocols", "sport", "dport", "src6", "kind"),
    [
        ("eth:ethertype:ip:udp:isakmp", 500, 500, "", "ike"),
        ("eth:ethertype:ip:udp:udpencap:isakmp", 4500, 4500, "", "ike"),
        ("eth:ethertype:ip:udp:udpencap:esp", 4500, 4500, "", "esp-in-udp"),
        ("eth:ethertype:ip:esp", None, None, "", "esp"),
        ("eth:ethertype:ip:udp:udpencap", 4500, 4500, "", "keepalive"),
        ("eth:ethertype:arp", None, None, "", "link"),
        ("eth:ethertype:ipv6:icmpv6", None, None, "fe80::1", "link"),
        ("eth:ethertype:ipv6:icmpv6", None, None, "2001:db8::1", "icmp"),
        ("eth:ethertype:ip:icmp:data", None, None, "", "icmp"),
        ("eth:ethertype:ip:udp:data", 4500, 4500, "", "other"),
        ("eth:ethertype:ip:tcp", None, None, "", "other"),
    ],
)
def test_capture_classification(protocols, sport, dport, src6, kind) -> None:
    assert _classify(tuple(protocols.split(":")), sport, dport, src6) == kind


def test_child_states_accepts_list_and_mapping_shapes() -> None:
    as_list = [{"name": "site-b", "children": [{"name": "net", "state": "installed"}]}]
    as_map = {"site-b": {"child-sas": {"net-1": {"name": "net", "state": "INSTALLED"}}}}
    assert child_states(as_list) == [("net", "INSTALLED")]
    assert child_states(as_map) == [("net", "INSTALLED")]
    assert child_states([]) == []


def test_topology_spec_is_parameterised() -> None:
    spec = TopologySpec(subnet_a="10.11.0.0/24", subnet_b="10.12.0.0/16", underlay="198.18.0.0/24")
    assert (spec.host_a_addr, spec.gw_a_inner) == ("10.11.0.2", "10.11.0.1")
    assert (spec.host_b_addr, spec.gw_b_inner) == ("10.12.0.2", "10.12.0.1")
    assert (spec.gw_a_outer, spec.gw_b_outer) == ("198.18.0.1", "198.18.0.2")


@pytest.mark.netns
def test_lab_removes_exactly_what_it_created() -> None:
    with Lab() as one, Lab() as two:
        assert one.prefix != two.prefix
        a = one.namespace("x")
        b = one.namespace("y")
        other = two.namespace("x")
        one.veth(a, "v0", b, "v0")
        a.add_address("v0", "198.18.0.1/30")
        b.add_address("v0", "198.18.0.2/30")
        assert a.ping("198.18.0.2", count=1).ok
        proc = b.spawn(["sleep", "60"])
        workdir = one.workdir("t")
        one.close()
        assert proc.poll() is not None
        assert not os.path.exists(f"/run/netns/{a.name}")
        assert not os.path.exists(f"/run/netns/{b.name}")
        assert not workdir.exists()
        assert os.path.exists(f"/run/netns/{other.name}")
    assert not os.path.exists(f"/run/netns/{other.name}")
