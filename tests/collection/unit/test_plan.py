"""plugin_utils.plan: tunnels from topologies and ikelab_tunnels, validation, determinism."""

from __future__ import annotations

import copy
import json
import random
from typing import Any

import pytest

from ansible_collections.ikelab.ipsec.plugins.plugin_utils.plan import (
    Plan,
    PlanError,
    Problem,
    make_plan,
    module_options,
)
from ikeagent.config.schema import parse_config

SECRETS = "/srv/ikelab-test/secrets"  # never touched: ``exists`` is injected


def site(i: int, **extra: Any) -> dict[str, Any]:
    """The lab's addressing (collection plan): underlay 192.0.2.(10+i), subnet 10.i.0.0/24."""
    return {
        "ikelab_underlay_address": f"192.0.2.{10 + i}",
        "ikelab_protected_subnets": [f"10.{i}.0.0/24"],
        **extra,
    }


def inventory(n: int = 4, **per_host: dict[str, Any]) -> dict[str, dict[str, Any]]:
    hv = {f"site{i}": site(i) for i in range(1, n + 1)}
    for host, extra in per_host.items():
        hv.setdefault(host, {}).update(extra)
    return hv


def groups_of(hv: dict[str, Any], **extra: list[str]) -> dict[str, list[str]]:
    return {"all": sorted(hv), "ungrouped": [], "sites": sorted(hv), **extra}


MESH = {"type": "full_mesh", "group": "sites"}


def plan(hv: dict[str, Any], groups: dict[str, list[str]] | None = None, **kw: Any) -> Plan:
    kw.setdefault("secrets_dir", SECRETS)
    kw.setdefault("generate_keys", True)
    return make_plan(hv, groups if groups is not None else groups_of(hv), **kw)


def problems(
    hv: dict[str, Any], groups: dict[str, list[str]] | None = None, **kw: Any
) -> list[str]:
    with pytest.raises(PlanError) as e:
        plan(hv, groups, **kw)
    lines = str(e.value).splitlines()
    assert lines == [str(p) for p in e.value.problems]
    return lines


def only(lines: list[str], needle: str) -> str:
    hits = [line for line in lines if needle in line]
    assert len(hits) == 1, (needle, lines)
    return hits[0]


# --- topologies ---------------------------------------------------------------------------------


def test_full_mesh_of_four_gives_six_tunnels_with_both_ends() -> None:
    hv = inventory(4)
    p = plan(hv, topology=MESH)
    ids = [t["id"] for t in p.tunnels]
    assert ids == [
        "site1--site2", "site1--site3", "site1--site4",
        "site2--site3", "site2--site4", "site3--site4",
    ]  # fmt: skip
    for t in p.tunnels:
        a, b = t["ends"]
        assert a < b and t["initiator"] == a and t["responder"] == b
        assert t["psk_file"] == f"{SECRETS}/{t['id']}.psk"
        assert t["connections"] == {a: b, b: a}
    assert sorted(p.hosts) == ["site1", "site2", "site3", "site4"]
    for host, entries in p.hosts.items():
        assert [e["peer"] for e in entries] == sorted(set(hv) - {host})
        for e in entries:
            i, j = int(host[-1]), int(e["peer"][-1])
            assert e["name"] == e["peer"]
            assert e["tunnel_id"] == "--".join(sorted((host, e["peer"])))
            assert e["local_addrs"] == [f"192.0.2.{10 + i}"]
            assert e["remote_addrs"] == [f"192.0.2.{10 + j}"]
            assert e["local_ts"] == [f"10.{i}.0.0/24"] and e["remote_ts"] == [f"10.{j}.0.0/24"]
            assert (e["local_id"], e["remote_id"]) == (host, e["peer"])
            assert e["start_action"] == ("start" if host < e["peer"] else "none")
            assert e["child"] == "net"
            assert e["psk_file"] == f"{SECRETS}/{e['tunnel_id']}.psk"


def test_ends_of_a_tunnel_mirror_each_other() -> None:
    p = plan(inventory(2), topology=MESH)
    (a,), (b,) = p.hosts["site1"], p.hosts["site2"]
    assert (a["local_addrs"], a["local_ts"], a["local_id"]) == (
        b["remote_addrs"], b["remote_ts"], b["remote_id"],
    )  # fmt: skip
    assert a["negotiated"] == b["negotiated"] == p.tunnels[0]["negotiated"]


