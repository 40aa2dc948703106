"""The YAML configuration: a swanctl-style file to AgentConfig, and every error with its path."""

from __future__ import annotations

import ipaddress
import json
import os
import textwrap

import pytest

from ikeagent.config.errors import ConfigError
from ikeagent.config.identity import IDType
from ikeagent.config.model import AuthMethod, StartAction
from ikeagent.config.schema import config_schema, load_config, parse_config
from ikeagent.crypto.suites import Kind, default_proposals, parse_proposal
from ikeagent.dataplane.base import TrafficSelector

SWANCTL_STYLE = """\
agent: {log_level: debug, dataplane: userspace, cookie_threshold: 20}
connections:
  site-b:
    version: 2
    local_addrs: 192.0.2.1
    remote_addrs: [192.0.2.2]
    remote_port: 4500
    proposals: aes256gcm16-prfsha256-x25519, aes256-sha256-modp2048
    local-1: {auth: psk, id: gw-a.example}
    remote-1: {auth: psk, id: "@gw-b.example"}
    dpd_delay: 30s
    rekey_time: 4h
    encap: yes
    mobike: no
    children:
      net:
        local_ts: 10.1.0.0/24
        remote_ts: [10.2.0.0/24, "10.3.0.0/16[tcp/443]"]
        esp_proposals: [aes256gcm16, aes256-sha256]
        start_action: start
        rekey_time: 1h
        rekey_bytes: 1m
        replay_window: 128
secrets:
  ike-b:
    id-1: gw-a.example
    id-2: "@gw-b.example"
    secret: "0x73656372657421"
"""


def _write(tmp_path, text: str, name: str = "ikeagent.yaml") -> str:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return str(path)


def _problems(mapping, **kw) -> dict[str, str]:
    with pytest.raises(ConfigError) as info:
        parse_config(mapping, **kw)
    return dict(info.value.problems)


def _conn(**extra):
    """A minimal valid connection mapping, extended by ``extra``."""
    base = {
        "local_addrs": ["192.0.2.1"],
        "remote_addrs": ["192.0.2.2"],
        "local": {"auth": "psk"},
        "remote": {"auth": "psk"},
        "children": {"net": {"local_ts": "10.1.0.0/24", "remote_ts": "10.2.0.0/24"}},
    }
    base.update(extra)
    return {"connections": {"c": base}}


