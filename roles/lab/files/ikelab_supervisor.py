# Copyright: contributors to the ikelab.ipsec collection
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The process supervisor of a lab site (imported by the site init, PID 1; standard library).

One thread, one ``selectors`` loop: the control socket (``/run/ikelab-lab/supervisor.sock``,
one JSON line in, one JSON line out), signals through a wake-up socket, timers for back-off
restarts and for SIGKILL after a stop timeout. Every child is reaped, services and orphans
alike.

A service is ``/etc/ikelab/services/NAME.json``: ``{"argv": [...], "env": {...}}``, optional
``"cwd"`` and ``"stop_timeout"`` (seconds, default 10). It runs in its own session with stdin
from /dev/null and stdout/stderr appended to ``/var/log/ikelab/NAME.log``. A service that exits
without being asked to is started again after a back-off (1 s, doubling to 30 s; back to 1 s
after 10 s of running).

Requests ``{"cmd": "start"|"stop"|"restart"|"status"|"list", "name": NAME}``; replies
``{"ok": true, "result": STATUS}`` (``list``: a list of them) or ``{"ok": false, "error": ...}``.
STATUS is ``{"name", "running", "pid", "state", "restarts", "last_exit"}``. ``stop`` and
``restart`` answer once the old process is gone.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import selectors
import signal
import socket
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

RUN_DIR = "/run/ikelab-lab"
SOCKET = RUN_DIR + "/supervisor.sock"
PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}")
BACKOFF_MIN, BACKOFF_MAX, STABLE_AFTER = 1.0, 30.0, 10.0
SHUTDOWN_GRACE = 5.0
MAX_REQUEST = 65536
RESET_SIGNALS = (
    signal.SIGPIPE,
    signal.SIGXFSZ,
    signal.SIGCHLD,
    signal.SIGTERM,
    signal.SIGINT,
    signal.SIGHUP,
)


def log(text: str) -> None:
    stamp = time.strftime("%Y-%m-%d %H:%M:%S")
    print(f"{stamp} ikelab-init: {text}", file=sys.stderr, flush=True)


class ServiceError(Exception):
    pass


@dataclass(slots=True)
class Service:
    name: str
    argv: list[str]
    log_path: str | None  # None: the supervisor's own stderr (the site's init log)
    env: dict[str, str] = field(default_factory=dict)
    cwd: str = "/"
    stop_timeout: float = 10.0
    internal: bool = False
    state: str = "stopped"  # stopped | running | stopping | backoff
    pid: int | None = None
    started: float = 0.0
    restarts: int = 0
    last_exit: int | None = None
    backoff: float = BACKOFF_MIN
    deadline: float | None = None  # backoff: start again; stopping: SIGKILL
    waiters: list[tuple[socket.socket, str]] = field(default_factory=list)

    @classmethod
    def builtin(cls, name: str, argv: list[str], log_path: str | None = None) -> Service:
        """A service of the site init itself (sshd): supervised, not controllable."""
        return cls(name, argv, log_path, internal=True)

    def status(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "running": self.pid is not None and self.state == "running",
            "pid": self.pid,
            "state": self.state,
            "restarts": self.restarts,
            "last_exit": self.last_exit,
        }


def load_definition(directory: str, name: str, log_dir: str) -> Service:
    path = os.path.join(directory, f"{name}.json")
    try:
        with open(path) as f:
            data = json.load(f)
    except FileNotFoundError:
        raise ServiceError(f"no service {name!r} (no {path})")
    except (OSError, ValueError) as exc:
        raise ServiceError(f"{path}: {exc}")
    argv, env = data.get("argv") if isinstance(data, dict) else None, data.get("env", {})
    if not isinstance(argv, list) or not argv or not all(isinstance(a, str) for a in argv):
        raise ServiceError(f"{path}: argv must be a non-empty list of strings")
    if not isinstance(env, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in env.items()
    ):
        raise ServiceError(f"{path}: env must map strings to strings")
    timeout = data.get("stop_timeout", 10.0)
    if not isinstance(timeout, (int, float)) or timeout <= 0:
        raise ServiceError(f"{path}: stop_timeout must be a positive number")
    return Service(
        name,
        argv,
        os.path.join(log_dir, f"{name}.log"),
        env,
        str(data.get("cwd", "/")),
        float(timeout),
    )