def test_hub_and_spoke_connects_spokes_to_every_hub_and_meshes_hubs() -> None:
    hv = inventory(5)
    groups = groups_of(hv, hubs=["site1", "site2"], branches=["site3", "site4", "site5"])
    p = plan(hv, groups, topology={"type": "hub_and_spoke", "hubs": "hubs", "spokes": "branches"})
    assert [t["id"] for t in p.tunnels] == [
        "site1--site2",
        "site1--site3", "site1--site4", "site1--site5",
        "site2--site3", "site2--site4", "site2--site5",
    ]  # fmt: skip
    assert [e["peer"] for e in p.hosts["site4"]] == ["site1", "site2"]
    assert [e["peer"] for e in p.hosts["site1"]] == ["site2", "site3", "site4", "site5"]


def test_hub_and_spoke_refuses_a_host_that_is_both() -> None:
    hv = inventory(3)
    groups = groups_of(hv, hubs=["site1"], spokes=["site1", "site2", "site3"])
    lines = problems(
        hv, groups, topology={"type": "hub_and_spoke", "hubs": "hubs", "spokes": "spokes"}
    )
    assert lines == ["host site1, field ikelab_topology.spokes: the host is both a hub and a spoke"]


def test_pairs_declared_twice_are_one_tunnel() -> None:
    hv = inventory(3)
    p = plan(
        hv,
        topology={
            "type": "pairs",
            "pairs": [["site2", "site1"], ["site1", "site3"], ["site1", "site2"]],
        },
    )
    assert [t["id"] for t in p.tunnels] == ["site1--site2", "site1--site3"]
    assert [e["peer"] for e in p.hosts["site2"]] == ["site1"]
    assert p.hosts["site2"][0]["start_action"] == "none"


def test_topology_from_the_hosts_variables() -> None:
    hv = inventory(3)
    for values in hv.values():
        values["ikelab_topology"] = MESH
    assert len(plan(hv).tunnels) == 3


def test_an_empty_topology_parameter_defers_to_the_hosts() -> None:
    hv = inventory(3)
    for values in hv.values():
        values["ikelab_topology"] = {"type": "pairs", "pairs": [["site1", "site3"]]}
    assert [t["id"] for t in plan(hv, topology={}).tunnels] == ["site1--site3"]
    assert [t["id"] for t in plan(hv, topology=MESH).tunnels] == [
        "site1--site2", "site1--site3", "site2--site3",
    ]  # fmt: skip


def test_hosts_disagreeing_on_the_topology() -> None:
    hv = inventory(3)
    hv["site1"]["ikelab_topology"] = MESH
    hv["site2"]["ikelab_topology"] = {"type": "pairs", "pairs": [["site1", "site2"]]}
    (line,) = problems(hv)
    assert line.startswith(
        "host site2, field ikelab_topology: the play's hosts disagree: site1 has"
    )


def test_no_topology_and_no_tunnels_is_an_empty_plan() -> None:
    p = plan(inventory(2))
    assert p.as_dict() == {"plan": {"site1": [], "site2": []}, "tunnels": []}


# --- ikelab_tunnels -----------------------------------------------------------------------------


def test_per_host_tunnels_merge_with_the_topology_and_each_other() -> None:
    hv = inventory(
        3,
        site3={"ikelab_tunnels": [{"peer": "site1", "esp_proposals": "compat", "name": "hq"}]},
        site1={"ikelab_tunnels": [
            {"peer": "site3", "esp_proposals": ["aes256-sha256", "aes128-sha256"],
             "options": {"dpd_delay": "30s"}},
            {"peer": "site3", "options": {"child": {"rekey_time": "20m"}}},
        ]},
    )  # fmt: skip
    p = plan(hv, topology={"type": "pairs", "pairs": [["site1", "site2"], ["site1", "site3"]]})
    assert [t["id"] for t in p.tunnels] == ["site1--site2", "site1--site3"]
    on1 = {e["peer"]: e for e in p.hosts["site1"]}
    (on3,) = p.hosts["site3"]
    # the tunnel's ESP proposals on both ends, the hosts' (default modern) for IKE
    assert (
        on1["site3"]["esp_proposals"] == on3["esp_proposals"] == ["aes256-sha256", "aes128-sha256"]
    )
    assert on1["site2"]["esp_proposals"][0] == "aes256gcm16-x25519"
    assert on3["name"] == "hq" and on1["site3"]["name"] == "site3"
    for e in (on1["site3"], on3):
        assert (e["dpd_delay"], e["child_rekey_time"]) == ("30s", "20m")
        assert e["negotiated"]["esp"]["encryption"] == "AES_CBC_256"
        assert e["negotiated"]["esp"]["integrity"] == "HMAC_SHA2_256_128"
        assert e["negotiated"]["esp_rekey_dh"] is None
    assert p.tunnels[1]["connections"] == {"site1": "site3", "site3": "hq"}


