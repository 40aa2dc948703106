"""``include:``: connections and secrets from other files (one file per tunnel), merged into
the main configuration with every problem reported against the file it is in."""

from __future__ import annotations

import os
import textwrap

import pytest

from ikeagent.config.errors import ConfigError
from ikeagent.config.schema import config_schema, load_config

MAIN = """\
agent: {log_level: debug}
include: [tunnels.d/*.yaml]
"""


def fragment(name: str, peer: str, secret: str = "0x73656372657421") -> str:
    return textwrap.dedent(
        f"""\
        connections:
          {name}:
            local_addrs: [192.0.2.1]
            remote_addrs: [{peer}]
            local: {{auth: psk, id: gw-a.example}}
            remote: {{auth: psk, id: {name}.example}}
            children:
              net: {{local_ts: [10.1.0.0/24], remote_ts: [10.9.0.0/24]}}
        secrets:
          ike-{name}: {{id: [gw-a.example, {name}.example], secret: "{secret}"}}
        """
    )


def write(base, files: dict[str, str]) -> str:
    for rel, text in files.items():
        path = base / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        os.chmod(path, 0o600)
    return str(base / "ikeagent.yaml")


def problems(path: str) -> dict[str, str]:
    with pytest.raises(ConfigError) as info:
        load_config(path)
    return dict(info.value.problems)


def test_fragments_are_merged_in_name_order(tmp_path) -> None:
    path = write(
        tmp_path,
        {
            "ikeagent.yaml": MAIN,
            "tunnels.d/site3.yaml": fragment("site3", "192.0.2.3"),
            "tunnels.d/site2.yaml": fragment("site2", "192.0.2.2"),
            "tunnels.d/notes.txt": "not yaml: [",
        },
    )
    config = load_config(path)
    assert config.log_level == "debug"
    assert sorted(config.connections) == ["site2", "site3"]
    assert str(config.connections["site3"].remote_addrs[0]) == "192.0.2.3"
    assert sorted(s.name for s in config.secrets) == ["ike-site2", "ike-site3"]


def test_no_fragment_yet_is_an_empty_configuration(tmp_path) -> None:
    path = write(tmp_path, {"ikeagent.yaml": MAIN})
    assert load_config(path).connections == {}


def test_problems_name_the_included_file(tmp_path) -> None:
    bad = fragment("site2", "192.0.2.2").replace("local_addrs", "local_adrs")
    path = write(tmp_path, {"ikeagent.yaml": MAIN, "tunnels.d/site2.yaml": bad})
    found = problems(path)
    assert any(p.startswith("tunnels.d/site2.yaml: connections.site2.local_adrs") for p in found), (
        found
    )


def test_a_name_defined_twice_names_both_files(tmp_path) -> None:
    path = write(
        tmp_path,
        {
            "ikeagent.yaml": MAIN,
            "tunnels.d/a.yaml": fragment("site2", "192.0.2.2"),
            "tunnels.d/b.yaml": fragment("site2", "192.0.2.5"),
        },
    )
    found = problems(path)
    assert found["tunnels.d/b.yaml: connections.site2"] == "already defined in tunnels.d/a.yaml"
    assert found["tunnels.d/b.yaml: secrets.ike-site2"] == "already defined in tunnels.d/a.yaml"


def test_included_files_hold_only_connections_and_secrets(tmp_path) -> None:
    text = "agent: {port: 600}\n" + fragment("site2", "192.0.2.2")
    path = write(tmp_path, {"ikeagent.yaml": MAIN, "tunnels.d/site2.yaml": text})
    assert "only connections, secrets" in problems(path)["tunnels.d/site2.yaml: agent"]


def test_a_named_file_that_is_missing_is_an_error_a_pattern_is_not(tmp_path) -> None:
    path = write(tmp_path, {"ikeagent.yaml": "include: [extra.yaml, more/*.yaml]\n"})
    assert problems(path) == {"include[0]": "extra.yaml: no such file"}


def test_relative_secret_files_resolve_against_their_own_file(tmp_path) -> None:
    text = fragment("site2", "192.0.2.2").replace('secret: "0x73656372657421"', "file: s2.psk")
    path = write(
        tmp_path,
        {"ikeagent.yaml": MAIN, "tunnels.d/site2.yaml": text, "tunnels.d/s2.psk": "0sc2VjcmV0\n"},
    )
    (secret,) = load_config(path).secrets
    assert secret.secret == b"0sc2VjcmV0"


def test_include_is_in_the_schema() -> None:
    assert "include" in config_schema()["properties"]
