"""Runs inside a UML guest (stdlib only): a UDP echo server, "initiate and probe", "only send"
and one control request.

``echo ADDR PORT``: answer every datagram to ADDR:PORT with itself.

``probe SRC DST PORT INTERVAL TIMEOUT KIND TARGET NAME [LABDIR]``: send a UDP probe (its sequence
number) from SRC to DST:PORT every INTERVAL seconds and, once ready, trigger the initiation over
the daemon's own control socket, so no command-line tool's start-up is in the timing:
KIND ``agent``: a JSON-lines ``up`` request to the agent's socket TARGET for connection NAME;
KIND ``vici``: a VICI ``initiate`` of CHILD_SA NAME on charon's socket TARGET (the lab's
stdlib-only client from LABDIR).  Prints one JSON line: ``t_up`` (just before the request),
``t_done`` (its answer), ``t_reply`` (first echo back), ``t_sent`` (when that probe left),
``gmtoff`` (the local time's offset, to read the daemons' log times), all ``time.time()``.

``send SRC DST PORT INTERVAL TIMEOUT DRAIN``: only send (no request to any daemon: a trap
policy brings the tunnel up), a probe every INTERVAL seconds until the first echo comes back
or TIMEOUT passes; then stop sending and listen DRAIN seconds more for echoes of earlier
probes.  Prints one JSON line: ``t_first`` (the first probe left), ``t_reply`` (first echo),
``seq`` (the probe that first came back), ``t_sent`` (when it left), ``t_reply_1`` (when the
first probe's echo came, if it did), ``order`` (the first probes echoed, in arrival order),
``probes`` (sent in all), ``answered`` (how many came back by the end), ``missing`` (the probes
that never came back, as ranges "1-57,60"), ``gmtoff``.  Held packets come back late (nothing
missing), dropped ones never.

``ctl KIND TARGET REQUEST [LABDIR]``: one request on a daemon's control socket, its answer as
one JSON line.  KIND ``agent``: REQUEST is the JSON request line (``{"cmd": "down", ...}``);
KIND ``vici``: REQUEST is ``{"command": C, "msg": {...}}``, with ``"event": E`` for a command
that answers with events (their list comes back as ``{"events": [...]}``).
"""

from __future__ import annotations

import json
import select
import socket
import sys
import threading
import time


def echo(addr: str, port: int) -> None:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind((addr, port))
    print("ready", flush=True)
    while True:
        data, peer = s.recvfrom(2048)
        s.sendto(data, peer)


def request(kind: str, target: str, req: dict, labdir: str, timeout: float = 60) -> dict:
    """One request on the agent's JSON-lines socket or on charon's VICI socket."""
    if kind == "agent":
        c = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        c.settimeout(timeout)
        try:
            c.connect(target)
            c.sendall((json.dumps(req) + "\n").encode())
            buf = b""
            while not buf.endswith(b"\n"):
                chunk = c.recv(65536)
                if not chunk:
                    break
                buf += chunk
        finally:
            c.close()
        return json.loads(buf or b"{}")
    if labdir not in sys.path:
        sys.path.insert(0, labdir)
    from ikelab_testing import vici

    with vici.Session(target, timeout) as s:
        if req.get("event"):
            return {"events": list(s.streamed(req["command"], req["event"], req.get("msg")))}
        return s.request(req["command"], req.get("msg"))


def _trigger(kind: str, target: str, name: str, labdir: str, out: dict) -> None:
    out["t_up"] = time.time()
    try:
        if kind == "agent":
            reply = request(kind, target, {"cmd": "up", "name": name, "timeout": 30}, labdir)
            out["ok"] = bool(reply.get("ok"))
        else:
            req = {"command": "initiate", "msg": {"child": name, "timeout": "30000"}}
            out["ok"] = request(kind, target, req, labdir).get("success") == "yes"
    except Exception as exc:  # reported, not raised: the probe still says what it saw
        out["ok"] = False
        out["error"] = f"{type(exc).__name__}: {exc}"
    out["t_done"] = time.time()