def spawn(svc: Service) -> int:
    """fork + exec in a new session; an exec failure comes back through a close-on-exec pipe."""
    env = {"PATH": PATH, "LANG": "C.UTF-8", "HOME": "/root", **svc.env}
    if svc.log_path is None:
        out = os.dup(2)
        log(f"start {svc.name}: {svc.argv}")
    else:
        os.makedirs(os.path.dirname(svc.log_path), exist_ok=True)
        out = os.open(svc.log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o640)
        with os.fdopen(os.dup(out), "a") as f:
            stamp = time.strftime("%Y-%m-%d %H:%M:%S")
            f.write(f"--- {stamp} ikelab-service: start {svc.name}: {svc.argv}\n")
    r, w = os.pipe2(os.O_CLOEXEC)
    pid = os.fork()
    if pid == 0:  # child: only async-signal-safe habits until exec
        try:
            os.close(r)
            os.setsid()
            for sig in RESET_SIGNALS:
                signal.signal(sig, signal.SIG_DFL)
            signal.pthread_sigmask(signal.SIG_SETMASK, [])
            null = os.open("/dev/null", os.O_RDONLY)
            os.dup2(null, 0)
            os.dup2(out, 1)
            os.dup2(out, 2)
            os.closerange(3, w)
            os.closerange(w + 1, 65536)
            os.chdir(svc.cwd)
            os.execvpe(svc.argv[0], svc.argv, env)
        except BaseException as exc:  # noqa: BLE001
            os.write(w, f"cannot run {svc.argv[0]}: {exc}".encode()[:4000])
        os._exit(127)
    os.close(w)
    os.close(out)
    with os.fdopen(r, "rb") as pipe:
        failure = pipe.read()
    if failure:
        os.waitpid(pid, 0)
        raise ServiceError(failure.decode(errors="replace"))
    return pid


def _exit_code(status: int) -> int:
    return os.waitstatus_to_exitcode(status)


