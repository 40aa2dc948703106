"""The lab site's service supervisor and its ``ikelab-service`` CLI, run as ordinary processes
(the supervisor is PID 1 only inside a site; here it supervises its own children)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

FILES = Path(__file__).resolve().parents[3] / "roles" / "lab" / "files"
PYTHON = "/usr/bin/python3" if os.path.exists("/usr/bin/python3") else sys.executable


@dataclass
class Site:
    services: Path
    logs: Path
    socket: Path
    proc: subprocess.Popen[bytes]

    def cli(self, *args: str) -> tuple[int, Any, str]:
        env = {**os.environ, "IKELAB_SERVICE_SOCKET": str(self.socket)}
        out = subprocess.run(
            [PYTHON, "-B", str(FILES / "ikelab_service.py"), *args],
            capture_output=True,
            text=True,
            env=env,
            timeout=60,
        )
        result = json.loads(out.stdout) if out.stdout.strip() else None
        return out.returncode, result, out.stderr

    def define(self, name: str, argv: list[str], **extra: Any) -> None:
        (self.services / f"{name}.json").write_text(json.dumps({"argv": argv, **extra}))


def wait_for(pred: Callable[[], Any], timeout: float = 10.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = pred()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        time.sleep(0.05)


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


@pytest.fixture
def site(tmp_path: Path) -> Iterator[Site]:
    services, logs = tmp_path / "services", tmp_path / "log"
    services.mkdir()
    sock = tmp_path / "supervisor.sock"
    code = (
        f"import sys; sys.path.insert(0, {str(FILES)!r}); import ikelab_supervisor as s; "
        f"sys.exit(s.Supervisor({str(services)!r}, {str(logs)!r}, {str(sock)!r}).run([]))"
    )
    proc = subprocess.Popen([PYTHON, "-B", "-c", code], start_new_session=True)
    wait_for(sock.exists)
    s = Site(services, logs, sock, proc)
    yield s
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def test_status_of_an_unknown_service_is_not_running(site: Site) -> None:
    rc, result, _ = site.cli("status", "nothing")
    assert rc == 3
    assert result["name"] == "nothing"
    assert result["running"] is False
    assert result["pid"] is None


def test_start_status_stop(site: Site) -> None:
    site.define(
        "sleeper",
        ["sh", "-c", 'echo "value=$IKELAB_TEST"; exec sleep 60'],
        env={"IKELAB_TEST": "x42"},
    )
    rc, started, _ = site.cli("start", "sleeper")
    assert rc == 0 and started["running"] is True
    pid = started["pid"]
    assert alive(pid)
    rc, status, _ = site.cli("status", "sleeper")
    assert (rc, status["pid"]) == (0, pid)
    rc, again, _ = site.cli("start", "sleeper")  # already running: nothing new
    assert (rc, again["pid"]) == (0, pid)
    log = site.logs / "sleeper.log"
    wait_for(lambda: "value=x42" in log.read_text())
    rc, stopped, _ = site.cli("stop", "sleeper")
    assert rc == 0 and stopped["running"] is False
    assert not alive(pid)  # stop answers once the process is gone
    rc, _, _ = site.cli("status", "sleeper")
    assert rc == 3


def test_restart_gives_a_new_process(site: Site) -> None:
    site.define("sleeper", ["sleep", "60"])
    _, first, _ = site.cli("start", "sleeper")
    rc, second, _ = site.cli("restart", "sleeper")
    assert rc == 0 and second["running"] is True
    assert second["pid"] != first["pid"]
    assert not alive(first["pid"])
    assert alive(second["pid"])


def test_unexpected_exit_is_restarted_with_back_off(site: Site) -> None:
    site.define("sleeper", ["sleep", "60"])
    _, first, _ = site.cli("start", "sleeper")
    os.kill(first["pid"], signal.SIGKILL)

    # after the back-off (1 s) a new process
    def restarted() -> dict[str, Any] | None:
        rc, status, _ = site.cli("status", "sleeper")
        return status if rc == 0 and status["pid"] != first["pid"] else None

    status = wait_for(restarted, timeout=10)
    assert status["restarts"] == 1
    assert status["last_exit"] == -signal.SIGKILL
    assert "exited unexpectedly" in (site.logs / "sleeper.log").read_text()


def test_a_service_that_ignores_sigterm_is_killed_after_its_stop_timeout(site: Site) -> None:
    site.define(
        "stubborn", ["sh", "-c", "trap '' TERM; while :; do sleep 0.1; done"], stop_timeout=0.5
    )
    _, started, _ = site.cli("start", "stubborn")
    rc, stopped, _ = site.cli("stop", "stubborn")
    assert rc == 0
    assert stopped["last_exit"] == -signal.SIGKILL
    assert not alive(started["pid"])


@pytest.mark.parametrize(
    ("definition", "message"),
    [
        ({"argv": "sleep 1"}, "argv must be a non-empty list"),
        ({"argv": []}, "argv must be a non-empty list"),
        ({"argv": ["sleep", "1"], "env": {"A": 1}}, "env must map strings"),
        ({"argv": ["/nonexistent/ikelab-binary"]}, "cannot run /nonexistent/ikelab-binary"),
    ],
)
def test_bad_definitions_are_errors(site: Site, definition: dict[str, Any], message: str) -> None:
    (site.services / "bad.json").write_text(json.dumps(definition))
    rc, result, err = site.cli("start", "bad")
    assert rc == 1
    assert result is None
    assert message in err


def test_names_and_commands_are_checked(site: Site) -> None:
    rc, _, err = site.cli("start", "../etc/passwd")
    assert rc == 1 and "bad service name" in err
    rc, _, err = site.cli("start", "missing")
    assert rc == 1 and "no service 'missing'" in err
    rc, _, err = site.cli("frobnicate", "x")
    assert rc == 2


def test_sigterm_stops_every_service_then_the_supervisor(site: Site) -> None:
    site.define("one", ["sleep", "60"])
    site.define("two", ["sleep", "60"])
    pids = [site.cli("start", name)[1]["pid"] for name in ("one", "two")]
    rc, listed, _ = site.cli("list")
    assert rc == 0 and [s["name"] for s in listed] == ["one", "two"]
    site.proc.send_signal(signal.SIGTERM)
    assert site.proc.wait(10) == 0
    for pid in pids:
        assert not alive(pid)