def test_per_host_tunnel_without_topology() -> None:
    hv = inventory(3, site2={"ikelab_tunnels": [{"peer": "site3"}]})
    p = plan(hv)
    assert [t["id"] for t in p.tunnels] == ["site2--site3"]
    assert p.hosts["site1"] == []
    assert p.hosts["site3"][0]["start_action"] == "none"


def test_conflicting_settings_for_one_tunnel() -> None:
    hv = inventory(
        2,
        site1={"ikelab_tunnels": [{"peer": "site2", "ike_proposals": "modern", "options": {"dpd_delay": "10s"}}]},
        site2={"ikelab_tunnels": [{"peer": "site1", "ike_proposals": "compat", "options": {"dpd_delay": "20s"}}]},
    )  # fmt: skip
    lines = problems(hv)
    assert len(lines) == 2
    line = only(lines, "ike_proposals")
    assert line.startswith(
        "host site2, tunnel site1--site2, field ikelab_tunnels[0].ike_proposals: conflicting settings"
    )
    assert "in ikelab_tunnels[0].ike_proposals of site1" in line
    line = only(lines, "dpd_delay")
    assert line.startswith(
        "host site2, tunnel site1--site2, field ikelab_tunnels[0].options.dpd_delay: conflicting settings: '20s' here, '10s'"
    )


def test_equal_settings_on_both_sides_are_no_conflict() -> None:
    entry = {"ike_proposals": ["aes256gcm16-prfsha256-x25519"], "options": {"mobike": False}}
    hv = inventory(
        2,
        site1={"ikelab_tunnels": [{"peer": "site2", **entry}]},
        site2={"ikelab_tunnels": [{"peer": "site1", **entry}, {"peer": "site1"}]},
    )
    p = plan(hv, topology=MESH)
    assert len(p.tunnels) == 1
    assert p.hosts["site2"][0]["options"] == {"mobike": False}


def test_options_precedence_defaults_host_tunnel() -> None:
    hv = inventory(
        2,
        site1={
            "ikelab_tunnel_options": {"mobike": False, "dpd_delay": "5s"},
            "ikelab_tunnels": [{"peer": "site2", "options": {"dpd_delay": "9s"}}],
        },
    )
    p = plan(
        hv,
        defaults={
            "options": {"dpd_delay": "1s", "rekey_time": "2h", "child": {"replay_window": 64}}
        },
    )
    (e1,), (e2,) = p.hosts["site1"], p.hosts["site2"]
    assert (e1["dpd_delay"], e1["rekey_time"], e1["options"]) == ("9s", "2h", {"mobike": False})
    assert (e2["dpd_delay"], e2["rekey_time"], e2["options"]) == ("9s", "2h", {})
    assert e1["child_options"] == e2["child_options"] == {"replay_window": 64}


def test_module_options_split_into_the_tunnel_modules_parameters() -> None:
    assert module_options({"dpd_delay": "1s", "encap": True, "child": {"rekey_time": "1h", "replay_window": 64}}) == {
        "dpd_delay": "1s",
        "rekey_time": None,
        "child_rekey_time": "1h",
        "options": {"encap": True},
        "child_options": {"replay_window": 64},
    }  # fmt: skip
    # the keys with parameters of their own become those parameters, only when they are set
    assert module_options({"keyingtries": 0, "dpd_timeout": "90s",
                           "child": {"inactivity": "5m", "life_time": "66m", "rand_time": 60}}) == {
        "dpd_delay": None,
        "rekey_time": None,
        "child_rekey_time": None,
        "keyingtries": 0,
        "dpd_timeout": "90s",
        "inactivity": "5m",
        "child_life_time": "66m",
        "child_rand_time": 60,
        "options": {},
        "child_options": {},
    }  # fmt: skip


def test_entries_render_a_configuration_the_agent_accepts() -> None:
    """Each end, written as the tunnel module writes it, passes the agent's own schema."""
    hv = inventory(
        2,
        site1={
            "ikelab_tunnels": [
                {"peer": "site2", "options": {"dpd_delay": "30s", "child": {"rekey_time": "20m"}}}
            ]
        },
    )
    p = plan(hv)
    for entries in p.hosts.values():
        (e,) = entries
        child = {"local_ts": e["local_ts"], "remote_ts": e["remote_ts"],
                 "esp_proposals": e["esp_proposals"], "start_action": e["start_action"],
                 "rekey_time": e["child_rekey_time"], **e["child_options"]}  # fmt: skip
        conn = {"local_addrs": e["local_addrs"], "remote_addrs": e["remote_addrs"],
                "proposals": e["ike_proposals"], "dpd_delay": e["dpd_delay"],
                "local": {"auth": "psk", "id": e["local_id"]},
                "remote": {"auth": "psk", "id": e["remote_id"]},
                "children": {e["child"]: child}, **e["options"]}  # fmt: skip
        cfg = parse_config({"connections": {e["name"]: conn}})
        assert cfg.connections[e["name"]].dpd_delay == 30.0


