"""The planner's on-demand tunnels and lifetime settings: start_action trap for the initiating
end, settings by the tunnel module's parameter names in the defaults (the role's variables)
and in ikelab_tunnels entries, their precedence, problems naming the setting as written, the
entries tunnel_set brings up, and the verification row of an on-demand tunnel."""

from __future__ import annotations

from typing import Any

import pytest
from test_plan import MESH, inventory, plan, problems

from ansible_collections.ikelab.ipsec.plugins.filter.tunnels import tunnel_set_entries
from ansible_collections.ikelab.ipsec.plugins.module_utils.tunnel_config import TunnelSpec, render
from ansible_collections.ikelab.ipsec.plugins.plugin_utils.verification import verify
from ikeagent.config.model import StartAction
from ikeagent.config.schema import parse_config

ENTRY_ONLY = ("psk_file", "peer", "tunnel_id", "negotiated", "on_demand")


def ends(p: Any, tid: str = "site1--site2") -> tuple[dict[str, Any], dict[str, Any]]:
    a, b = tid.split("--")
    (ea,) = [e for e in p.hosts[a] if e["tunnel_id"] == tid]
    (eb,) = [e for e in p.hosts[b] if e["tunnel_id"] == tid]
    return ea, eb


def test_start_is_the_default_and_nothing_is_on_demand() -> None:
    p = plan(inventory(2), topology=MESH)
    a, b = ends(p)
    assert (a["start_action"], b["start_action"]) == ("start", "none")
    assert not a["on_demand"] and not b["on_demand"]
    assert p.tunnels[0]["start_action"] == "start"


def test_trap_in_the_defaults_makes_every_initiator_trap() -> None:
    p = plan(inventory(3), topology=MESH, defaults={"start_action": "trap"})
    for t in p.tunnels:
        a, b = ends(p, t["id"])
        assert (a["start_action"], b["start_action"]) == ("trap", "none")
        assert a["on_demand"] and b["on_demand"] and t["start_action"] == "trap"


def test_a_tunnels_own_start_action_wins_over_the_defaults() -> None:
    hv = inventory(3, site3={"ikelab_tunnels": [{"peer": "site1", "start_action": "start"}]})
    p = plan(hv, topology=MESH, defaults={"start_action": "trap"})
    assert ends(p, "site1--site3")[0]["start_action"] == "start"
    assert ends(p, "site1--site2")[0]["start_action"] == "trap"


def test_named_settings_reach_the_tunnel_modules_parameters() -> None:
    """Role variables (defaults) < host options < a tunnel's entry, key by key."""
    hv = inventory(
        2,
        site1={
            "ikelab_tunnel_options": {"child": {"inactivity": "10m"}, "keyingtries": 5},
            "ikelab_tunnels": [{"peer": "site2", "inactivity": "2m", "child_life_time": "66m"}],
        },
    )
    defaults = {"inactivity": "30m", "dpd_delay": "30s", "dpd_action": "trap", "keyingtries": 0}
    a, b = ends(plan(hv, topology=MESH, defaults=defaults))
    assert a["inactivity"] == b["inactivity"] == "2m"  # the tunnel's entry, on both ends
    assert a["child_life_time"] == b["child_life_time"] == "66m"
    assert a["keyingtries"] == 5 and b["keyingtries"] == 0  # site1's host options
    assert a["dpd_delay"] == b["dpd_delay"] == "30s" and a["dpd_action"] == "trap"
    assert a["options"] == b["options"] == {} and a["child_options"] == b["child_options"] == {}
    assert "rekey_bytes" not in a  # only what is set


def test_every_end_renders_what_the_agent_loads() -> None:
    hv = inventory(2)
    defaults = {"start_action": "trap", "inactivity": "5m", "inactivity_close_ike": True,
                "child_rekey_time": "20m", "child_life_time": "25m", "rekey_bytes": "1g",
                "close_action": "trap", "dpd_delay": 30, "dpd_action": "trap"}  # fmt: skip
    p = plan(hv, topology=MESH, defaults=defaults)
    for entry, action in zip(ends(p), (StartAction.TRAP, StartAction.NONE), strict=True):
        params = {k: v for k, v in entry.items() if k not in ENTRY_ONLY and v is not None}
        spec = TunnelSpec.from_params(params)
        import yaml

        cfg = parse_config(yaml.safe_load(render(spec, b"psk")))
        child = cfg.connections[entry["name"]].children["net"]
        assert child.start_action is action
        assert (child.inactivity, child.rekey_time, child.life_time) == (300.0, 1200.0, 1500.0)
        assert cfg.connections[entry["name"]].inactivity_close_ike is True


