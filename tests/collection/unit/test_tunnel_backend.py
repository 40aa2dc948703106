"""The tunnel backend without AnsibleModule: plans (needs_change), atomic writes validated by the
agent's schema, restore on a rejected reload, SAs brought up or down, check mode, no PSK out."""

from __future__ import annotations

import base64
import json
import os
import stat
from pathlib import Path
from typing import Any

import pytest
import yaml

from ansible_collections.ikelab.ipsec.plugins.module_utils import tunnel_backend as tb
from ansible_collections.ikelab.ipsec.plugins.module_utils.agent_client import (
    AgentCommandError,
    AgentUnreachable,
)
from ansible_collections.ikelab.ipsec.plugins.module_utils.tunnel_config import (
    SpecError,
    psk_fingerprint,
)
from ikeagent.config.errors import ConfigError
from ikeagent.config.schema import load_config

PSK = b"a psk that must never be shown"
PSK_TEXT = "0s" + base64.b64encode(PSK).decode()


def ike_sa(name: str = "site-b", state: str = "ESTABLISHED", child_state: str = "INSTALLED"):
    return {
        "name": name,
        "state": state,
        "role": "initiator",
        "children": [{"name": "net", "state": child_state, "spi_in": "0a", "spi_out": "0b"}],
    }


class FakeAgent:
    """The control socket as the backend sees it; ``sas`` may be a list of successive answers."""

    def __init__(self, reachable: bool = True, sas: list[Any] | None = None) -> None:
        self.reachable = reachable
        self.conns: list[str] = []
        self.sas_answers: list[list[dict[str, Any]]] = [sas or []]
        self.calls: list[tuple[str, Any]] = []
        self.reload_error: str | None = None
        self.up_error: str | None = None
        self.loads_on_reload = True

    def _check(self) -> None:
        if not self.reachable:
            raise AgentUnreachable("cannot reach ikeagent at /x.sock (is the agent running?)")

    def current_sas(self) -> list[dict[str, Any]]:
        if len(self.sas_answers) > 1:
            return self.sas_answers.pop(0)
        return self.sas_answers[0]

    def list_sas(self, name: str | None = None) -> list[dict[str, Any]]:
        self._check()
        self.calls.append(("list-sas", name))
        return [s for s in self.current_sas() if name is None or s["name"] == name]

    def list_conns(self) -> list[dict[str, Any]]:
        self._check()
        return [{"name": n} for n in self.conns]

    def reload(self) -> dict[str, Any]:
        self._check()
        self.calls.append(("reload", None))
        if self.reload_error:
            raise AgentCommandError("reload", self.reload_error)
        if self.loads_on_reload:
            self.conns = ["site-b"]
        return {"connections": self.conns}

    def up(self, name: str, timeout: float = 30.0) -> list[dict[str, Any]]:
        self._check()
        self.calls.append(("up", (name, timeout)))
        if self.up_error:
            raise AgentCommandError("up", self.up_error)
        self.sas_answers = [[ike_sa(name)]]
        return self.sas_answers[0]

    def down(self, name: str, timeout: float = 5.0) -> dict[str, Any]:
        self._check()
        self.calls.append(("down", (name, timeout)))
        self.sas_answers = [[]]
        return {"terminated": True}

    def commands(self) -> list[str]:
        return [c for c, _ in self.calls if c != "list-sas"]


class SchemaValidator:
    """Validates with the agent's own schema in-process (the module runs ikeagent --check)."""

    def __init__(self) -> None:
        self.seen: list[str] = []

    def available(self) -> bool:
        return True

    def __call__(self, path: str, shown: str) -> None:
        self.seen.append(path)
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
        try:
            load_config(path)
        except ConfigError as e:
            raise tb.ValidationError(f"ikeagent --check rejected {shown}:\n{e}")


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def params(tmp_path: Path, **over: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "name": "site-b",
        "state": "present",
        "local_addrs": ["192.0.2.1"],
        "remote_addrs": ["192.0.2.2"],
        "local_id": "gw-a.example",
        "remote_id": "gw-b.example",
        "psk": PSK_TEXT,
        "ike_proposals": ["aes256gcm16-prfsha256-x25519"],
        "esp_proposals": ["aes256gcm16"],
        "local_ts": ["10.1.0.0/24"],
        "remote_ts": ["10.2.0.0/24"],
        "start_action": "start",
        "timeout": 5,
        "config_dir": str(tmp_path / "etc"),
    }
    base.update(over)
    return base