# --- negotiation --------------------------------------------------------------------------------


def test_negotiated_algorithms_in_both_roles() -> None:
    # site1 prefers AES-128-GCM, site2 AES-256-GCM: the responder's order decides
    hv = inventory(
        2,
        site1={"ikelab_ike_proposals": ["aes128gcm16-aes256gcm16-prfsha256-x25519"],
               "ikelab_esp_proposals": ["aes128gcm16-aes256gcm16"]},
        site2={"ikelab_ike_proposals": ["aes256gcm16-aes128gcm16-prfsha256-x25519"],
               "ikelab_esp_proposals": ["aes256gcm16-aes128gcm16"]},
    )  # fmt: skip
    n = plan(hv, topology=MESH).tunnels[0]["negotiated"]
    assert n["ike"] == {
        "proposal": "aes256gcm16-prfsha256-x25519",
        "encryption": "AES_GCM_16_256",
        "integrity": None,
        "prf": "PRF_HMAC_SHA2_256",
        "dh": "CURVE_25519",
    }
    assert n["esp"]["encryption"] == "AES_GCM_16_256" and n["esp_rekey_dh"] is None
    assert n["reverse"]["ike"]["encryption"] == "AES_GCM_16_128"
    assert n["reverse"]["esp"]["encryption"] == "AES_GCM_16_128"


def test_no_common_ike_proposal() -> None:
    hv = inventory(2, site1={"ikelab_ike_proposals": "compat"})
    (line,) = problems(hv, topology=MESH)
    assert line.startswith(
        "host site1, tunnel site1--site2, field ikelab_ike_proposals: no common IKE proposal "
        "between site1 and site2 in either role: site1 has aes256-sha256-modp2048"
    )


def test_no_common_esp_proposal_names_both_variables() -> None:
    hv = inventory(2, site1={"ikelab_esp_proposals": ["aes128-sha256"]},
                   site2={"ikelab_esp_proposals": ["aes256gcm16"]})  # fmt: skip
    lines = problems(hv, topology=MESH)
    assert [line.split(": no common")[0] for line in lines] == [
        "host site1, tunnel site1--site2, field ikelab_esp_proposals",
        "host site2, tunnel site1--site2, field ikelab_esp_proposals",
    ]
    assert all(
        "no common ESP proposal between site1 and site2 in either role" in line for line in lines
    )


def test_esp_pfs_mismatch_fails_the_rekey() -> None:
    hv = inventory(2, site1={"ikelab_esp_proposals": ["aes256gcm16-x25519"]},
                   site2={"ikelab_esp_proposals": ["aes256gcm16-ecp256"]})  # fmt: skip
    lines = problems(hv, topology=MESH)
    assert len(lines) == 2
    assert all("no common ESP proposal with PFS" in line and "x25519" in line for line in lines)


def test_weak_proposals_need_allow_weak() -> None:
    hv = inventory(2)
    weak = {"ike_proposals": ["aes256-sha1-modp2048"], "esp_proposals": ["aes256-sha1"]}
    lines = problems(hv, topology=MESH, defaults=weak)
    assert [line.split(":")[0] for line in lines] == [
        "field defaults.esp_proposals",
        "field defaults.ike_proposals",
    ]
    p = plan(hv, topology=MESH, defaults={**weak, "allow_weak": True})
    assert p.tunnels[0]["negotiated"]["ike"]["integrity"] == "HMAC_SHA1_96"


# --- the errors, each naming host, tunnel and field ---------------------------------------------