def probe(argv: list[str]) -> None:
    src, dst, port, interval, timeout, kind, target, name = argv[:8]
    labdir = argv[8] if len(argv) > 8 else ""
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind((src, 0))
    s.setblocking(False)
    out: dict = {"gmtoff": time.localtime().tm_gmtoff}
    sent: dict[int, float] = {}
    seq = 0
    step = float(interval)
    if kind == "vici":  # import before the clock starts
        sys.path.insert(0, labdir)
        from ikelab_testing import vici  # noqa: F401
    trigger = threading.Thread(target=_trigger, args=(kind, target, name, labdir, out))
    deadline = time.time() + float(timeout)
    next_send = time.time()
    trigger.start()
    while time.time() < deadline:
        now = time.time()
        if now >= next_send:
            seq += 1
            sent[seq] = now
            try:
                s.sendto(seq.to_bytes(4, "big"), (dst, int(port)))
            except OSError:
                pass  # no route/neighbour before the tunnel: expected
            next_send = now + step
        ready, _, _ = select.select([s], [], [], max(0.0, next_send - time.time()))
        if ready:
            try:
                data, _ = s.recvfrom(2048)
            except OSError:
                continue
            out["t_reply"] = time.time()
            got = int.from_bytes(data[:4], "big")
            out["seq"] = got
            out["t_sent"] = sent.get(got)
            break
    trigger.join(60)
    out["probes"] = seq
    print(json.dumps(out), flush=True)


def _ranges(numbers: list[int]) -> str:
    """Sorted [1, 2, 3, 7] -> "1-3,7"."""
    runs: list[list[int]] = []
    for n in numbers:
        if runs and n == runs[-1][1] + 1:
            runs[-1][1] = n
        else:
            runs.append([n, n])
    return ",".join(str(lo) if lo == hi else f"{lo}-{hi}" for lo, hi in runs)


def send(argv: list[str]) -> None:
    src, dst, port, interval, timeout, drain = argv[:6]
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind((src, 0))
    s.setblocking(False)
    out: dict = {"gmtoff": time.localtime().tm_gmtoff}
    sent: dict[int, float] = {}
    echoed: dict[int, float] = {}  # probe -> when its (first) echo came, in arrival order

    def receive() -> None:
        try:
            data, _ = s.recvfrom(2048)
        except OSError:
            return
        echoed.setdefault(int.from_bytes(data[:4], "big"), time.time())

    step = float(interval)
    seq = 0
    deadline = time.time() + float(timeout)
    next_send = time.time()
    while not echoed and time.time() < deadline:
        now = time.time()
        if now >= next_send:
            seq += 1
            sent[seq] = now
            try:
                s.sendto(seq.to_bytes(4, "big"), (dst, int(port)))
            except OSError:
                pass  # no route/neighbour yet: counted as sent, it never comes back
            next_send = now + step
        ready, _, _ = select.select([s], [], [], max(0.0, next_send - time.time()))
        if ready:
            receive()
    end = time.time() + float(drain) if echoed else 0.0
    while (left := end - time.time()) > 0:  # echoes of earlier probes still on their way
        if select.select([s], [], [], left)[0]:
            receive()
    out["t_first"] = sent.get(1)
    if echoed:
        first = next(iter(echoed))
        out.update(t_reply=echoed[first], seq=first, t_sent=sent.get(first))
    if 1 in echoed:
        out["t_reply_1"] = echoed[1]  # the echo of the very first probe
    out["order"] = list(echoed)[:12]
    out["probes"] = seq
    out["answered"] = len(set(echoed) & set(sent))
    out["missing"] = _ranges(sorted(set(sent) - set(echoed)))
    print(json.dumps(out), flush=True)


def ctl(argv: list[str]) -> None:
    kind, target, req = argv[:3]
    labdir = argv[3] if len(argv) > 3 else ""
    try:
        reply = request(kind, target, json.loads(req), labdir)
    except Exception as exc:
        reply = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
    print(json.dumps(reply), flush=True)


if __name__ == "__main__":
    if sys.argv[1] == "echo":
        echo(sys.argv[2], int(sys.argv[3]))
    else:
        {"probe": probe, "send": send, "ctl": ctl}[sys.argv[1]](sys.argv[2:])