class Supervisor:
    def __init__(self, services_dir: str, log_dir: str, socket_path: str = SOCKET) -> None:
        self.socket_path = socket_path
        self.services_dir = services_dir
        self.log_dir = log_dir
        self.services: dict[str, Service] = {}
        self.by_pid: dict[int, Service] = {}
        self.sel = selectors.DefaultSelector()
        self.stopping_all = False
        self.terminate = 0  # the signal that asked the site to end
        self.commands: dict[
            str, Callable[[str, socket.socket], dict[str, Any] | list[Any] | None]
        ] = {
            "start": self.cmd_start,
            "stop": self.cmd_stop,
            "restart": self.cmd_restart,
            "status": self.cmd_status,
            "list": self.cmd_list,
        }

    # -- loop ------------------------------------------------------------------------------

    def run(self, internal: list[Service]) -> int:
        wake_r, wake_w = socket.socketpair()
        for s in (wake_r, wake_w):
            s.setblocking(False)
        signal.set_wakeup_fd(wake_w.fileno(), warn_on_full_buffer=False)
        signal.signal(signal.SIGCHLD, lambda *_: None)
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self._on_terminate)
        self.sel.register(wake_r, selectors.EVENT_READ, self._drain)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.socket_path)
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        listener.bind(self.socket_path)
        os.chmod(self.socket_path, 0o600)
        listener.listen(64)
        listener.setblocking(False)
        self.sel.register(listener, selectors.EVENT_READ, self._accept)
        for svc in internal:
            self.services[svc.name] = svc
            self._start(svc)
        while True:
            try:
                if self.terminate and not self.stopping_all:
                    self._stop_all()
                if self.stopping_all and not self.by_pid:
                    log("every service stopped; the site ends")
                    return 0
                for key, _events in self.sel.select(self._timeout()):
                    key.data(key.fileobj)
                self._reap()
                self._timers()
            except Exception:  # PID 1 must not die of a bug in one request
                log("supervisor error:\n" + traceback.format_exc())
                time.sleep(0.1)

    def _timeout(self) -> float:
        deadlines = [s.deadline for s in self.services.values() if s.deadline is not None]
        if not deadlines:
            return 5.0
        return max(0.0, min(deadlines) - time.monotonic())

    def _drain(self, sock: socket.socket) -> None:
        with contextlib.suppress(BlockingIOError):
            while sock.recv(512):
                pass

    def _on_terminate(self, signum: int, frame: object) -> None:
        self.terminate = signum  # acted on by the loop, never inside the handler

    def _stop_all(self) -> None:
        log(f"signal {self.terminate}: stopping every service")
        self.stopping_all = True
        deadline = time.monotonic() + SHUTDOWN_GRACE
        for svc in self.services.values():
            if svc.pid is not None:
                self._signal(svc, signal.SIGTERM)
                svc.state, svc.deadline = "stopping", deadline
            else:
                svc.state, svc.deadline = "stopped", None

    def _signal(self, svc: Service, sig: int) -> None:
        if svc.pid is not None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(svc.pid, sig)
            with contextlib.suppress(ProcessLookupError):
                os.kill(svc.pid, sig)

    def _reap(self) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            svc = self.by_pid.pop(pid, None)
            if svc is not None:
                self._exited(svc, pid, _exit_code(status))

    def _exited(self, svc: Service, pid: int, code: int) -> None:
        if pid > 1:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signal.SIGKILL)  # what the service left in its session
        svc.pid, svc.last_exit = None, code
        self._note(svc, f"exited with {code}")
        if svc.state == "stopping" or self.stopping_all:
            svc.state, svc.deadline = "stopped", None
            waiters, svc.waiters = svc.waiters, []
            wants_start = [c for c, kind in waiters if kind in ("start", "restart")]
            if wants_start and not self.stopping_all:
                self._answer_start(svc.name, wants_start)
            for conn, kind in waiters:
                if kind == "stop":
                    self._reply(conn, {"ok": True, "result": svc.status()})
            return
        svc.restarts += 1
        if time.monotonic() - svc.started >= STABLE_AFTER:
            svc.backoff = BACKOFF_MIN
        svc.state, svc.deadline = "backoff", time.monotonic() + svc.backoff
        self._note(svc, f"exited unexpectedly; starting it again in {svc.backoff:g}s")
        svc.backoff = min(svc.backoff * 2, BACKOFF_MAX)

    def _timers(self) -> None:
        now = time.monotonic()
        for svc in list(self.services.values()):
            if svc.deadline is None or svc.deadline > now:
                continue
            if svc.state == "stopping":
                self._note(svc, "did not stop in time: SIGKILL")
                self._signal(svc, signal.SIGKILL)
                svc.deadline = None
            elif svc.state == "backoff":
                svc.deadline = None
                if not svc.internal:
                    with contextlib.suppress(ServiceError):  # keep the last good definition
                        fresh = load_definition(self.services_dir, svc.name, self.log_dir)
                        svc.argv, svc.env, svc.cwd = fresh.argv, fresh.env, fresh.cwd
                try:
                    self._start(svc)
                except ServiceError as exc:
                    self._note(svc, str(exc))
                    svc.state, svc.deadline = "backoff", now + svc.backoff
                    svc.backoff = min(svc.backoff * 2, BACKOFF_MAX)

    def _start(self, svc: Service) -> None:
        pid = spawn(svc)
        svc.pid, svc.state, svc.started, svc.deadline = pid, "running", time.monotonic(), None
        self.by_pid[pid] = svc

    def _note(self, svc: Service, text: str) -> None:
        if svc.log_path is None:
            log(f"{svc.name} {text}")
            return
        line = f"--- {time.strftime('%Y-%m-%d %H:%M:%S')} ikelab-service: {svc.name} {text}\n"
        try:
            with open(svc.log_path, "a") as f:
                f.write(line)
        except OSError:
            log(line.strip())

    # -- clients ---------------------------------------------------------------------------

    def _accept(self, listener: socket.socket) -> None:
        with contextlib.suppress(BlockingIOError):
            conn, _address = listener.accept()
            conn.setblocking(False)
            self.sel.register(conn, selectors.EVENT_READ, self._make_reader(bytearray()))

    def _make_reader(self, buf: bytearray) -> Callable[[socket.socket], None]:
        def read(conn: socket.socket) -> None:
            try:
                data = conn.recv(4096)
            except BlockingIOError:
                return
            except OSError:
                data = b""
            if not data:
                self.sel.unregister(conn)
                conn.close()
                return
            buf.extend(data)
            if b"\n" not in buf and len(buf) < MAX_REQUEST:
                return
            self.sel.unregister(conn)
            self._request(conn, bytes(buf).split(b"\n", 1)[0])

        return read

    def _request(self, conn: socket.socket, line: bytes) -> None:
        try:
            req = json.loads(line)
            cmd, name = req.get("cmd"), req.get("name", "")
            handler = self.commands.get(cmd) if isinstance(cmd, str) else None
            if handler is None:
                raise ServiceError(f"unknown command {cmd!r} (one of {', '.join(self.commands)})")
            if cmd != "list" and (not isinstance(name, str) or not NAME_RE.fullmatch(name)):
                raise ServiceError(f"bad service name {name!r}")
            if self.stopping_all:
                raise ServiceError("the site is shutting down")
            result = handler(name, conn)
        except (ServiceError, ValueError, AttributeError) as exc:
            self._reply(conn, {"ok": False, "error": str(exc)})
            return
        if result is not None:
            self._reply(conn, {"ok": True, "result": result})

    def _reply(self, conn: socket.socket, reply: dict[str, Any]) -> None:
        try:
            conn.setblocking(True)
            conn.settimeout(2.0)
            conn.sendall(json.dumps(reply).encode() + b"\n")
        except OSError as exc:
            if exc.errno not in (errno.EPIPE, errno.ECONNRESET):
                log(f"reply failed: {exc}")
        finally:
            conn.close()

    def _service(self, name: str) -> Service | None:
        svc = self.services.get(name)
        if svc is not None and svc.internal:
            raise ServiceError(f"{name} is run by the site init")
        return svc

    def _answer_start(self, name: str, conns: list[socket.socket]) -> None:
        try:
            svc = self._load(name)
            if svc.state != "running":
                self._start(svc)
            reply: dict[str, Any] = {"ok": True, "result": svc.status()}
        except ServiceError as exc:
            reply = {"ok": False, "error": str(exc)}
        for conn in conns:
            self._reply(conn, reply)

    def _load(self, name: str) -> Service:
        fresh = load_definition(self.services_dir, name, self.log_dir)
        svc = self.services.get(name)
        if svc is None:
            self.services[name] = svc = fresh
        elif svc.state != "running":
            svc.argv, svc.env, svc.cwd, svc.stop_timeout = (
                fresh.argv,
                fresh.env,
                fresh.cwd,
                fresh.stop_timeout,
            )
            svc.backoff, svc.deadline = BACKOFF_MIN, None
        return svc

    def cmd_start(self, name: str, conn: socket.socket) -> dict[str, Any] | None:
        svc = self._service(name)
        if svc is not None and svc.state == "stopping":
            svc.waiters.append((conn, "start"))
            return None
        svc = self._load(name)
        if svc.state != "running":
            self._start(svc)
        return svc.status()

    def cmd_stop(self, name: str, conn: socket.socket) -> dict[str, Any] | None:
        svc = self._service(name)
        if svc is None:
            return self.cmd_status(name, conn)
        if svc.state == "stopping":
            svc.waiters.append((conn, "stop"))
            return None
        if svc.pid is None:
            svc.state, svc.deadline = "stopped", None
            return svc.status()
        self._signal(svc, signal.SIGTERM)
        svc.state, svc.deadline = "stopping", time.monotonic() + svc.stop_timeout
        svc.waiters.append((conn, "stop"))
        return None

    def cmd_restart(self, name: str, conn: socket.socket) -> dict[str, Any] | None:
        svc = self._service(name)
        if svc is None or svc.pid is None:
            return self.cmd_start(name, conn)
        if svc.state == "running":
            self._signal(svc, signal.SIGTERM)
            svc.state, svc.deadline = "stopping", time.monotonic() + svc.stop_timeout
        svc.waiters.append((conn, "restart"))
        return None

    def cmd_status(self, name: str, conn: socket.socket) -> dict[str, Any]:
        svc = self.services.get(name)
        if svc is not None:
            return svc.status()
        return {
            "name": name,
            "running": False,
            "pid": None,
            "state": "stopped",
            "restarts": 0,
            "last_exit": None,
        }

    def cmd_list(self, name: str, conn: socket.socket) -> list[Any]:
        names = set(self.services)
        with contextlib.suppress(FileNotFoundError):
            names |= {f[:-5] for f in os.listdir(self.services_dir) if f.endswith(".json")}
        return [self.cmd_status(n, conn) for n in sorted(names)]