ERRORS: list[tuple[str, dict[str, Any], dict[str, Any], str]] = [
    (
        "peer not in the inventory",
        {"site1": {"ikelab_tunnels": [{"peer": "site9"}]}}, {},
        "host site1, tunnel site1--site9, field ikelab_tunnels[0].peer: host site9 is not in the inventory",
    ),
    (
        "pair with a host not in the inventory",
        {}, {"topology": {"type": "pairs", "pairs": [["site1", "nosuch"]]}},
        "host site1, tunnel nosuch--site1, field ikelab_topology.pairs[0]: host nosuch is not in the inventory",
    ),
    (
        "peer not in the play",
        {"site1": {"ikelab_tunnels": [{"peer": "site3"}]}}, {"hosts": ["site1", "site2"]},
        "host site1, tunnel site1--site3, field ikelab_tunnels[0].peer: host site3 is not in the play (only one end of the tunnel would be configured)",
    ),
    (
        "tunnel to itself",
        {"site2": {"ikelab_tunnels": [{"peer": "site2"}]}}, {},
        "host site2, tunnel site2--site2, field ikelab_tunnels[0].peer: a tunnel to itself",
    ),
    (
        "missing underlay",
        {"site2": {"ikelab_underlay_address": None}}, {"topology": MESH},
        "host site2, tunnels site1--site2 site2--site3, field ikelab_underlay_address: missing: the address IKE runs over",
    ),
    (
        "invalid underlay",
        {"site2": {"ikelab_underlay_address": "192.0.2.300"}}, {"topology": MESH},
        "host site2, tunnels site1--site2 site2--site3, field ikelab_underlay_address: invalid: '192.0.2.300' is not an IP address",
    ),
    (
        "underlay families differ",
        {"site2": {"ikelab_underlay_address": "2001:db8::2"}}, {"topology": {"type": "pairs", "pairs": [["site1", "site2"]]}},
        "host site1, tunnel site1--site2, field ikelab_underlay_address: address families differ: 192.0.2.11 of site1, 2001:db8::2 of site2",
    ),
    (
        "missing subnets",
        {"site3": {"ikelab_protected_subnets": []}}, {"topology": MESH},
        "host site3, tunnels site1--site3 site2--site3, field ikelab_protected_subnets: missing: the subnets behind this gateway (CIDR list)",
    ),
    (
        "subnet with host bits",
        {"site3": {"ikelab_protected_subnets": ["10.3.0.1/24"]}}, {"topology": MESH},
        "host site3, tunnels site1--site3 site2--site3, field ikelab_protected_subnets[0]: invalid: 10.3.0.1/24 has host bits set",
    ),
    (
        "subnets of one host overlap",
        {"site3": {"ikelab_protected_subnets": ["10.3.0.0/24", "10.3.0.128/25"]}}, {"topology": MESH},
        "host site3, tunnels site1--site3 site2--site3, field ikelab_protected_subnets: overlapping: 10.3.0.0/24 overlaps 10.3.0.128/25 of the same host",
    ),
    (
        "subnets of the two ends overlap",
        {"site2": {"ikelab_protected_subnets": ["10.0.0.0/8"]}}, {"topology": {"type": "pairs", "pairs": [["site1", "site2"]]}},
        "host site1, tunnel site1--site2, field ikelab_protected_subnets: overlaps: 10.1.0.0/24 of site1 overlaps 10.0.0.0/8 of peer site2",
    ),
    (
        "two peers of a hub share a destination",
        {"site3": {"ikelab_protected_subnets": ["10.2.0.0/16"]}},
        {"topology": {"type": "pairs", "pairs": [["site1", "site2"], ["site1", "site3"]]}},
        "host site1, tunnels site1--site2 site1--site3, field ikelab_protected_subnets: overlaps: 10.2.0.0/24 of site2 overlaps 10.2.0.0/16 of site3; site1 cannot route one destination through two tunnels",
    ),
    (
        "invalid IKE id",
        {"site1": {"ikelab_ike_id": "%any"}}, {"topology": {"type": "pairs", "pairs": [["site1", "site2"]]}},
        "host site1, tunnel site1--site2, field ikelab_ike_id: invalid: '%any' matches any peer, give one identity",
    ),
    (
        "invalid proposal",
        {"site1": {"ikelab_ike_proposals": ["aes256-md5-modp2048"]}}, {"topology": {"type": "pairs", "pairs": [["site1", "site2"]]}},
        "host site1, tunnel site1--site2, field ikelab_ike_proposals: invalid: ike proposal 'aes256-md5-modp2048': md5: weak algorithm: MD5 is broken; set allow_weak to accept it",
    ),
    (
        "unknown key in an ikelab_tunnels entry",
        {"site1": {"ikelab_tunnels": [{"peer": "site2", "colour": "red"}]}}, {},
        "host site1, tunnel site1--site2, field ikelab_tunnels[0].colour: unknown key (expected one of: peer, name, ike_proposals, esp_proposals, version, aggressive, allow_aggressive_psk, start_action, dpd_delay, rekey_time, child_rekey_time, dpd_timeout, over_time, rand_time, reauth_time, keyingtries, inactivity_close_ike, inactivity, dpd_action, close_action, child_life_time, child_rand_time, rekey_bytes, life_bytes, rekey_packets, life_packets, options)",
    ),
    (
        "ikelab_tunnels entry without a peer",
        {"site1": {"ikelab_tunnels": [{"name": "x"}]}}, {},
        "host site1, field ikelab_tunnels[0].peer: required: the inventory name of the other end",
    ),
    (
        "unknown topology key",
        {}, {"topology": {"type": "full_mesh", "group": "sites", "hubs": "x"}},
        "field ikelab_topology.hubs: unknown key for type full_mesh (expected one of: type, group)",
    ),
    (
        "unknown topology type",
        {}, {"topology": {"type": "star", "group": "sites"}},
        "field ikelab_topology.type: 'star' is not a topology (expected one of: full_mesh, hub_and_spoke, pairs)",
    ),
    (
        "topology group not in the inventory",
        {}, {"topology": {"type": "full_mesh", "group": "nosuch"}},
        "field ikelab_topology.group: group 'nosuch' is not in the inventory",
    ),
    (
        "unknown option key",
        {"site1": {"ikelab_tunnels": [{"peer": "site2", "options": {"dpd_dealy": "30s"}}]}}, {},
        "host site1, tunnel site1--site2, field ikelab_tunnels[0].options.dpd_dealy: unknown key (expected one of: version, local_port, remote_port, dpd_delay, dpd_timeout, rekey_time, over_time, rand_time, reauth_time, encap, mobike, fragmentation, aggressive, allow_aggressive_psk, keyingtries, inactivity_close_ike, unique, child)",
    ),
    (
        "unknown child option key",
        {"site1": {"ikelab_tunnels": [{"peer": "site2", "options": {"child": {"rekey_tme": "1h"}}}]}}, {},
        "host site1, tunnel site1--site2, field ikelab_tunnels[0].options.child.rekey_tme: unknown key (expected one of: mode, rekey_time, life_time, rand_time, rekey_bytes, life_bytes, rekey_packets, life_packets, replay_window, inactivity, dpd_action, close_action)",
    ),
    (
        "invalid option value (host-wide options)",
        {"site1": {"ikelab_tunnel_options": {"mobike": "maybe"}}}, {"topology": MESH},
        "host site1, tunnels site1--site2 site1--site3, field ikelab_tunnel_options.mobike: expected yes/no (a boolean), got 'maybe'",
    ),
    (
        "option set by the planner",
        {"site2": {"ikelab_tunnels": [{"peer": "site3", "options": {"remote_addrs": ["192.0.2.99"]}}]}}, {},
        "host site2, tunnel site2--site3, field ikelab_tunnels[0].options.remote_addrs: not allowed: set from ikelab_underlay_address",
    ),
    (
        "invalid connection name",
        {"site1": {"ikelab_tunnels": [{"peer": "site2", "name": "to site2"}]}}, {},
        "host site1, tunnel site1--site2, field ikelab_tunnels[0].name: invalid connection name 'to site2' (letters, digits, '_', '.', '-'; give the ikelab_tunnels entry a name)",
    ),
    (
        "duplicate connection name",
        {"site1": {"ikelab_tunnels": [{"peer": "site2", "name": "peer"}, {"peer": "site3", "name": "peer"}]}}, {},
        "host site1, tunnels site1--site2 site1--site3, field ikelab_tunnels[1].name: duplicate connection name 'peer' on site1",
    ),
    (
        "unknown defaults key",
        {}, {"defaults": {"ike_proposal": "modern"}},
        "field defaults.ike_proposal: unknown key (expected one of: ike_proposals, esp_proposals, options, allow_weak, version, aggressive, allow_aggressive_psk, start_action, dpd_delay, rekey_time, child_rekey_time, dpd_timeout, over_time, rand_time, reauth_time, keyingtries, inactivity_close_ike, inactivity, dpd_action, close_action, child_life_time, child_rand_time, rekey_bytes, life_bytes, rekey_packets, life_packets)",
    ),
]  # fmt: skip


