"""The lab's address plan and names (pure): the contract of docs/dev/collection-plan.md, "Lab"."""

from __future__ import annotations

import ipaddress

import pytest

from ansible_collections.ikelab.ipsec.plugins.module_utils.lab.plan import (
    LabParameterError,
    LabSpec,
    build_plan,
    owned_netns_index,
    owned_port_index,
    site_index,
    stable_mac,
)

IFNAMSIZ = 15  # usable characters of a Linux interface name


def test_default_plan_follows_the_contract() -> None:
    plan = build_plan(LabSpec.parse())
    assert [s.name for s in plan.sites] == ["site1", "site2", "site3", "site4"]
    assert plan.bridge == "ikl-mgmt"
    assert plan.bridge_address == "198.18.0.1"
    assert plan.wan_netns == "ikl-wan"
    for i, site in enumerate(plan.sites, start=1):
        assert site.netns == f"ikl-site{i}"
        assert site.lan_netns == f"ikl-site{i}-lan"
        assert site.mgmt_port == f"ikl-m{i}"
        assert site.management_address == f"198.18.0.{10 + i}"
        assert site.management_prefixlen == 24
        assert site.underlay_address == f"192.0.2.{10 + i}"
        assert site.protected_subnet == f"10.{i}.0.0/24"
        assert site.lan_address == f"10.{i}.0.1"
        assert site.lan_host == f"10.{i}.0.10"


def test_other_networks_scale_the_same_way() -> None:
    spec = LabSpec.parse("lab2", 3, "198.19.4.0/24", "203.0.113.0/24", "172.16.0.0/12")
    plan = build_plan(spec)
    s3 = plan.sites[2]
    assert s3.management_address == "198.19.4.13"
    assert s3.underlay_address == "203.0.113.13"
    # a /12 pool is cut into /20 blocks; site i takes the first /24 of block i
    assert s3.protected_subnet == "172.16.48.0/24"
    assert s3.lan_address == "172.16.48.1"
    assert s3.lan_host == "172.16.48.10"
    assert plan.bridge_address == "198.19.4.1"


def test_largest_lab_fits_interface_names_and_its_networks() -> None:
    spec = LabSpec.parse("abcde", 244)
    plan = build_plan(spec)
    last = plan.sites[-1]
    assert last.management_address == "198.18.0.254"
    for name in (plan.bridge, last.mgmt_port, last.name):
        assert len(name) <= IFNAMSIZ, name
    subnets = [ipaddress.ip_network(s.protected_subnet) for s in plan.sites]
    assert len(set(subnets)) == 244
    assert all(not a.overlaps(b) for a, b in zip(subnets, subnets[1:], strict=False))
    with pytest.raises(LabParameterError) as err:
        LabSpec.parse("abcde", 245)
    assert err.value.field == "sites"
    assert "management_network" in str(err.value)


def test_stable_macs_are_local_unicast_and_distinct() -> None:
    plan = build_plan(LabSpec.parse("ikl", 20))
    macs = [s.mac(i) for s in plan.sites for i in ("port", "mgmt0", "wan0", "wan-port", "lan0")]
    macs.append(plan.bridge_mac)
    assert len(set(macs)) == len(macs)
    for mac in macs:
        first = int(mac.split(":")[0], 16)
        assert first & 0x01 == 0  # unicast
        assert first & 0x02 == 0x02  # locally administered
    # a re-created site gets the same addresses; another lab does not
    assert stable_mac("ikl", "site1", "mgmt0") == plan.sites[0].mac("mgmt0")
    assert stable_mac("ikl2", "site1", "mgmt0") != plan.sites[0].mac("mgmt0")


@pytest.mark.parametrize(
    ("netns", "expected"),
    [
        ("ikl-site1", (1, False)),
        ("ikl-site12-lan", (12, True)),
        ("ikl-wan", None),
        ("ikl-site0", None),
        ("ikl-site1x", None),
        ("ikl2-site1", None),  # another lab
        ("ikl0c74684b-ga", None),  # the test library's namespaces
        ("xikl-site1", None),
    ],
)
def test_only_the_labs_own_namespaces_are_recognised(
    netns: str, expected: tuple[int, bool] | None
) -> None:
    assert owned_netns_index("ikl", netns) == expected


def test_only_the_labs_own_bridge_ports_are_recognised() -> None:
    assert owned_port_index("ikl", "ikl-m3") == 3
    assert owned_port_index("ikl", "ikl-mgmt") is None
    assert owned_port_index("ikl", "ikl2-m3") is None
    assert owned_port_index("ikl", "eth0") is None
    assert site_index("site7") == 7
    assert site_index("site07") is None
