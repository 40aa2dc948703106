"""tunnel_set: every tunnel of a host in one pass — one validation over the set, one reload,
exclusive removal, all-or-nothing restore, check mode, no PSK in the result or the diff."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from test_tunnel_backend import PSK, PSK_TEXT, Clock, FakeAgent, SchemaValidator, ike_sa

from ansible_collections.ikelab.ipsec.plugins.module_utils import tunnel_backend as tb
from ansible_collections.ikelab.ipsec.plugins.module_utils.tunnel_config import SpecError
from ansible_collections.ikelab.ipsec.plugins.module_utils.tunnel_set import TunnelSetBackend


class SetAgent(FakeAgent):
    """The fake agent, loading every fragment on reload."""

    def __init__(self, config_dir: Path, **kw: Any) -> None:
        super().__init__(**kw)
        self.config_dir = config_dir

    def reload(self) -> dict[str, Any]:
        self._check()
        self.calls.append(("reload", None))
        if self.reload_error:
            from ansible_collections.ikelab.ipsec.plugins.module_utils.agent_client import (
                AgentCommandError,
            )

            raise AgentCommandError("reload", self.reload_error)
        d = self.config_dir / "tunnels.d"
        self.conns = sorted(p.stem for p in d.glob("*.yaml")) if d.exists() else []
        return {"connections": self.conns}

    def up(self, name: str, timeout: float = 30.0) -> list[dict[str, Any]]:
        self._check()
        self.calls.append(("up", (name, timeout)))
        current = [s for s in self.sas_answers[0] if s["name"] != name]
        self.sas_answers = [[*current, ike_sa(name)]]
        return [ike_sa(name)]


def entry(name: str, n: int, start: bool = True, **over: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "name": name,
        "local_addrs": ["192.0.2.1"],
        "remote_addrs": [f"192.0.2.{n}"],
        "local_id": "gw-a.example",
        "remote_id": f"{name}.example",
        "psk": PSK_TEXT,
        "ike_proposals": ["aes256gcm16-prfsha256-x25519"],
        "esp_proposals": ["aes256gcm16"],
        "local_ts": ["10.1.0.0/24"],
        "remote_ts": [f"10.{n}.0.0/24"],
        "start_action": "start" if start else "none",
    }
    return base | over


def make(tmp_path: Path, agent: FakeAgent, tunnels: list[dict], check_mode=False, **over: Any):
    clock = Clock()
    validator = CountingValidator()
    params = {
        "tunnels": tunnels,
        "state": "present",
        "exclusive": False,
        "timeout": 5,
        "config_dir": str(tmp_path / "etc"),
        "socket": "/x.sock",
        "agent_venv": "/nowhere",
    } | over
    b = TunnelSetBackend(
        params, agent, validator, check_mode=check_mode, clock=clock, sleep=clock.sleep
    )
    return b, validator


class CountingValidator(SchemaValidator):
    """The agent's schema in-process, run over the scratch set's main file (with include:)."""


def run(tmp_path, agent, tunnels, check_mode=False, **over):
    b, v = make(tmp_path, agent, tunnels, check_mode, **over)
    if b.needs_change():
        b.apply()
    return b, v


def files(tmp_path: Path) -> dict[str, str]:
    d = tmp_path / "etc" / "tunnels.d"
    return {p.name: p.read_text() for p in sorted(d.glob("*"))} if d.exists() else {}


def test_the_whole_set_is_validated_once_written_and_reloaded_once(tmp_path) -> None:
    agent = SetAgent(tmp_path / "etc")
    b, v = run(tmp_path, agent, [entry("b", 2), entry("c", 3), entry("d", 4)])
    assert sorted(files(tmp_path)) == ["b.yaml", "c.yaml", "d.yaml"]
    assert len(v.seen) == 1  # one ikeagent --check for the three
    assert agent.commands() == ["reload"]
    result = b.dump()
    assert result["changed"] is True
    assert [t["name"] for t in result["tunnels"]] == ["b", "c", "d"]
    assert all("write" in t["actions"] for t in result["tunnels"])
    assert PSK.decode() not in json.dumps(result) and PSK_TEXT not in json.dumps(result)


def test_a_second_pass_changes_nothing(tmp_path) -> None:
    agent = SetAgent(tmp_path / "etc")
    tunnels = [entry("b", 2), entry("c", 3)]
    run(tmp_path, agent, tunnels)
    before = files(tmp_path)
    b, v = run(tmp_path, agent, tunnels)
    assert b.dump()["changed"] is False and not v.seen
    assert agent.commands() == ["reload"]
    assert files(tmp_path) == before


def test_up_initiates_its_own_and_waits_for_the_peers(tmp_path) -> None:
    agent = SetAgent(tmp_path / "etc")
    # "c" is initiated by the peer: its SAs are there on the second look
    agent.sas_answers = [[], [], [], [ike_sa("c")]]
    b, _ = run(tmp_path, agent, [entry("b", 2), entry("c", 3, start=False)], state="up")
    assert ("up", ("b", 5.0)) in agent.calls
    assert not any(c == ("up", ("c", 5.0)) for c in agent.calls)
    assert [t["name"] for t in b.dump()["tunnels"]] == ["b", "c"]


def test_exclusive_removes_the_unplanned_in_the_same_reload(tmp_path) -> None:
    agent = SetAgent(tmp_path / "etc")
    run(tmp_path, agent, [entry("b", 2), entry("c", 3)])
    b, _ = run(tmp_path, agent, [entry("b", 2)], exclusive=True)
    assert sorted(files(tmp_path)) == ["b.yaml"]
    assert b.dump()["removed"] == ["c"]
    assert agent.commands() == ["reload", "reload"]
    # without exclusive an unplanned tunnel stays
    run(tmp_path, agent, [entry("b", 2), entry("c", 3)])
    run(tmp_path, agent, [entry("b", 2)])
    assert sorted(files(tmp_path)) == ["b.yaml", "c.yaml"]


def test_a_rejected_reload_restores_every_file(tmp_path) -> None:
    agent = SetAgent(tmp_path / "etc")
    run(tmp_path, agent, [entry("b", 2), entry("c", 3)])
    before = files(tmp_path)
    agent.reload_error = "connections.d: duplicate"
    with pytest.raises(tb.TunnelError, match="restored"):
        run(
            tmp_path,
            agent,
            [entry("b", 2, esp_proposals=["aes128gcm16"]), entry("d", 4)],
            exclusive=True,
        )
    assert files(tmp_path) == before


def test_a_bad_entry_is_refused_before_anything_is_written(tmp_path) -> None:
    agent = SetAgent(tmp_path / "etc")
    with pytest.raises(SpecError, match=r"tunnels\[1\] \(c\)\.psk"):
        make(tmp_path, agent, [entry("b", 2), entry("c", 3, psk="0xZZ")])
    with pytest.raises(SpecError, match="given twice"):
        make(tmp_path, agent, [entry("b", 2), entry("b", 3)])
    with pytest.raises(SpecError, match="whole set"):
        make(tmp_path, agent, [entry("b", 2, timeout=3)])
    assert files(tmp_path) == {}


def test_an_option_the_agent_refuses_fails_the_set_before_any_write(tmp_path) -> None:
    agent = SetAgent(tmp_path / "etc")
    with pytest.raises(tb.ValidationError, match="mobike"):
        run(tmp_path, agent, [entry("b", 2), entry("c", 3, options={"mobike": "sometimes"})])
    assert files(tmp_path) == {}
    assert agent.commands() == []


def test_check_mode_reports_and_touches_nothing(tmp_path) -> None:
    agent = SetAgent(tmp_path / "etc")
    run(tmp_path, agent, [entry("b", 2), entry("c", 3)])
    before = files(tmp_path)
    b, v = run(
        tmp_path,
        agent,
        [entry("b", 2, esp_proposals=["aes128gcm16"])],
        check_mode=True,
        exclusive=True,
    )
    assert b.dump()["changed"] is True and b.dump()["removed"] == ["c"]
    assert files(tmp_path) == before and agent.commands() == ["reload"]
    assert len(v.seen) == 1  # the new text was validated all the same
    diff = json.dumps(b.diff())
    assert "aes128gcm16" in diff and PSK_TEXT not in diff and PSK.decode() not in diff


def test_check_mode_before_the_agent_runs(tmp_path) -> None:
    agent = SetAgent(tmp_path / "etc", reachable=False)
    b, _ = run(tmp_path, agent, [entry("b", 2)], check_mode=True, state="up")
    assert b.dump()["changed"] is True
    assert any("once the agent runs" in w for w in b.warnings)
    with pytest.raises(tb.TunnelError, match="needs the running agent"):
        run(tmp_path, agent, [entry("b", 2)], state="up")