@pytest.mark.parametrize(
    ("per_host", "kwargs", "expected"), [e[1:] for e in ERRORS], ids=[e[0] for e in ERRORS]
)
def test_each_error_names_host_tunnel_and_field(
    per_host: dict[str, Any], kwargs: dict[str, Any], expected: str
) -> None:
    hv = inventory(3)
    for host, values in per_host.items():
        hv[host].update(values)
    assert problems(hv, **kwargs) == [expected]


def test_duplicate_underlay_addresses() -> None:
    hv = inventory(3, site3={"ikelab_underlay_address": "192.0.2.11"})
    assert problems(hv, topology=MESH) == [
        "host site1, tunnels site1--site2 site1--site3, field ikelab_underlay_address: duplicate: 192.0.2.11 is also the underlay address of site3",
        "host site3, tunnels site1--site3 site2--site3, field ikelab_underlay_address: duplicate: 192.0.2.11 is also the underlay address of site1",
    ]  # fmt: skip


def test_duplicate_ike_ids_compare_identities_not_spellings() -> None:
    # "@site1" is the FQDN site1, the same identity as the default id of host site1
    hv = inventory(3, site2={"ikelab_ike_id": "@site1"})
    lines = problems(hv, topology=MESH)
    assert lines == [
        "host site1, tunnels site1--site2 site1--site3, field ikelab_ike_id: duplicate: site1 is also the IKE id of site2",
        "host site2, tunnels site1--site2 site2--site3, field ikelab_ike_id: duplicate: @site1 is also the IKE id of site1",
    ]  # fmt: skip


