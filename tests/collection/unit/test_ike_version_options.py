"""``version``, ``aggressive`` and ``allow_aggressive_psk`` as first-class options: the tunnel
module's fragment, tunnel_set entries, the planner (tunnel entries, defaults, host options) and
the role's entries. Their combination is the agent's schema's to judge (one authority)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from test_plan import MESH, SECRETS, inventory, only, plan, problems
from test_tunnel_config import PSK, params
from test_tunnel_set import SetAgent, entry, files, run

from ansible_collections.ikelab.ipsec.plugins.filter.tunnels import tunnel_set_entries
from ansible_collections.ikelab.ipsec.plugins.module_utils import tunnel_config as tc
from ansible_collections.ikelab.ipsec.plugins.module_utils.tunnel_backend import TunnelError
from ansible_collections.ikelab.ipsec.plugins.plugin_utils.plan import module_options
from ikeagent.config.schema import ConfigError, parse_config

V1 = {"version": 1, "aggressive": True, "allow_aggressive_psk": True}


def fragment(**over: Any) -> str:
    return tc.render(tc.TunnelSpec.from_params(params(**over)), PSK)


def connection(text: str) -> dict[str, Any]:
    return yaml.safe_load(text)["connections"]["site-b"]


# --- the tunnel module's fragment -----------------------------------------------------------------


def test_the_fragment_carries_the_three_settings_and_the_agent_reads_them() -> None:
    text = fragment(**V1, ike_proposals=["aes256-sha256-modp2048"], esp_proposals=["aes256-sha256"])
    conn = connection(text)
    assert (conn["version"], conn["aggressive"], conn["allow_aggressive_psk"]) == (1, True, True)
    # written first, in a fixed order, so the same parameters always give the same bytes
    assert list(conn)[:3] == ["version", "aggressive", "allow_aggressive_psk"]
    cfg = parse_config(yaml.safe_load(text)).connections["site-b"]
    assert (cfg.version, cfg.aggressive, cfg.allow_aggressive_psk) == (1, True, True)


def test_not_given_they_are_left_out_so_existing_fragments_do_not_change() -> None:
    text = fragment()
    conn = connection(text)
    assert not {"version", "aggressive", "allow_aggressive_psk"} & set(conn)
    assert parse_config(yaml.safe_load(text)).connections["site-b"].version == 2


def test_main_mode_and_explicit_false_are_written_as_given() -> None:
    conn = connection(fragment(version=1, aggressive=False))
    assert conn["version"] == 1 and conn["aggressive"] is False
    assert "allow_aggressive_psk" not in conn
    assert connection(fragment(version="2"))["version"] == 2  # a digit string as Ansible's int


@pytest.mark.parametrize(
    ("over", "field"),
    [
        ({"version": 3}, "version"),
        ({"version": 0}, "version"),
        ({"version": True}, "version"),
        ({"version": "v1"}, "version"),
        ({"version": 1.5}, "version"),
        ({"aggressive": "yes"}, "aggressive"),
        ({"aggressive": 1}, "aggressive"),
        ({"allow_aggressive_psk": "true"}, "allow_aggressive_psk"),
        ({"options": {"version": 1}}, "options.version"),
        ({"options": {"aggressive": True}}, "options.aggressive"),
        ({"options": {"allow_aggressive_psk": True}}, "options.allow_aggressive_psk"),
    ],
)
def test_bad_values_are_refused_naming_the_field(over: dict[str, Any], field: str) -> None:
    with pytest.raises(tc.SpecError) as info:
        tc.TunnelSpec.from_params(params(**over))
    assert info.value.field == field
    assert str(info.value).startswith(f"{field}: ")


def test_aggressive_with_ikev2_is_refused_by_the_agents_schema_naming_the_field() -> None:
    """The module does not judge the combination itself; ikeagent --check (here the same schema
    in-process) does, and its message names the connection's field."""
    for over in ({"aggressive": True}, {"version": 2, "aggressive": True}):
        text = fragment(**over, allow_aggressive_psk=True)
        with pytest.raises(ConfigError) as info:
            parse_config(yaml.safe_load(text))
        assert "connections.site-b.aggressive" in str(info.value)
        assert "version: 1" in str(info.value)


