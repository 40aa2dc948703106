"""Lifetimes, liveness and on-demand parameters of the tunnel module: rendered where the agent
reads them (and accepted by its own schema), the free-form spelling of the same keys still
writing the same file, and every bad value or combination refused naming the field and why."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from ansible_collections.ikelab.ipsec.plugins.module_utils import tunnel_config as tc
from ansible_collections.ikelab.ipsec.plugins.module_utils import tunnel_settings as ts
from ikeagent.config.model import StartAction
from ikeagent.config.schema import parse_config

PSK = b"a psk for the settings tests"

ALL = {
    "start_action": "trap",
    "inactivity": "5m",
    "inactivity_close_ike": True,
    "dpd_delay": "30s",
    "dpd_action": "trap",
    "close_action": "start",
    "keyingtries": 0,
    "rekey_time": "4h",
    "over_time": "20m",
    "rand_time": "10m",
    "reauth_time": "1d",
    "child_rekey_time": "1h",
    "child_life_time": "66m",
    "child_rand_time": 120,
    "rekey_bytes": "1g",
    "life_bytes": "2g",
    "rekey_packets": 1000,
    "life_packets": "2000",
}


def params(**over: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "name": "site-b",
        "local_addrs": ["192.0.2.1"],
        "remote_addrs": ["192.0.2.2"],
        "local_id": "gw-a.example",
        "remote_id": "gw-b.example",
        "local_ts": ["10.1.0.0/24"],
        "remote_ts": ["10.2.0.0/24"],
        "start_action": "start",
    }
    base.update(over)
    return {k: v for k, v in base.items() if v is not None}


def spec(**over: Any) -> tc.TunnelSpec:
    return tc.TunnelSpec.from_params(params(**over))


def render(**over: Any) -> str:
    return tc.render(spec(**over), PSK)


def error(**over: Any) -> ts.SpecError:
    with pytest.raises(ts.SpecError) as info:
        spec(**over)
    return info.value


# --- rendering -------------------------------------------------------------------------------------


def test_every_setting_lands_where_the_agent_reads_it() -> None:
    text = render(**ALL)
    doc = yaml.safe_load(text)
    conn = doc["connections"]["site-b"]
    child = conn["children"]["net"]
    assert {k: conn[k] for k in ("dpd_delay", "rekey_time", "over_time", "rand_time")} == {
        "dpd_delay": "30s", "rekey_time": "4h", "over_time": "20m", "rand_time": "10m",
    }  # fmt: skip
    assert conn["reauth_time"] == "1d" and conn["keyingtries"] == 0
    assert conn["inactivity_close_ike"] is True
    assert child["start_action"] == "trap" and child["inactivity"] == "5m"
    assert (child["dpd_action"], child["close_action"]) == ("trap", "start")
    assert (child["rekey_time"], child["life_time"], child["rand_time"]) == ("1h", "66m", 120)
    assert (child["rekey_bytes"], child["life_bytes"]) == ("1g", "2g")
    assert (child["rekey_packets"], child["life_packets"]) == (1000, 2000)  # digits: a number

    # the agent's own schema accepts it, with the values meant
    cfg = parse_config({"connections": doc["connections"]}).connections["site-b"]
    c = cfg.children["net"]
    assert c.start_action is StartAction.TRAP and c.inactivity == 300.0
    assert (c.rekey_time, c.life_time, c.rand_time) == (3600.0, 3960.0, 120.0)
    assert (c.rekey_bytes, c.life_bytes) == (1 << 30, 2 << 30)
    assert (c.dpd_action, c.close_action) == ("trap", "start")
    assert (cfg.keyingtries, cfg.inactivity_close_ike) == (0, True)
    assert (cfg.over_time, cfg.rand_time, cfg.reauth_time) == (1200.0, 600.0, 86400.0)


def test_the_free_form_spelling_writes_the_same_file() -> None:
    """Playbooks written before these parameters existed (options/child_options) keep their
    file byte for byte, and moving a key to its parameter changes nothing either."""
    free = render(
        options={"keyingtries": 0, "mobike": False, "reauth_time": "1d"},
        child_options={"close_action": "start", "rekey_bytes": "1g", "replay_window": 64},
    )
    named = render(
        keyingtries=0,
        reauth_time="1d",
        close_action="start",
        rekey_bytes="1g",
        options={"mobike": False},
        child_options={"replay_window": 64},
    )
    assert free == named
    lines = free.splitlines()
    # connection extras sorted after the managed keys, child extras after rekey_time
    extras = [ln.strip().split(":")[0] for ln in lines if ln.startswith("    ") and ":" in ln]
    assert extras.index("keyingtries") < extras.index("mobike") < extras.index("reauth_time")
    assert (
        extras.index("close_action") < extras.index("rekey_bytes") < extras.index("replay_window")
    )


def test_equal_values_in_other_forms_write_one_file() -> None:
    a = render(keyingtries="3", inactivity="300", rekey_packets="1000", child_life_time=4000)
    b = render(keyingtries=3, inactivity=300, rekey_packets=1000, child_life_time=4000.0)
    assert a == b


def test_changing_a_setting_changes_the_file() -> None:
    base = render(start_action="trap", inactivity=300)
    assert render(start_action="trap", inactivity=301) != base
    assert render(start_action="start", inactivity=300) != base


# --- validation -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("over", "field", "reason"),
    [
        ({"inactivity": 0}, "inactivity", "must be a positive duration"),
        ({"inactivity": "0s"}, "inactivity", "must be a positive duration"),
        ({"inactivity": "soon"}, "inactivity", "must be a number of seconds or a duration"),
        ({"inactivity": -5}, "inactivity", "cannot be negative"),
        ({"keyingtries": -1}, "keyingtries", "must be 0 (keep trying) or more"),
        ({"keyingtries": "many"}, "keyingtries", "must be a whole number of attempts"),
        ({"keyingtries": True}, "keyingtries", "must be a whole number of attempts"),
        ({"dpd_action": "hold"}, "dpd_action", "must be one of clear, trap, restart"),
        ({"close_action": "restart"}, "close_action", "must be one of none, trap, start"),
        ({"inactivity_close_ike": "yes"}, "inactivity_close_ike", "must be true or false"),
        ({"rekey_bytes": "1t"}, "rekey_bytes", "must be a whole number, optionally with k"),
        ({"life_packets": -1}, "life_packets", "cannot be negative"),
        ({"over_time": "1w"}, "over_time", "must be a number of seconds or a duration"),
        (
            {"child_rekey_time": "1h", "child_life_time": "1h"},
            "child_life_time",
            "must be longer than child_rekey_time (1h): the SA is rekeyed before its hard "
            "lifetime ends it",
        ),
        (
            {"child_life_time": "30m"},
            "child_life_time",
            "must be longer than child_rekey_time (3600s, the agent's default)",
        ),
        (
            {"child_rand_time": "1h"},
            "child_rand_time",
            "must be shorter than child_rekey_time (3600s, the agent's default): it is a "
            "random time subtracted from it",
        ),
        (
            {"rekey_time": 600, "rand_time": "10m"},
            "rand_time",
            "must be shorter than rekey_time (600s)",
        ),
        (
            {"rekey_bytes": "1g", "life_bytes": "1024m"},
            "life_bytes",
            "must be more than rekey_bytes (1g): the Child SA is rekeyed before its hard limit",
        ),
        (
            {"rekey_packets": 100, "life_packets": 50},
            "life_packets",
            "must be more than rekey_packets (100)",
        ),
        (
            {"dpd_delay": 30, "dpd_timeout": 120},
            "dpd_timeout",
            "only applies to IKEv1 (version: 1); an IKEv2 peer is declared dead when a "
            "liveness check runs out of retransmissions",
        ),
        (
            {"version": 2, "dpd_delay": 30, "dpd_timeout": 120},
            "dpd_timeout",
            "only applies to IKEv1",
        ),
        (
            {"version": 1, "dpd_timeout": 120},
            "dpd_timeout",
            "needs dpd_delay (without it no liveness check is sent)",
        ),
        (
            {"inactivity_close_ike": True},
            "inactivity_close_ike",
            "needs inactivity (a Child SA is only closed for inactivity when inactivity is set)",
        ),
        (
            {"start_action": "trap", "remote_addrs": ["gw-b.example"]},
            "remote_addrs",
            "start_action trap needs the peer's IP address first in remote_addrs (a trap "
            "initiates to it when traffic arrives), not 'gw-b.example'",
        ),
        (
            {"start_action": "trap", "remote_addrs": None},
            "remote_addrs",
            "is required with start_action trap (the agent initiates to the peer)",
        ),
        (
            {"start_action": "none", "dpd_action": "restart", "remote_addrs": None},
            "remote_addrs",
            "is required with dpd_action restart",
        ),
        (
            {"start_action": "none", "remote_addrs": ["192.0.2.0/24"], "close_action": "trap"},
            "remote_addrs",
            "close_action trap needs the peer's IP address first",
        ),
        (
            {"start_action": "trap", "local_addrs": ["gw-a.example"]},
            "local_addrs",
            "start_action trap needs an IP address first in local_addrs (or none)",
        ),
        (
            {"keyingtries": 0, "options": {"keyingtries": 3}},
            "keyingtries",
            "is also given as options.keyingtries; give it once, as keyingtries",
        ),
        (
            {"inactivity": 60, "child_options": {"inactivity": 60}},
            "inactivity",
            "is also given as child_options.inactivity; give it once, as inactivity",
        ),
        # the free-form spelling is checked by the same rules, and named as written
        ({"child_options": {"inactivity": 0}}, "child_options.inactivity", "must be a positive"),
        (
            {"child_options": {"life_time": 60}},
            "child_options.life_time",
            "must be longer than child_rekey_time",
        ),
        ({"options": {"keyingtries": -2}}, "options.keyingtries", "must be 0 (keep trying)"),
        (
            {"options": {"dpd_timeout": "2m"}, "dpd_delay": 10},
            "options.dpd_timeout",
            "only applies to IKEv1",
        ),
    ],
)
def test_bad_settings_name_the_field_and_the_reason(
    over: dict[str, Any], field: str, reason: str
) -> None:
    e = error(**over)
    assert e.field == field
    assert str(e).startswith(f"{field}: {reason}"), str(e)


def test_limits_of_zero_switch_off_and_are_not_compared() -> None:
    """0 means off for the rekey and life limits (the agent's reading): nothing to compare."""
    spec(child_rekey_time=0, child_life_time=600)
    spec(rekey_bytes=0, life_bytes=100)
    spec(rekey_packets=100, life_packets=0)


def test_good_combinations_pass() -> None:
    spec(version=1, dpd_delay="30s", dpd_timeout="150s")
    spec(inactivity=1, inactivity_close_ike=True)
    spec(start_action="trap", local_addrs=None)  # a trap may leave the local address open
    spec(start_action="trap", remote_addrs=["2001:db8::2", "gw-b.example"])
    spec(child_rekey_time="20m", child_life_time="22m", child_rand_time="2m")
    spec(dpd_action="clear", close_action="none", remote_addrs=None, start_action="none")


def test_every_parameter_of_the_table_is_a_module_option() -> None:
    """The module's argument_spec and DOCUMENTATION carry every parameter of the table."""
    from ansible_collections.ikelab.ipsec.plugins.modules import tunnel

    documented = yaml.safe_load(tunnel.DOCUMENTATION)["options"]
    for param in ts.PARAMS:
        assert param in documented, param
    assert documented["start_action"]["choices"] == ["none", "start", "trap"]