def test_topology_tunnel_to_a_host_outside_the_play() -> None:
    hv = inventory(4)
    lines = problems(hv, topology=MESH, hosts=["site1", "site2", "site3"])
    assert lines == [
        f"host {h}, tunnel {h}--site4, field ikelab_topology.group: host site4 is not in the play "
        "(only one end of the tunnel would be configured)"
        for h in ("site1", "site2", "site3")
    ]


def test_topology_tunnels_with_no_end_in_the_play_are_left_out() -> None:
    hv = inventory(4)
    groups = groups_of(hv, east=["site1", "site2"], west=["site3", "site4"])
    p = plan(hv, groups, topology={"type": "full_mesh", "group": "east"}, hosts=["site1", "site2"])
    assert [t["id"] for t in p.tunnels] == ["site1--site2"]
    assert sorted(p.hosts) == ["site1", "site2"]


def test_hosts_without_tunnels_are_not_validated() -> None:
    hv = inventory(3)
    hv["site3"] = {}  # not a gateway: no underlay, no subnets
    p = plan(hv, topology={"type": "pairs", "pairs": [["site1", "site2"]]})
    assert p.hosts["site3"] == []


def test_missing_psk_is_an_error_unless_keys_are_generated() -> None:
    hv = inventory(3)
    present = {f"{SECRETS}/site1--site2.psk"}
    asked: list[str] = []

    def exists(path: str) -> bool:
        asked.append(path)
        return path in present

    lines = problems(hv, topology=MESH, generate_keys=False, exists=exists)
    assert lines == [
        f"host {a}, tunnel {a}--{b}, field psk_file: missing key: {SECRETS}/{a}--{b}.psk does not "
        "exist (create it with ikelab.ipsec.keygen, or plan with generate_keys)"
        for a, b in (("site1", "site3"), ("site2", "site3"))
    ]
    p = plan(hv, topology=MESH, generate_keys=True, exists=exists)
    assert {t["id"]: t["psk_present"] for t in p.tunnels} == {
        "site1--site2": True, "site1--site3": False, "site2--site3": False,
    }  # fmt: skip
    assert sorted(set(asked)) == sorted(f"{SECRETS}/{t['id']}.psk" for t in p.tunnels)


def test_psk_file_is_never_read(tmp_path: Any) -> None:
    (tmp_path / "site1--site2.psk").write_text("0sSECRETSECRETSECRET\n")
    p = make_plan(inventory(2), groups_of(inventory(2)), topology=MESH, secrets_dir=str(tmp_path))
    assert p.tunnels[0]["psk_present"] is True
    assert "SECRET" not in json.dumps(p.as_dict())


def test_secrets_dir_is_required() -> None:
    assert problems(inventory(2), topology=MESH, secrets_dir="") == [
        "field secrets_dir: required: the controller directory holding the PSK files"
    ]


def test_every_problem_is_reported_at_once() -> None:
    hv = inventory(4)
    hv["site1"]["ikelab_underlay_address"] = "not-an-address"
    hv["site2"]["ikelab_protected_subnets"] = ["10.3.0.0/16"]
    hv["site3"]["ikelab_tunnels"] = [{"peer": "site9"}]
    hv["site4"]["ikelab_tunnel_options"] = {"encap": "sometimes"}
    lines = problems(hv, topology=MESH)
    fields = {line.split(": ")[0] for line in lines}
    assert {
        "host site1, tunnels site1--site2 site1--site3 site1--site4, field ikelab_underlay_address",
        "host site2, tunnel site2--site3, field ikelab_protected_subnets",
        "host site3, tunnel site3--site9, field ikelab_tunnels[0].peer",
        "host site4, tunnels site1--site4 site2--site4 site3--site4, field ikelab_tunnel_options.encap",
    } <= fields
    # site1 and site4 both see site2's 10.3.0.0/16 and site3's 10.3.0.0/24 as destinations
    assert "host site1, tunnels site1--site2 site1--site3, field ikelab_protected_subnets" in fields
    assert "host site4, tunnels site2--site4 site3--site4, field ikelab_protected_subnets" in fields