def test_aggressive_psk_without_the_opt_in_is_refused_by_the_agents_schema() -> None:
    """The module writes what it is given; the agent's schema refuses it, naming the field."""
    text = fragment(version=1, aggressive=True)
    with pytest.raises(ConfigError) as info:
        parse_config(yaml.safe_load(text))
    assert "allow_aggressive_psk" in str(info.value)


# --- tunnel_set entries ---------------------------------------------------------------------------


def test_tunnel_set_writes_the_settings_per_entry(tmp_path: Path) -> None:
    agent = SetAgent(tmp_path / "etc")
    v1 = {**V1, "ike_proposals": ["aes256-sha256-modp2048"], "esp_proposals": ["aes256-sha256"]}
    run(tmp_path, agent, [entry("b", 2, **v1), entry("c", 3)])
    written = {name: yaml.safe_load(text) for name, text in files(tmp_path).items()}
    b = written["b.yaml"]["connections"]["b"]
    c = written["c.yaml"]["connections"]["c"]
    assert (b["version"], b["aggressive"], b["allow_aggressive_psk"]) == (1, True, True)
    assert "version" not in c and "aggressive" not in c


def test_tunnel_set_names_the_entry_and_field_of_a_bad_value(tmp_path: Path) -> None:
    agent = SetAgent(tmp_path / "etc")
    with pytest.raises(tc.SpecError) as info:
        run(tmp_path, agent, [entry("b", 2), entry("c", 3, version=4)])
    assert info.value.field == "tunnels[1] (c).version"


def test_tunnel_set_reports_the_schemas_verdict_and_writes_nothing(tmp_path: Path) -> None:
    agent = SetAgent(tmp_path / "etc")
    with pytest.raises(TunnelError) as info:
        run(tmp_path, agent, [entry("b", 2, aggressive=True, allow_aggressive_psk=True)])
    assert "connections.b.aggressive" in str(info.value)
    assert files(tmp_path) == {}


# --- the planner -----------------------------------------------------------------------------------


def ends(p: Any) -> list[dict[str, Any]]:
    return [e for entries in p.hosts.values() for e in entries]


def test_a_tunnel_entry_sets_both_ends() -> None:
    hv = inventory(2, site1={"ikelab_tunnels": [{"peer": "site2", **V1}]})
    p = plan(hv)
    for e in ends(p):
        assert (e["version"], e["aggressive"], e["allow_aggressive_psk"]) == (1, True, True)
        assert not set(V1) & set(e["options"])


def test_defaults_set_every_tunnel_and_a_tunnel_entry_wins() -> None:
    hv = inventory(3, site1={"ikelab_tunnels": [{"peer": "site2", "version": 2}]})
    p = plan(hv, topology=MESH, defaults={"version": 1})
    by_tunnel = {(e["tunnel_id"], e["name"]): e["version"] for e in ends(p)}
    assert by_tunnel == {
        ("site1--site2", "site2"): 2,
        ("site1--site2", "site1"): 2,
        ("site1--site3", "site3"): 1,
        ("site1--site3", "site1"): 1,
        ("site2--site3", "site3"): 1,
        ("site2--site3", "site2"): 1,
    }


def test_unset_they_stay_out_of_the_entries() -> None:
    p = plan(inventory(2), topology=MESH)
    for e in ends(p):
        assert not set(V1) & set(e)


def test_host_options_carry_them_as_parameters() -> None:
    hv = inventory(2, **{h: {"ikelab_tunnel_options": {"version": 1}} for h in ("site1", "site2")})
    p = plan(hv, topology=MESH)
    assert [e["version"] for e in ends(p)] == [1, 1]
    assert all("version" not in e["options"] for e in ends(p))


