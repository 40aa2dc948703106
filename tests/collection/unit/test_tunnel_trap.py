"""start_action trap in the tunnel and tunnel_set backends: state up arms and reports the trap
instead of waiting for SAs that nothing negotiates before traffic; start keeps initiating."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from test_tunnel_backend import Clock, FakeAgent, backend, fragment, ike_sa, run
from test_tunnel_set import SetAgent, entry

from ansible_collections.ikelab.ipsec.plugins.module_utils import tunnel_backend as tb
from ansible_collections.ikelab.ipsec.plugins.module_utils.agent_client import AgentCommandError
from ansible_collections.ikelab.ipsec.plugins.module_utils.tunnel_set import TunnelSetBackend


def trap(name: str = "site-b", active: bool = False, acquires: int = 0) -> dict[str, Any]:
    return {
        "name": name,
        "child": "net",
        "reqid": 7,
        "version": 2,
        "local_ts": ["10.1.0.0/24"],
        "remote_ts": ["10.2.0.0/24"],
        "reason": "start_action",
        "acquires": acquires,
        "last_acquire": None,
        "active": active,
    }


class TrapAgent(FakeAgent):
    """Arms the trap of every trapping connection when it reloads (as the agent does)."""

    def __init__(self, armed: bool = False, traps_after: int = 0, **kw: Any) -> None:
        super().__init__(**kw)
        self.traps: list[dict[str, Any]] = [trap()] if armed else []
        self.traps_after = traps_after  # list-traps answers before the trap shows up
        self.has_list_traps = True
        self.trap_names = ["site-b"]  # the connections that trap

    def reload(self) -> dict[str, Any]:
        out = super().reload()
        self.traps = []  # a reload replaces the connection: armed again below (or later)
        return out

    def list_traps(self, name: str | None = None) -> list[dict[str, Any]]:
        self._check()
        self.calls.append(("list-traps", name))
        if not self.has_list_traps:
            raise AgentCommandError("list-traps", "unknown command 'list-traps'")
        if not self.traps and "reload" in self.commands():
            if self.traps_after <= 0:
                self.traps = [trap(n) for n in self.trap_names]
            self.traps_after -= 1
        return [t for t in self.traps if name is None or t["name"] == name]

    def commands(self) -> list[str]:
        return [c for c, _ in self.calls if c not in ("list-sas", "list-traps")]


def test_up_with_trap_arms_the_trap_and_does_not_initiate(tmp_path: Path) -> None:
    agent = TrapAgent()
    b = run(tmp_path, agent, state="up", start_action="trap")
    assert agent.commands() == ["reload"]  # no "up": nothing negotiates before traffic
    out = b.dump()
    assert out["actions"] == ["write", "reload", "trap"] and out["changed"]
    assert out["sas"] == []
    assert out["trap"]["state"] == "trapped" and out["trap"]["reqid"] == 7
    assert out["trap"]["reason"] == "start_action" and out["trap"]["child"] == "net"
    assert 'start_action: "trap"' in fragment(tmp_path).read_text()


def test_a_second_run_with_the_trap_armed_changes_nothing(tmp_path: Path) -> None:
    agent = TrapAgent()
    run(tmp_path, agent, state="up", start_action="trap")
    again = backend(tmp_path, agent, state="up", start_action="trap")
    assert not again.needs_change()
    assert again.dump()["trap"]["state"] == "trapped" and not again.dump()["changed"]


def test_an_active_trap_is_reported_with_its_sas(tmp_path: Path) -> None:
    agent = TrapAgent()
    run(tmp_path, agent, state="up", start_action="trap")
    agent.traps = [trap(active=True, acquires=1)]
    agent.sas_answers = [[ike_sa()]]
    b = backend(tmp_path, agent, state="up", start_action="trap")
    assert not b.needs_change()
    out = b.dump()
    assert out["trap"]["state"] == "active" and out["trap"]["acquires"] == 1
    assert out["sas"][0]["children"][0]["state"] == "INSTALLED"


def test_up_waits_for_the_trap_to_be_listed(tmp_path: Path) -> None:
    agent = TrapAgent(traps_after=3)
    b = run(tmp_path, agent, state="up", start_action="trap")
    assert b.dump()["trap"]["state"] == "trapped"
    assert sum(1 for c, _ in agent.calls if c == "list-traps") >= 4


def test_a_trap_the_agent_never_lists_fails_clearly(tmp_path: Path) -> None:
    agent = TrapAgent(traps_after=10**6)
    with pytest.raises(tb.TunnelError) as info:
        run(tmp_path, agent, state="up", start_action="trap")
    assert "holds no trap for child 'net' after 5s (start_action trap)" in str(info.value)


def test_an_agent_without_list_traps_fails_clearly(tmp_path: Path) -> None:
    agent = TrapAgent()
    agent.has_list_traps = False
    with pytest.raises(tb.TunnelError) as info:
        backend(tmp_path, agent, state="up", start_action="trap")
    assert "start_action trap needs an agent that lists its traps" in str(info.value)


def test_present_on_an_agent_without_list_traps_warns(tmp_path: Path) -> None:
    agent = TrapAgent()
    agent.has_list_traps = False
    b = run(tmp_path, agent, state="present", start_action="trap")
    assert b.dump()["actions"] == ["write", "reload"] and b.dump()["trap"] is None
    assert any("needs an agent that lists its traps" in w for w in b.warnings)


def test_check_mode_names_the_trap_and_changes_nothing(tmp_path: Path) -> None:
    agent = TrapAgent()
    b = run(tmp_path, agent, check_mode=True, state="up", start_action="trap")
    assert b.dump()["actions"] == ["write", "reload", "trap"]
    assert not fragment(tmp_path).exists() and agent.commands() == []
    assert b.dump()["trap"] is None


def test_start_still_initiates_and_returns_no_trap(tmp_path: Path) -> None:
    agent = TrapAgent()
    b = run(tmp_path, agent, state="up", start_action="start")
    assert agent.commands() == ["reload", "up"] and "trap" not in b.dump()
    assert not any(c == "list-traps" for c, _ in agent.calls)


def test_present_with_trap_reports_the_trap(tmp_path: Path) -> None:
    agent = TrapAgent()
    b = run(tmp_path, agent, state="present", start_action="trap")
    assert b.dump()["actions"] == ["write", "reload"]
    assert b.dump()["trap"]["state"] == "trapped"


def test_the_set_arms_traps_and_initiates_the_others(tmp_path: Path) -> None:
    class SetTrapAgent(SetAgent, TrapAgent):
        pass

    agent = SetTrapAgent(tmp_path / "etc")
    agent.trap_names = ["site-c"]
    clock = Clock()
    common: dict[str, Any] = {"config_dir": str(tmp_path / "etc"), "timeout": 5}
    tunnels = [entry("site-c", 3, start_action="trap", inactivity="5m"), entry("site-d", 4)]
    runs: list[dict[str, Any]] = []
    for state in ("up", "up"):  # a first run, then a second that changes nothing
        b = TunnelSetBackend(
            {"tunnels": tunnels, "state": state, **common},
            agent,  # type: ignore[arg-type]
            lambda path, shown: None,
            clock=clock,
            sleep=clock.sleep,
        )
        if b.needs_change():
            b.apply()
        out = b.dump()
        by_name = {t["name"]: t for t in out["tunnels"]}
        assert by_name["site-c"]["trap"]["reqid"] == 7
        assert by_name["site-c"]["trap"]["state"] == "trapped"
        assert "trap" not in by_name["site-d"]
        if not runs:
            assert by_name["site-c"]["actions"] == ["write", "reload", "trap"]
            assert by_name["site-d"]["actions"] == ["write", "reload", "up"]
        else:  # the second run: both in place, nothing to do
            assert not out["changed"]
        runs.append(out)
    assert [c for c in agent.commands() if c == "up"] == ["up"]  # site-d only
    text = (tmp_path / "etc" / "tunnels.d" / "site-c.yaml").read_text()
    assert 'inactivity: "5m"' in text