def test_problem_format() -> None:
    assert str(Problem("a", ("a--b",), "f", "r")) == "host a, tunnel a--b, field f: r"
    assert str(Problem("", (), "f", "r")) == "field f: r"
    many = Problem("h", tuple(f"h--p{i}" for i in range(6)), "f", "r")
    assert str(many) == "host h, tunnels h--p0 h--p1 h--p2 h--p3 (and 2 more), field f: r"


# --- determinism --------------------------------------------------------------------------------


def _shuffled(value: Any, rng: random.Random) -> Any:
    if isinstance(value, dict):
        items = list(value.items())
        rng.shuffle(items)
        return {k: _shuffled(v, rng) for k, v in items}
    return copy.deepcopy(value)


def test_output_is_deterministic_whatever_the_input_order() -> None:
    hv = inventory(
        6,
        site5={"ikelab_tunnels": [{"peer": "site1", "options": {"dpd_delay": "30s"}}]},
        site2={
            "ikelab_ike_proposals": ["aes256-sha256-modp2048", "aes256gcm16-prfsha384-x25519"],
            "ikelab_esp_proposals": ["aes256-sha256", "aes256gcm16-x25519"],
        },
    )
    groups = groups_of(hv, hubs=["site1", "site2"], spokes=["site6", "site4", "site3", "site5"])
    topo = {"type": "hub_and_spoke", "hubs": "hubs", "spokes": "spokes"}
    first = json.dumps(plan(hv, groups, topology=topo).as_dict())
    rng = random.Random(20240601)
    for _ in range(5):
        g = {k: rng.sample(v, len(v)) for k, v in groups.items()}
        again = plan(_shuffled(hv, rng), g, topology=topo, hosts=rng.sample(sorted(hv), len(hv)))
        assert json.dumps(again.as_dict()) == first


def test_errors_are_deterministic() -> None:
    hv = inventory(4, site1={"ikelab_protected_subnets": ["10.2.0.0/16"]},
                   site3={"ikelab_underlay_address": "192.0.2.14"})  # fmt: skip
    first = problems(hv, topology=MESH)
    rng = random.Random(7)
    for _ in range(5):
        assert problems(_shuffled(hv, rng), topology=MESH) == first


def test_problems_found_while_gathering_are_reported_with_the_rest() -> None:
    hv = inventory(3)
    del hv["site1"]["ikelab_underlay_address"]  # the action could not evaluate it
    known = Problem("site1", (), "ikelab_underlay_address", "cannot be evaluated: undefined")
    hv["site3"]["ikelab_protected_subnets"] = "10.3.0.0/33"
    assert problems(hv, topology=MESH, problems=[known]) == [
        "host site1, field ikelab_underlay_address: cannot be evaluated: undefined",
        "host site3, tunnels site1--site3 site2--site3, field ikelab_protected_subnets[0]: "
        "invalid: '10.3.0.0/33' does not appear to be an IPv4 or IPv6 network",
    ]


def test_route_overlap_sweep_finds_exactly_the_overlapping_pairs() -> None:
    """The sweep over a host's destinations agrees with comparing every pair."""
    import ipaddress

    from ansible_collections.ikelab.ipsec.plugins.plugin_utils.plan_checks import overlapping

    rng = random.Random(1234)
    for _ in range(200):
        items = []
        for i in range(rng.randint(0, 12)):
            if rng.random() < 0.8:
                net = ipaddress.ip_network(
                    (
                        rng.choice([0x0A000000, 0x0A010000]) + (rng.randrange(256) << 8),
                        rng.randint(14, 26),
                    ),
                    strict=False,
                )
            else:
                net = ipaddress.ip_network((0x20010DB8 << 96, rng.randint(32, 48)), strict=False)
            items.append((net, f"p{i}"))
        found = {frozenset((a, b)) for a, b in overlapping(items)}
        expected = {
            frozenset((a, b))
            for j, a in enumerate(items)
            for b in items[j + 1 :]
            if a[0].version == b[0].version and a[0].overlaps(b[0])
        }
        assert found == expected