@pytest.mark.parametrize(
    ("per_host", "defaults", "expected"),
    [
        (
            {},
            {"start_action": "sometimes"},
            "field defaults.start_action: invalid: 'sometimes' (expected one of: start, trap)",
        ),
        (
            {"site1": {"ikelab_tunnels": [{"peer": "site2", "start_action": "none"}]}},
            {},
            "host site1, tunnel site1--site2, field ikelab_tunnels[0].start_action: invalid: "
            "'none' (expected one of: start, trap)",
        ),
        (
            {
                "site1": {"ikelab_tunnels": [{"peer": "site2", "start_action": "trap"}]},
                "site2": {"ikelab_tunnels": [{"peer": "site1", "start_action": "start"}]},
            },
            {},
            "host site2, tunnel site1--site2, field ikelab_tunnels[0].start_action: conflicting "
            "settings: 'start' here, 'trap' in ikelab_tunnels[0].start_action of site1",
        ),
        (
            {},
            {"inactivity": 0},
            "host site1, tunnel site1--site2, field defaults.inactivity: invalid: must be a "
            "positive duration (leave it unset for no limit)",
        ),
        (
            {"site1": {"ikelab_tunnels": [{"peer": "site2", "dpd_delay": 30, "dpd_timeout": 90}]}},
            {},
            "host site1, tunnel site1--site2, field ikelab_tunnels[0].dpd_timeout: invalid: only "
            "applies to IKEv1 (version: 1); an IKEv2 peer is declared dead when a liveness check "
            "runs out of retransmissions",
        ),
        (
            {"site1": {"ikelab_tunnels": [{"peer": "site2", "child_rand_time": "2h"}]}},
            {},
            "host site1, tunnel site1--site2, field ikelab_tunnels[0].child_rand_time: invalid: "
            "must be shorter than child_rekey_time (3600s, the agent's default): it is a random "
            "time subtracted from it",
        ),
        (
            {"site1": {"ikelab_tunnel_options": {"child": {"life_time": "30m"}}}},
            {},
            "host site1, tunnel site1--site2, field ikelab_tunnel_options.child.life_time: "
            "must be greater than rekey_time",
        ),
        (
            {
                "site1": {"ikelab_tunnels": [{"peer": "site2", "inactivity": "5m"}]},
                "site2": {"ikelab_tunnels": [{"peer": "site1", "inactivity": "6m"}]},
            },
            {},
            "host site2, tunnel site1--site2, field ikelab_tunnels[0].inactivity: conflicting "
            "settings: '6m' here, '5m' in ikelab_tunnels[0].inactivity of site1",
        ),
        (
            {},
            {"dpd_action": "hold"},
            "host site1, tunnel site1--site2, field defaults.dpd_action: 'hold' is not one of "
            "clear, trap, restart",
        ),
        (
            {"site1": {"ikelab_tunnel_options": {"child": {"start_action": "trap"}}}},
            {},
            "host site1, tunnel site1--site2, field ikelab_tunnel_options.child.start_action: not "
            "allowed: set from the planner (the end whose name sorts first starts; start_action: "
            "trap in ikelab_tunnels or the defaults makes it trap)",
        ),
    ],
)
def test_problems_name_the_setting_as_written(
    per_host: dict[str, Any], defaults: dict[str, Any], expected: str
) -> None:
    hv = inventory(2)
    for host, values in per_host.items():
        hv[host].update(values)
    lines = problems(hv, topology=MESH, defaults=defaults)
    assert any(line.startswith(expected) for line in lines), lines


# --- the role's filters and verification ------------------------------------------------------------


def test_up_leaves_out_the_responder_of_an_on_demand_tunnel() -> None:
    p = plan(inventory(3), topology=MESH, defaults={"start_action": "trap"})
    site2 = p.hosts["site2"]  # responds to site1 (trap), initiates to site3 (trap)
    all_entries = tunnel_set_entries(site2, with_keys=False)
    up = tunnel_set_entries(site2, with_keys=False, up=True)
    assert [e["name"] for e in all_entries] == ["site1", "site3"]
    assert [(e["name"], e["start_action"]) for e in up] == [("site3", "trap")]
    assert all("on_demand" not in e for e in all_entries)  # a planner field, not a parameter
    started = plan(inventory(2), topology=MESH)
    assert len(tunnel_set_entries(started.hosts["site2"], with_keys=False, up=True)) == 1


def test_the_verification_row_shows_the_time_to_first_packet() -> None:
    sa = {"name": "peer", "state": "ESTABLISHED", "children": [{"spi_in": "c1", "spi_out": "c2"}]}
    base = {"arrived": True, "encrypted": True, "delta": {"packets_out": 3, "packets_in": 3}}
    first = {"item": {"tunnel_id": "site1--site2", "name": "peer"}, **base,
             "on_demand": True, "time_to_first_packet_ms": 84.6}  # fmt: skip
    second = {"item": {"tunnel_id": "site1--site2", "name": "peer"}, **base, "on_demand": False}
    out = verify(
        [{"id": "site1--site2"}],
        {"site1": ([first], {"sas": [sa]}), "site2": ([second], {"sas": [sa]})},
    )
    row = out["rows"][0]
    assert row["a->b"] == "ok 3 out/3 in, on demand 85 ms" and row["b->a"] == "ok 3 out/3 in"
    assert row["result"] == "verified" and out["failures"] == []