def backend(tmp_path: Path, agent: FakeAgent, check_mode: bool = False, **over: Any):
    clock = Clock()
    return tb.TunnelBackend(
        params(tmp_path, **over),
        agent,  # type: ignore[arg-type]
        SchemaValidator(),
        check_mode=check_mode,
        clock=clock,
        sleep=clock.sleep,
    )


def run(tmp_path: Path, agent: FakeAgent, check_mode: bool = False, **over: Any):
    b = backend(tmp_path, agent, check_mode, **over)
    if b.needs_change():
        b.apply()
    return b


def fragment(tmp_path: Path) -> Path:
    return tmp_path / "etc" / "tunnels.d" / "site-b.yaml"


def assert_no_psk(obj: Any) -> None:
    text = json.dumps(obj, default=str)
    for form in (PSK.decode(), base64.b64encode(PSK).decode(), PSK.hex()):
        assert form not in text


# --- present ---------------------------------------------------------------------------------------


def test_present_writes_0600_in_a_0700_dir_validates_and_reloads(tmp_path: Path) -> None:
    agent = FakeAgent()
    b = run(tmp_path, agent)
    path = fragment(tmp_path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert stat.S_IMODE(path.parent.parent.stat().st_mode) == 0o700
    assert b.actions == ["write", "reload"] and b.changed()
    assert agent.commands() == ["reload"]
    # validated before the rename, from a temporary file beside it, which is gone now
    [checked] = b.validator.seen
    assert Path(checked).parent == path.parent and Path(checked).name.startswith(".site-b")
    assert sorted(os.listdir(path.parent)) == ["site-b.yaml"]
    doc = yaml.safe_load(path.read_text())
    assert doc["secrets"]["ike-site-b"]["secret"] == PSK_TEXT
    out = b.dump()
    assert out["config_path"] == str(path) and out["psk_fingerprint"] == psk_fingerprint(PSK)
    assert_no_psk(out)
    assert_no_psk(b.diff())


def test_second_run_is_unchanged_and_does_not_touch_the_file(tmp_path: Path) -> None:
    agent = FakeAgent()
    run(tmp_path, agent)
    before = fragment(tmp_path).stat()
    b = backend(tmp_path, agent)
    assert not b.needs_change()
    assert b.dump()["changed"] is False and b.dump()["actions"] == []
    after = fragment(tmp_path).stat()
    assert (before.st_ino, before.st_mtime_ns) == (after.st_ino, after.st_mtime_ns)


def test_an_unchanged_file_the_agent_has_not_loaded_is_reloaded(tmp_path: Path) -> None:
    agent = FakeAgent()
    run(tmp_path, agent)
    agent.conns = []  # e.g. the agent restarted with another main config, or was not told
    b = run(tmp_path, agent)
    assert b.actions == ["reload"]


def test_check_mode_changes_nothing_and_shows_a_diff_with_the_fingerprint(tmp_path: Path) -> None:
    agent = FakeAgent()
    run(tmp_path, agent)
    old = fragment(tmp_path).read_bytes()
    b = run(tmp_path, agent, check_mode=True, esp_proposals=["aes128gcm16"])
    assert b.changed() and b.dump()["actions"] == ["write", "reload"]
    assert fragment(tmp_path).read_bytes() == old
    assert agent.commands() == ["reload"]  # only the first, real run's
    assert len(b.validator.seen) == 1  # validated from a scratch dir
    assert not Path(b.validator.seen[0]).parent.exists()
    diff = b.diff()
    assert "aes256gcm16" in diff["before"] and "aes128gcm16" in diff["after"]
    assert psk_fingerprint(PSK) in diff["before"] and psk_fingerprint(PSK) in diff["after"]
    assert_no_psk(diff)


def test_a_fragment_the_agent_refuses_is_never_put_in_place(tmp_path: Path) -> None:
    agent = FakeAgent()
    run(tmp_path, agent)
    old = fragment(tmp_path).read_bytes()
    with pytest.raises(tb.ValidationError) as info:
        run(tmp_path, agent, options={"mobike": "maybe"})
    assert "connections.site-b.mobike" in str(info.value)
    assert str(fragment(tmp_path)) in str(info.value)  # the real path, not the temporary one
    assert fragment(tmp_path).read_bytes() == old
    assert os.listdir(fragment(tmp_path).parent) == ["site-b.yaml"]
    assert agent.commands() == ["reload"]


def test_a_rejected_reload_restores_the_previous_fragment(tmp_path: Path) -> None:
    agent = FakeAgent()
    run(tmp_path, agent)
    old = fragment(tmp_path).read_bytes()
    agent.reload_error = "configuration rejected, the running one stays:\nx: already defined"
    with pytest.raises(tb.TunnelError) as info:
        run(tmp_path, agent, dpd_delay=10)
    assert "already defined" in str(info.value) and "restored" in str(info.value)
    assert fragment(tmp_path).read_bytes() == old


def test_a_rejected_reload_of_a_new_fragment_removes_it(tmp_path: Path) -> None:
    agent = FakeAgent()
    agent.reload_error = "configuration rejected"
    with pytest.raises(tb.TunnelError):
        run(tmp_path, agent)
    assert not fragment(tmp_path).exists()


def test_psk_may_be_omitted_when_our_fragment_holds_it(tmp_path: Path) -> None:
    agent = FakeAgent()
    run(tmp_path, agent)
    old = fragment(tmp_path).read_bytes()
    b = run(tmp_path, agent, psk=None)
    assert not b.changed() and fragment(tmp_path).read_bytes() == old
    b = run(tmp_path, agent, psk=None, esp_proposals=["aes128gcm16"])
    assert b.changed()
    assert yaml.safe_load(fragment(tmp_path).read_text())["secrets"]["ike-site-b"]["secret"] == (
        PSK_TEXT
    )


def test_psk_is_required_for_a_new_fragment(tmp_path: Path) -> None:
    with pytest.raises(SpecError) as info:
        backend(tmp_path, FakeAgent(), psk=None)
    assert info.value.field == "psk" and "no " in str(info.value)


def test_changing_the_psk_changes_the_file_and_its_fingerprint(tmp_path: Path) -> None:
    agent = FakeAgent()
    run(tmp_path, agent)
    b = run(tmp_path, agent, psk="another secret")
    assert b.changed()
    assert b.dump()["psk_fingerprint"] == psk_fingerprint(b"another secret")
    diff = b.diff()
    assert psk_fingerprint(PSK) in diff["before"]
    assert psk_fingerprint(b"another secret") in diff["after"]
    assert "another secret" not in json.dumps(diff)


def test_agent_not_running_present_writes_with_a_warning(tmp_path: Path) -> None:
    b = run(tmp_path, FakeAgent(reachable=False))
    assert fragment(tmp_path).exists() and b.actions == ["write"]
    assert any("is the agent running" in w for w in b.warnings)


def test_agent_not_running_up_fails_clearly(tmp_path: Path) -> None:
    with pytest.raises(tb.TunnelError) as info:
        run(tmp_path, FakeAgent(reachable=False), state="up")
    assert "needs the running agent" in str(info.value)


def test_a_reload_that_does_not_load_the_connection_is_reported(tmp_path: Path) -> None:
    agent = FakeAgent()
    agent.loads_on_reload = False
    b = run(tmp_path, agent)
    assert any("include" in w for w in b.warnings)
    with pytest.raises(tb.TunnelError) as info:
        run(tmp_path, agent, state="up")
    assert "tunnels.d/*.yaml" in str(info.value)


# --- up and down -----------------------------------------------------------------------------------


def test_up_as_initiator_asks_the_agent_and_returns_the_sas(tmp_path: Path) -> None:
    agent = FakeAgent()
    b = run(tmp_path, agent, state="up")
    assert agent.commands() == ["reload", "up"]
    assert ("up", ("site-b", 5.0)) in agent.calls
    assert b.actions == ["write", "reload", "up"]
    assert b.dump()["sas"][0]["children"][0]["state"] == "INSTALLED"


def test_up_when_already_up_changes_nothing(tmp_path: Path) -> None:
    agent = FakeAgent()
    run(tmp_path, agent, state="up")
    b = run(tmp_path, agent, state="up")
    assert not b.changed() and agent.commands() == ["reload", "up"]
    assert b.dump()["sas"][0]["state"] == "ESTABLISHED"


def test_up_brings_a_deleted_child_back(tmp_path: Path) -> None:
    agent = FakeAgent()
    run(tmp_path, agent, state="up")
    agent.sas_answers = [[ike_sa(child_state="DELETING")]]
    b = run(tmp_path, agent, state="up")
    assert b.actions == ["up"]


def test_up_check_mode_does_not_initiate(tmp_path: Path) -> None:
    agent = FakeAgent()
    run(tmp_path, agent)
    b = run(tmp_path, agent, check_mode=True, state="up")
    assert b.changed() and b.dump()["actions"] == ["bring_up"]
    assert agent.commands() == ["reload"]


def test_up_as_responder_waits_for_the_peer(tmp_path: Path) -> None:
    agent = FakeAgent()
    run(tmp_path, agent, start_action="none")
    agent.sas_answers = [[], [], [ike_sa(state="CONNECTING")], [ike_sa()]]
    b = run(tmp_path, agent, state="up", start_action="none")
    assert "up" not in agent.commands()  # the responder never initiates
    assert b.actions == ["up"] and b.sas[0]["state"] == "ESTABLISHED"


def test_up_as_responder_times_out_clearly(tmp_path: Path) -> None:
    agent = FakeAgent()
    run(tmp_path, agent, start_action="none")
    with pytest.raises(tb.TunnelError) as info:
        run(tmp_path, agent, state="up", start_action="none")
    assert "did not bring child 'net' up within 5s" in str(info.value)


def test_up_failure_carries_the_agents_message(tmp_path: Path) -> None:
    agent = FakeAgent()
    agent.up_error = "site-b: not up after 5s"
    with pytest.raises(tb.TunnelError) as info:
        run(tmp_path, agent, state="up")
    assert "not up after 5s" in str(info.value)


def test_down_terminates_the_sas_and_keeps_the_file(tmp_path: Path) -> None:
    agent = FakeAgent()
    run(tmp_path, agent, state="up")
    b = run(tmp_path, agent, state="down")
    assert b.actions == ["down"] and b.sas == []
    assert fragment(tmp_path).exists()
    b = run(tmp_path, agent, state="down")
    assert not b.changed()


# --- absent ----------------------------------------------------------------------------------------


def test_absent_removes_reloads_and_waits_for_the_sas_to_go(tmp_path: Path) -> None:
    agent = FakeAgent()
    run(tmp_path, agent, state="up")
    agent.sas_answers = [[ike_sa()], [ike_sa(state="DELETING")], []]
    b = run(tmp_path, agent, state="absent")
    assert not fragment(tmp_path).exists()
    assert b.actions == ["remove", "reload"] and b.sas == []
    assert "psk_fingerprint" not in b.dump()
    b = run(tmp_path, agent, state="absent")
    assert not b.changed()


def test_absent_needs_no_tunnel_parameters(tmp_path: Path) -> None:
    b = tb.TunnelBackend(
        {"name": "site-b", "state": "absent", "config_dir": str(tmp_path)},
        FakeAgent(),  # type: ignore[arg-type]
        SchemaValidator(),
    )
    assert not b.needs_change()


def test_absent_check_mode_keeps_the_file(tmp_path: Path) -> None:
    agent = FakeAgent()
    run(tmp_path, agent)
    b = run(tmp_path, agent, check_mode=True, state="absent")
    assert b.changed() and fragment(tmp_path).exists()
    assert b.diff()["after"] == "" and psk_fingerprint(PSK) in b.diff()["before"]


def test_bad_state_and_timeout_name_their_field(tmp_path: Path) -> None:
    with pytest.raises(SpecError) as info:
        backend(tmp_path, FakeAgent(), state="started")
    assert info.value.field == "state"
    for bad in (0, 601):
        with pytest.raises(SpecError) as info:
            backend(tmp_path, FakeAgent(), timeout=bad)
        assert info.value.field == "timeout"