def test_ends_that_disagree_on_the_version_are_refused() -> None:
    hv = inventory(2, site2={"ikelab_tunnel_options": {"version": 1}})
    line = only(problems(hv, topology=MESH), "disagree")
    assert line == (
        "host site2, tunnel site1--site2, field ikelab_tunnel_options.version: the ends "
        "disagree: version is 2 on site1 (the agent's default) and 1 on site2 "
        "(ikelab_tunnel_options.version of site2)"
    )


def test_ends_that_disagree_on_aggressive_mode_are_refused() -> None:
    hv = inventory(
        2,
        site1={"ikelab_tunnel_options": V1},
        site2={"ikelab_tunnel_options": {"version": 1, "allow_aggressive_psk": True}},
    )
    line = only(problems(hv, topology=MESH), "disagree")
    assert "field ikelab_tunnel_options.aggressive" in line and "host site1" in line


def test_aggressive_with_ikev2_names_the_tunnel_entry_field() -> None:
    hv = inventory(2, site1={"ikelab_tunnels": [{"peer": "site2", "aggressive": True}]})
    lines = problems(hv)
    line = only(lines, "Aggressive Mode")
    assert "field ikelab_tunnels[0].aggressive" in line and "version: 1" in line
    assert "tunnel site1--site2" in line


def test_a_bad_default_names_defaults() -> None:
    lines = problems(inventory(2), topology=MESH, defaults={"version": 3})
    # reported for each end it reaches, as any bad default option
    assert lines == [
        f"host {h}, tunnel site1--site2, field defaults.version: 3 is out of range 1-2"
        for h in ("site1", "site2")
    ]


def test_a_bad_tunnel_entry_value_names_the_entry() -> None:
    hv = inventory(2, site1={"ikelab_tunnels": [{"peer": "site2", "aggressive": "sometimes"}]})
    lines = problems(hv)
    assert any("field ikelab_tunnels[0].aggressive" in line for line in lines), lines


def test_tunnel_entries_on_both_sides_must_agree() -> None:
    hv = inventory(
        2,
        site1={"ikelab_tunnels": [{"peer": "site2", "version": 1}]},
        site2={"ikelab_tunnels": [{"peer": "site1", "version": 2}]},
    )
    line = only(problems(hv), "conflicting")
    assert "ikelab_tunnels[0].version" in line


def test_aggressive_psk_without_the_opt_in_is_a_plan_problem() -> None:
    hv = inventory(
        2, site1={"ikelab_tunnels": [{"peer": "site2", "version": 1, "aggressive": True}]}
    )
    line = only(problems(hv), "allow_aggressive_psk")
    # named where the opt-in belongs: beside the aggressive setting that asks for it
    assert line.startswith(
        "host site1, tunnel site1--site2, field ikelab_tunnels[0].allow_aggressive_psk: "
    )


def test_module_options_lift_only_the_settings_given() -> None:
    assert module_options({"version": 1, "mobike": False})["version"] == 1
    assert "version" not in module_options({"mobike": False})
    assert module_options({"aggressive": False})["aggressive"] is False


def test_planned_ikev1_entries_become_tunnel_set_parameters_the_agent_accepts(
    tmp_path: Path,
) -> None:
    hv = inventory(
        2,
        site1={
            "ikelab_tunnels": [
                {"peer": "site2", **V1, "ike_proposals": ["aes256-sha256-modp2048"],
                 "esp_proposals": ["aes256-sha256"]}
            ]
        },
    )  # fmt: skip
    p = plan(hv)
    for host, planned in p.hosts.items():
        (params_,) = tunnel_set_entries(planned, with_keys=False)
        assert (params_["version"], params_["aggressive"]) == (1, True)
        spec = tc.TunnelSpec.from_params(params_)
        cfg = parse_config(yaml.safe_load(tc.render(spec, PSK)))
        (conn,) = cfg.connections.values()
        assert (conn.version, conn.aggressive, conn.allow_aggressive_psk) == (1, True, True), host
    assert SECRETS  # the plan never read a key
