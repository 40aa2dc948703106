"""Runs inside a UML guest (stdlib only): a UDP echo server, or "initiate and probe".

``echo ADDR PORT``: answer every datagram to ADDR:PORT with itself.

``probe SRC DST PORT INTERVAL TIMEOUT KIND TARGET NAME [LABDIR]``: send a UDP probe (its sequence
number) from SRC to DST:PORT every INTERVAL seconds and, once ready, trigger the initiation over
the daemon's own control socket, so no command-line tool's start-up is in the timing:
KIND ``agent``: a JSON-lines ``up`` request to the agent's socket TARGET for connection NAME;
KIND ``vici``: a VICI ``initiate`` of CHILD_SA NAME on charon's socket TARGET (the lab's
stdlib-only client from LABDIR).  Prints one JSON line: ``t_up`` (just before the request),
``t_done`` (its answer), ``t_reply`` (first echo back), ``t_sent`` (when that probe left),
``gmtoff`` (the local time's offset, to read the daemons' log times), all ``time.time()``.
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


def _trigger(kind: str, target: str, name: str, labdir: str, out: dict) -> None:
    out["t_up"] = time.time()
    try:
        if kind == "agent":
            c = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            c.settimeout(60)
            c.connect(target)
            c.sendall((json.dumps({"cmd": "up", "name": name, "timeout": 30}) + "\n").encode())
            buf = b""
            while not buf.endswith(b"\n"):
                chunk = c.recv(65536)
                if not chunk:
                    break
                buf += chunk
            c.close()
            out["ok"] = bool(json.loads(buf or b"{}").get("ok"))
        else:
            sys.path.insert(0, labdir)
            from ikelab_testing import vici

            with vici.Session(target, 60) as s:
                reply = s.request("initiate", {"child": name, "timeout": "30000"})
            out["ok"] = reply.get("success") == "yes"
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


if __name__ == "__main__":
    if sys.argv[1] == "echo":
        echo(sys.argv[2], int(sys.argv[3]))
    else:
        probe(sys.argv[2:])