def test_swanctl_style_file(tmp_path):
    cfg = load_config(_write(tmp_path, SWANCTL_STYLE))
    assert (cfg.log_level, cfg.dataplane, cfg.cookie_threshold) == ("debug", "userspace", 20)
    assert (cfg.port, cfg.natt_port, cfg.fragment_size) == (500, 4500, 1280)
    conn = cfg.connections["site-b"]
    assert conn.version == 2
    assert conn.local_addrs == ("192.0.2.1",)
    assert conn.remote_addrs == ("192.0.2.2",)
    assert (conn.local_port, conn.remote_port) == (500, 4500)
    assert conn.proposals == (
        parse_proposal("aes256gcm16-prfsha256-x25519", Kind.IKE),
        parse_proposal("aes256-sha256-modp2048", Kind.IKE),
    )
    assert conn.local.auth is AuthMethod.PSK and conn.local.id.text == "gw-a.example"
    assert conn.remote.id.id_type == IDType.ID_FQDN and conn.remote.id.data == b"gw-b.example"
    assert (conn.dpd_delay, conn.rekey_time, conn.encap, conn.mobike) == (
        30.0,
        14400.0,
        True,
        False,
    )
    assert conn.over_time == 1440.0 and conn.rand_time == 1440.0  # swanctl: 10% of rekey_time
    child = conn.children["net"]
    assert child.local_ts == (TrafficSelector(ipaddress.ip_network("10.1.0.0/24")),)
    assert child.remote_ts[1] == TrafficSelector(ipaddress.ip_network("10.3.0.0/16"), 6, 443, 443)
    assert child.esp_proposals == (
        parse_proposal("aes256gcm16", Kind.ESP),
        parse_proposal("aes256-sha256", Kind.ESP),
    )
    assert child.start_action is StartAction.START
    assert (child.rekey_time, child.life_time, child.rand_time) == (3600.0, 3960.0, 360.0)
    assert (child.rekey_bytes, child.life_bytes) == (1 << 20, (1 << 20) + (1 << 20) // 10)
    assert child.replay_window == 128
    (secret,) = cfg.secrets
    assert secret.secret == b"secret!"
    assert [i.text for i in secret.ids] == ["gw-a.example", "@gw-b.example"]
    assert cfg.find_psk(conn.local.id, conn.remote.id) == b"secret!"


def test_swanctl_defaults():
    cfg = parse_config(
        {
            "connections": {
                "c": {
                    "local": {"auth": "psk"},
                    "remote": {"auth": "psk"},
                    "children": {"n": {"local_ts": "10.0.0.0/8", "remote_ts": "0.0.0.0/0"}},
                }
            }
        }
    )
    conn = cfg.connections["c"]
    assert conn.version == 2
    assert conn.local_addrs == () and conn.remote_addrs == ()
    assert (conn.local_port, conn.remote_port) == (500, 500)
    assert conn.proposals == default_proposals(Kind.IKE)
    assert conn.local.id is None and conn.remote.id is None
    assert (conn.dpd_delay, conn.rekey_time, conn.reauth_time) == (0.0, 14400.0, 0.0)
    assert (conn.mobike, conn.fragmentation, conn.encap, conn.aggressive) == (
        True,
        True,
        False,
        False,
    )
    child = conn.children["n"]
    assert child.esp_proposals == default_proposals(Kind.ESP)
    assert child.start_action is StartAction.NONE and child.mode == "tunnel"
    assert (child.rekey_time, child.replay_window, child.life_bytes) == (3600.0, 32, 0)


def test_auth_defaults_to_pubkey_as_in_swanctl_and_then_needs_certificates():
    problems = _problems(
        {"connections": {"c": {"children": {"n": {"local_ts": "10.0.0.0/8", "remote_ts": "0/0"}}}}}
    )
    assert "our certificate" in problems["connections.c.local.certs"]
    assert "CA certificates" in problems["connections.c.remote.cacerts"]


def test_agent_port_is_the_default_local_port_and_overrides_apply(tmp_path):
    path = _write(tmp_path, "agent: {port: 1500}\n" + "connections: {}\n")
    assert load_config(path).port == 1500
    cfg = parse_config(_conn(), overrides={"port": 10500, "natt_port": 14500})
    assert (cfg.port, cfg.natt_port, cfg.connections["c"].local_port) == (10500, 14500, 10500)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        (30, 30.0),
        ("30", 30.0),
        ("30s", 30.0),
        ("5m", 300.0),
        ("1h", 3600.0),
        ("1d", 86400.0),
        ("1.5h", 5400.0),
        (0, 0.0),
    ],
)
def test_durations(text, seconds):
    assert parse_config(_conn(dpd_delay=text)).connections["c"].dpd_delay == seconds


@pytest.mark.parametrize("bad", ["30 minutes", "-5", -5, "1w", True, "h"])
def test_bad_durations(bad):
    problems = _problems(_conn(dpd_delay=bad))
    assert list(problems) == ["connections.c.dpd_delay"]


