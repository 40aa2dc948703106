"""Command server inside a User-mode Linux guest (started by ``uml_init.sh``; stdlib only).

It listens on TCP in the guest's own ``mgmt`` network namespace (a point-to-point link to the
host's lab namespace), so no XFRM policy, route or firewall rule a test installs in the guest's
main namespace can cut it off, and the test's captures never see it.  The commands it runs live
in the main namespace.  One JSON request per connection, one JSON reply; every request carries
the guest's token (a random value in the host work directory, which only root can read).

Requests (``op``): ``ping``; ``run`` (argv, timeout, input, env, cwd) -> returncode, stdout,
stderr (base64), timed_out; ``spawn`` (argv, log, env, cwd) -> pid; ``poll`` (pid) ->
returncode or null; ``signal`` (pid, sig, group); ``put`` (path, data, mode).
"""

from __future__ import annotations

import base64
import ctypes
import hmac
import json
import os
import signal
import socket
import subprocess
import sys
import threading

CLONE_NEWNET = 0x40000000
PORT = 7000
ENV = {
    "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "HOME": "/root",
    "LANG": "C.UTF-8",
    "SHELL": "/bin/sh",
}

_spawned: dict[int, subprocess.Popen[bytes]] = {}
_lock = threading.Lock()


def _setns(path: str) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    fd = os.open(path, os.O_RDONLY)
    try:
        if libc.setns(fd, CLONE_NEWNET) != 0:
            err = ctypes.get_errno()
            raise OSError(err, os.strerror(err), path)
    finally:
        os.close(fd)


def _b64(data: bytes | None) -> str:
    return base64.b64encode(data or b"").decode()


def _env(extra: dict[str, str] | None) -> dict[str, str]:
    env = dict(ENV)
    env.update(extra or {})
    return env


def _run(req: dict) -> dict:
    data = base64.b64decode(req["input"]) if req.get("input") is not None else None
    proc = subprocess.Popen(
        req["argv"],
        stdin=subprocess.PIPE if data is not None else subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=_env(req.get("env")),
        cwd=req.get("cwd") or "/",
        start_new_session=True,
    )
    timed_out = False
    try:
        out, err = proc.communicate(data, timeout=req.get("timeout"))
    except subprocess.TimeoutExpired:
        timed_out = True
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        out, err = proc.communicate()
    return {
        "returncode": proc.returncode,
        "stdout": _b64(out),
        "stderr": _b64(err),
        "timed_out": timed_out,
    }


def _spawn(req: dict) -> dict:
    log = req.get("log") or "/dev/null"
    with open(log, "ab") as f:
        proc = subprocess.Popen(
            req["argv"],
            stdin=subprocess.DEVNULL,
            stdout=f,
            stderr=subprocess.STDOUT,
            env=_env(req.get("env")),
            cwd=req.get("cwd") or "/",
            start_new_session=True,
        )
    with _lock:
        _spawned[proc.pid] = proc
    return {"pid": proc.pid}


def _poll(req: dict) -> dict:
    with _lock:
        proc = _spawned.get(req["pid"])
    if proc is None:
        return {"error": f"no spawned process {req['pid']}"}
    return {"returncode": proc.poll()}


def _signal(req: dict) -> dict:
    pid, sig = int(req["pid"]), int(req["sig"])
    try:
        if req.get("group"):
            os.killpg(pid, sig)
        else:
            os.kill(pid, sig)
    except ProcessLookupError:
        return {"gone": True}
    return {"gone": False}


def _put(req: dict) -> dict:
    path = req["path"]
    os.makedirs(os.path.dirname(path) or "/", exist_ok=True)
    tmp = f"{path}.ikelab-tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, int(req.get("mode", 0o644)))
    with os.fdopen(fd, "wb") as f:
        f.write(base64.b64decode(req["data"]))
    os.chmod(tmp, int(req.get("mode", 0o644)))
    os.replace(tmp, path)
    return {}


OPS = {
    "ping": lambda req: {"pong": True},
    "run": _run,
    "spawn": _spawn,
    "poll": _poll,
    "signal": _signal,
    "put": _put,
}


def _recv_line(conn: socket.socket) -> bytes:
    chunks = []
    while True:
        chunk = conn.recv(65536)
        if not chunk:
            break
        chunks.append(chunk)
        if chunk.endswith(b"\n"):
            break
    return b"".join(chunks)


def _serve(conn: socket.socket, token: str) -> None:
    with conn:
        try:
            req = json.loads(_recv_line(conn))
            if not hmac.compare_digest(str(req.get("token", "")), token):
                reply = {"error": "bad token"}
            else:
                op = OPS.get(req.get("op", ""))
                reply = op(req) if op else {"error": f"unknown op {req.get('op')!r}"}
        except Exception as exc:  # reported to the host, never fatal for the server
            reply = {"error": f"{type(exc).__name__}: {exc}"}
        conn.sendall(json.dumps(reply).encode() + b"\n")


def main() -> None:
    directory = sys.argv[1]
    with open(os.path.join(directory, "token")) as f:
        token = f.read().strip()
    with open(os.path.join(directory, "mgmt_address")) as f:
        address = f.read().strip()
    # the listening socket belongs to the mgmt namespace; this process (and every command it
    # starts) stays in the main one
    own = os.open("/proc/self/ns/net", os.O_RDONLY)
    _setns("/run/netns/mgmt")
    srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind((address, PORT))
    srv.listen(64)
    _setns(f"/proc/self/fd/{own}")
    os.close(own)
    print(f"ikelab-guest: listening on {address}:{PORT}", flush=True)
    while True:
        conn, _ = srv.accept()
        threading.Thread(target=_serve, args=(conn, token), daemon=True).start()


if __name__ == "__main__":
    main()
