"""The stdlib control-socket client against the agent's own ControlServer (same protocol code
the agent runs), and against misbehaving servers."""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ansible_collections.ikelab.ipsec.plugins.module_utils import agent_client as ac
from ikeagent.runtime.control import CommandError, ControlServer

SAS = [
    {
        "name": "site-b",
        "state": "ESTABLISHED",
        "children": [{"name": "net", "state": "INSTALLED", "packets_out": 3}],
    },
    {"name": "site-c", "state": "CONNECTING", "children": []},
]


class AgentThread:
    """The agent's ControlServer on a private socket, with a scripted handler."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.requests: list[dict[str, Any]] = []
        self.loop = asyncio.new_event_loop()
        self.server = ControlServer(str(path), self.handle)
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)

    async def handle(self, request: dict[str, Any]) -> Any:
        self.requests.append(request)
        cmd = request["cmd"]
        if cmd == "list-sas":
            name = request.get("name")
            return [s for s in SAS if name is None or s["name"] == name]
        if cmd == "list-conns":
            return [{"name": "site-b"}, {"name": "site-c"}]
        if cmd == "status":
            return {"version": "test", "ike_sas": 2}
        if cmd == "up":
            if request["name"] == "site-c":
                raise CommandError("site-c: not up after 1s")
            await asyncio.sleep(0.2)  # the agent waits while the SAs come up
            return [SAS[0]]
        if cmd == "down":
            return {"terminated": True}
        if cmd == "reload":
            raise CommandError("configuration rejected, the running one stays:\nx: bad")
        raise CommandError(f"unknown command {cmd!r}")

    def __enter__(self) -> AgentThread:
        self.thread.start()
        asyncio.run_coroutine_threadsafe(self.server.start(), self.loop).result(5)
        return self

    def __exit__(self, *exc: object) -> None:
        asyncio.run_coroutine_threadsafe(self.server.close(), self.loop).result(5)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
        self.loop.close()


@pytest.fixture
def agent(tmp_path: Path) -> Iterator[AgentThread]:
    with AgentThread(tmp_path / "run" / "ikeagent.sock") as a:
        yield a


def test_commands_and_their_arguments_reach_the_agent(agent: AgentThread) -> None:
    client = ac.AgentClient(str(agent.path))
    assert [s["name"] for s in client.list_sas()] == ["site-b", "site-c"]
    assert [s["name"] for s in client.list_sas("site-b")] == ["site-b"]
    assert [c["name"] for c in client.list_conns()] == ["site-b", "site-c"]
    assert client.status()["ike_sas"] == 2
    assert client.up("site-b", timeout=3)[0]["name"] == "site-b"
    assert client.down("site-b", timeout=2) == {"terminated": True}
    assert agent.requests == [
        {"cmd": "list-sas"},
        {"cmd": "list-sas", "name": "site-b"},
        {"cmd": "list-conns"},
        {"cmd": "status"},
        {"cmd": "up", "name": "site-b", "timeout": 3},
        {"cmd": "down", "name": "site-b", "timeout": 2},
    ]


def test_up_waits_longer_than_the_client_default(agent: AgentThread) -> None:
    """The socket waits for the agent's own timeout (plus a margin), not the client's."""
    client = ac.AgentClient(str(agent.path), timeout=0.05)
    assert client.up("site-b", timeout=1)[0]["state"] == "ESTABLISHED"
    with pytest.raises(ac.AgentError) as info:
        client.request("up", name="site-b", timeout=1)
    assert "no answer from ikeagent within 0.05s" in str(info.value)


def test_refusals_carry_the_agents_message(agent: AgentThread) -> None:
    client = ac.AgentClient(str(agent.path))
    with pytest.raises(ac.AgentCommandError) as info:
        client.reload()
    assert info.value.cmd == "reload"
    assert info.value.message.startswith("configuration rejected") and "x: bad" in str(info.value)
    with pytest.raises(ac.AgentCommandError) as info:
        client.up("site-c", timeout=1)
    assert info.value.message == "site-c: not up after 1s"
    with pytest.raises(ac.AgentCommandError) as info:
        client.request("frobnicate")
    assert "unknown command" in info.value.message


def test_no_agent_is_a_clear_unreachable_error(tmp_path: Path) -> None:
    client = ac.AgentClient(str(tmp_path / "nothing.sock"))
    with pytest.raises(ac.AgentUnreachable) as info:
        client.list_sas()
    message = str(info.value)
    assert str(tmp_path / "nothing.sock") in message and "is the agent running?" in message


def test_a_stale_socket_file_is_unreachable(tmp_path: Path) -> None:
    path = tmp_path / "stale.sock"
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(str(path))
    s.close()  # the file stays, nobody listens: ECONNREFUSED
    with pytest.raises(ac.AgentUnreachable) as info:
        ac.AgentClient(str(path)).status()
    assert "is the agent running?" in str(info.value)


class RawServer:
    """A UNIX server that answers every connection with fixed bytes (or nothing)."""

    def __init__(self, path: Path, answer: bytes | None, close: bool = True) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.bind(str(path))
        self.sock.listen(1)
        self.answer, self.close = answer, close
        self.thread = threading.Thread(target=self.serve, daemon=True)
        self.thread.start()

    def serve(self) -> None:
        conn, _ = self.sock.accept()
        conn.recv(65536)
        if self.answer is not None:
            conn.sendall(self.answer)
        if self.close:
            conn.close()
        else:
            self.conn = conn


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        (None, "closed the control connection without answering"),
        (b"not json\n", "malformed answer"),
        (b'{"result": 1}\n', "malformed answer"),
        (b"[1, 2]\n", "malformed answer"),
        (b'{"ok": false}\n', "failed"),
    ],
)
def test_misbehaving_servers_give_clear_errors(tmp_path: Path, answer, expected: str) -> None:
    path = tmp_path / "odd.sock"
    server = RawServer(path, answer)
    with pytest.raises(ac.AgentError) as info:
        ac.AgentClient(str(path), timeout=2).request("status")
    assert expected in str(info.value)
    server.thread.join(2)
    server.sock.close()


def test_a_silent_server_times_out(tmp_path: Path) -> None:
    path = tmp_path / "silent.sock"
    server = RawServer(path, None, close=False)
    with pytest.raises(ac.AgentError) as info:
        ac.AgentClient(str(path), timeout=0.2).request("status")
    assert "no answer from ikeagent within 0.2s" in str(info.value)
    server.thread.join(2)
    server.conn.close()
    server.sock.close()


def test_list_answers_must_be_lists(tmp_path: Path) -> None:
    path = tmp_path / "dict.sock"
    server = RawServer(path, b'{"ok": true, "result": {"a": 1}}\n')
    with pytest.raises(ac.AgentError) as info:
        ac.AgentClient(str(path)).list_sas()
    assert "expected a list" in str(info.value)
    server.thread.join(2)
    server.sock.close()


def test_child_is_up_reads_the_list_sas_shape() -> None:
    assert ac.child_is_up(SAS, "site-b", "net")
    assert not ac.child_is_up(SAS, "site-b", "other")
    assert not ac.child_is_up(SAS, "site-c", "net")
    rekeying = [dict(SAS[0], state="REKEYING")]
    assert ac.child_is_up(rekeying, "site-b", "net")
    connecting = [dict(SAS[0], state="CONNECTING")]
    assert not ac.child_is_up(connecting, "site-b", "net")
    deleting = [dict(SAS[0], children=[{"name": "net", "state": "DELETING"}])]
    assert not ac.child_is_up(deleting, "site-b", "net")


def test_sa_info_reads_everything_and_changes_nothing(agent: AgentThread) -> None:
    info = ac.SaInfo(ac.AgentClient(str(agent.path)), "site-b")
    assert not info.needs_change()
    info.apply()
    out = info.dump()
    assert out["changed"] is False
    assert [s["name"] for s in out["sas"]] == ["site-b"]
    assert [c["name"] for c in out["connections"]] == ["site-b"]
    assert out["agent"]["version"] == "test"
    assert {r["cmd"] for r in agent.requests} == {"list-sas", "list-conns", "status"}