def test_each_error_carries_its_path_and_all_are_reported(tmp_path):
    loose = tmp_path / "loose.psk"
    loose.write_text("hunter2\n")
    os.chmod(loose, 0o644)
    mapping = {
        "agent": {"log_level": "loud", "port": 70000},
        "connections": {
            "site-b": {
                "version": 0,
                "local_addrs": ["192.0.2.300"],
                "remote_port": 0,
                "proposals": ["aes256gcm16-prfsha256-x25519", "aes999-sha1"],
                "bogus": 1,
                "local": {"auth": "psk"},
                "remote": {"auth": "psk"},
                "children": {
                    "net": {
                        "local_ts": [],
                        "remote_ts": "dynamic",
                        "esp_proposals": ["aes256gcm16", "blah"],
                        "start_action": "go",
                    },
                },
            },
        },
        "secrets": {
            "ike-x": {"secret": ""},
            "eap-y": {"secret": "x"},
            "ike-z": {"file": str(loose)},
            "ike-w": {"id": "a.example"},
        },
        "pools": {},
    }
    problems = _problems(mapping)
    conn = "connections.site-b"
    assert set(problems) == {
        "agent.log_level",
        "agent.port",
        f"{conn}.version",
        f"{conn}.local_addrs[0]",
        f"{conn}.remote_port",
        f"{conn}.proposals[1]",
        f"{conn}.bogus",
        f"{conn}.children.net.local_ts",
        f"{conn}.children.net.remote_ts[0]",
        f"{conn}.children.net.esp_proposals[1]",
        f"{conn}.children.net.start_action",
        "secrets.ike-x.secret",
        "secrets.eap-y",
        "secrets.ike-z.file",
        "secrets.ike-w",
        "pools",
    }
    assert "not supported" in problems[f"{conn}.version"]
    assert "aes999" in problems[f"{conn}.proposals[1]"]
    assert "blah" in problems[f"{conn}.children.net.esp_proposals[1]"]
    assert "dynamic" in problems[f"{conn}.children.net.remote_ts[0]"]
    assert "group or others" in problems["secrets.ike-z.file"]
    assert "unknown key" in problems[f"{conn}.bogus"]


def test_error_message_starts_with_the_path():
    with pytest.raises(ConfigError) as info:
        parse_config(
            _conn(
                children={
                    "net": {
                        "local_ts": "10.1.0.0/24",
                        "remote_ts": "10.2.0.0/24",
                        "esp_proposals": ["aes256gcm16", "nope"],
                    }
                }
            )
        )
    assert str(info.value).startswith("connections.c.children.net.esp_proposals[1]: ")


@pytest.mark.parametrize(
    ("extra", "path", "words"),
    [
        ({"aggressive": True}, "connections.c.aggressive", "version: 1"),
        (
            {
                "remote_addrs": [],
                "children": {
                    "n": {
                        "local_ts": "10.1.0.0/24",
                        "remote_ts": "10.2.0.0/24",
                        "start_action": "start",
                    }
                },
            },
            "connections.c.remote_addrs",
            "start_action start",
        ),
        ({"local_port": 65536}, "connections.c.local_port", "out of range"),
        ({"local_addrs": ["10.0.0.0/8"]}, "connections.c.local_addrs[0]", "subnets"),
        ({"remote_addrs": ["10.0.0.9-10.0.0.1"]}, "connections.c.remote_addrs[0]", "lower"),
        ({"local": {"auth": "eap"}}, "connections.c.local.auth", "psk"),
        ({"local-2": {"auth": "psk"}}, "connections.c.local-2", "unknown key"),
        ({"local-1": {"auth": "psk"}}, "connections.c.local-1", "duplicates"),
        (
            {"children": {"n": {"local_ts": "10.1.0.0/24"}}},
            "connections.c.children.n.remote_ts",
            "dynamic",
        ),
        (
            {
                "children": {
                    "n": {
                        "local_ts": "10.1.0.0/24",
                        "remote_ts": "10.2.0.0/24",
                        "mode": "transport",
                    }
                }
            },
            "connections.c.children.n.mode",
            "tunnel",
        ),
        (
            {
                "children": {
                    "n": {
                        "local_ts": "10.1.0.0/24",
                        "remote_ts": "10.2.0.0/24",
                        "rekey_time": "1h",
                        "life_time": "30m",
                    }
                }
            },
            "connections.c.children.n.life_time",
            "greater",
        ),
        ({"mobike": "maybe"}, "connections.c.mobike", "yes/no"),
        ({"version": 3}, "connections.c.version", "out of range"),
    ],
)
def test_single_errors(extra, path, words):
    problems = _problems(_conn(**extra))
    assert list(problems) == [path]
    assert words in problems[path]


def test_ikev1_and_aggressive_are_accepted_as_configuration():
    cfg = parse_config(_conn(version=1, aggressive=True, allow_aggressive_psk=True))
    conn = cfg.connections["c"]
    assert (conn.version, conn.aggressive, conn.allow_aggressive_psk) == (1, True, True)


def test_secret_file_and_forms(tmp_path):
    psk = tmp_path / "b.psk"
    psk.write_bytes(b"from a file\n")
    os.chmod(psk, 0o600)
    cfg = parse_config(
        {
            "secrets": {
                "ike-file": {"id": "a.example", "file": "b.psk"},  # relative to base_dir
                "ike-b64": {"secret": "0sc2VjcmV0"},
                "ike-plain": {"id": ["x.example", "y.example"], "secret": "plain"},
            }
        },
        base_dir=str(tmp_path),
    )
    assert [s.secret for s in cfg.secrets] == [b"from a file", b"secret", b"plain"]
    assert [len(s.ids) for s in cfg.secrets] == [1, 0, 2]
    problems = _problems(
        {
            "secrets": {
                "ike-a": {"secret": "x", "file": "y"},
                "ike-b": {"secret": "0xZZ"},
                "ike-c": {"file": "missing"},
            }
        },
        base_dir=str(tmp_path),
    )
    assert set(problems) == {"secrets.ike-a", "secrets.ike-b.secret", "secrets.ike-c.file"}


def test_secrets_never_appear_in_errors_or_reprs(tmp_path):
    secret = "Sup3r-Secret-Value"
    cfg = parse_config({"secrets": {"ike-a": {"secret": secret}}})
    assert secret not in repr(cfg) and secret not in str(cfg.secrets)
    problems = _problems({"secrets": {"ike-a": {"secret": secret, "bogus": secret}}})
    assert secret not in json.dumps(problems)
    problems = _problems({"secrets": {"ike-a": {"secret": "0x" + secret}}})
    assert secret not in json.dumps(problems)


def test_duplicate_yaml_keys_and_bad_yaml(tmp_path):
    with pytest.raises(ConfigError, match="duplicate key 'site-b'"):
        load_config(_write(tmp_path, "connections:\n  site-b: {}\n  site-b: {}\n"))
    with pytest.raises(ConfigError, match="invalid YAML"):
        load_config(_write(tmp_path, "connections: [\n"))
    with pytest.raises(ConfigError, match="top level"):
        load_config(_write(tmp_path, "- a\n- b\n"))


def test_schema_describes_the_same_keys():
    schema = config_schema()
    json.dumps(schema)  # JSON-serialisable
    conn = schema["properties"]["connections"]["additionalProperties"]
    assert conn["additionalProperties"] is False
    assert {"version", "local_addrs", "proposals", "local", "local-1", "children"} <= set(
        conn["properties"]
    )
    child = conn["properties"]["children"]["additionalProperties"]
    assert child["required"] == ["local_ts", "remote_ts"]
    assert child["properties"]["start_action"]["enum"] == ["none", "start", "trap"]
    assert child["properties"]["rekey_time"]["default"] == 3600.0
    secret = schema["properties"]["secrets"]["additionalProperties"]
    assert "^id(-.+)?$" in secret["patternProperties"]
    assert schema["properties"]["agent"]["properties"]["dataplane"]["enum"] == [
        "auto",
        "userspace",
        "xfrm",
        "memory",
    ]


def test_xfrm_routing_options_default_to_charons_and_are_checked():
    cfg = parse_config({})
    assert (cfg.install_routes, cfg.routing_table, cfg.routing_priority) == (True, 220, 220)
    cfg = parse_config({"agent": {"install_routes": False, "routing_table": 100}})
    assert (cfg.install_routes, cfg.routing_table) == (False, 100)
    problems = _problems({"agent": {"routing_table": 254}})
    assert "agent.routing_table" in problems
