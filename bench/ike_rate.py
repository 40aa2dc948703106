"""IKE load generator: many initiators on the agent's own engine against one responder, in
IKEv2 (``--version 2``: IKE_SA_INIT + IKE_AUTH) or IKEv1 (``--version 1``: Main Mode + Quick Mode).

Each of ``--conns`` connections brings an IKE SA (with one Child SA) up, deletes it once it is
established and starts again, until ``--duration`` seconds have passed. The responder's CPU time
(user + system, from /proc/PID/stat) over the run gives the number we compare: IKE SAs
established per CPU-second of the responder. Run it inside the initiator's network namespace:

    python bench/ike_rate.py --local 198.18.0.1 --remote 198.18.0.2 --pid PID --duration 10 --psk=S
    python bench/ike_rate.py ... --auth pubkey --cert load.pem --key load.key --cacert ca.pem

With ``--auth pubkey`` every connection shares the one client certificate, key and identity.

It prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import selectors
import socket
import time

from ikeagent.config.schema import parse_config
from ikeagent.engine.core import Engine
from ikeagent.engine.events import ChildUp, IkeSaDown, IkeSaUp

MARKER = b"\x00\x00\x00\x00"


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks  # utime, stime


def build_config(args: argparse.Namespace) -> dict:
    if args.auth == "pubkey":
        local = {"auth": "pubkey", "id": args.local_id, "certs": [args.cert]}
        remote = {"auth": "pubkey", "id": args.remote_id, "cacerts": [args.cacert]}
        secrets = {"private-load": {"file": args.key}}
    else:
        local = {"auth": "psk", "id": args.local_id}
        remote = {"auth": "psk", "id": args.remote_id}
        secrets = {"ike-load": {"id": [args.local_id, args.remote_id], "secret": args.psk}}
    conns = {}
    for i in range(args.conns):
        conns[f"load-{i}"] = {
            "version": args.version,
            "local_addrs": [args.local],
            "remote_addrs": [args.remote],
            "proposals": [args.proposal],
            "local": local,
            "remote": remote,
            "rekey_time": 0,
            "children": {
                "net": {
                    "local_ts": [args.local_ts],
                    "remote_ts": [args.remote_ts],
                    "esp_proposals": [args.esp],
                    "start_action": "none",
                    "rekey_time": 0,
                }
            },
        }
    return {
        "agent": {"retransmit_timeout": 2.0, "retransmit_tries": 3, "cookie_threshold": 1 << 30},
        "connections": conns,
        "secrets": secrets,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--local", required=True)
    ap.add_argument("--remote", required=True)
    ap.add_argument("--pid", type=int, required=True, help="responder process to measure")
    ap.add_argument("--duration", type=float, default=10.0)
    ap.add_argument("--conns", type=int, default=16)
    ap.add_argument("--proposal", default="aes128-sha256-x25519")
    ap.add_argument("--esp", default="aes128gcm16")
    ap.add_argument("--auth", choices=("psk", "pubkey"), default="psk")
    ap.add_argument("--psk", help="the shared key (--auth psk)")
    ap.add_argument("--cert", help="our certificate, PEM (--auth pubkey)")
    ap.add_argument("--key", help="its private key file, mode 0600 (--auth pubkey)")
    ap.add_argument("--cacert", help="the CA the responder's certificate must chain to")
    ap.add_argument("--cpus", help="comma list of CPUs to run on (default: any)")
    ap.add_argument("--local-id", default="load.example")
    ap.add_argument("--remote-id", default="responder.example")
    ap.add_argument("--local-ts", default="10.8.0.0/24")
    ap.add_argument("--remote-ts", default="10.9.0.0/24")
    ap.add_argument("--version", type=int, choices=(1, 2), default=2)
    args = ap.parse_args()
    if args.auth == "psk" and not args.psk:
        ap.error("--auth psk needs --psk")
    if args.auth == "pubkey" and not (args.cert and args.key and args.cacert):
        ap.error("--auth pubkey needs --cert, --key and --cacert")
    if args.cpus:
        os.sched_setaffinity(0, {int(c) for c in args.cpus.split(",")})
    if args.version == 1:
        # every load connection has the same identity: INITIAL-CONTACT would make the responder
        # drop the others' SAs
        from ikeagent.engine.ikev1 import aggressive_mode, main_mode

        main_mode.initial_contact = aggressive_mode.initial_contact = lambda eng, sa: []

    cfg = parse_config(build_config(args))
    start = time.monotonic()
    # the wall clock dates the certificates
    engine = Engine(cfg, random.SystemRandom(), start, force_encap=True, wall_clock=time.time)
    engine.is_first_contact = lambda sa: False  # type: ignore[method-assign]  # no INITIAL_CONTACT storms
    socks = {}
    sel = selectors.DefaultSelector()
    for port in (500, 4500):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        s.bind((args.local, port))
        s.setblocking(False)
        socks[port] = s
        sel.register(s, selectors.EVENT_READ, port)

    established = 0
    failed = 0
    latencies: list[float] = []
    began: dict[str, float] = {}
    cpu0 = cpu_seconds(args.pid)
    t_end = start + args.duration
    now = time.monotonic()
    for name in cfg.connections:
        began[name] = now
        engine.initiate(name, now)

    def flush(now: float) -> None:
        nonlocal established, failed
        for d in engine.datagrams_to_send():
            port = d.local[1]
            data = MARKER + d.data if port == 4500 else d.data
            try:
                socks[port].sendto(data, d.remote)
            except OSError:
                pass
        while (ev := engine.next_event()) is not None:
            # a tunnel counts once it has its IKE SA and its pair of ESP SAs: IKE_AUTH brings
            # both in IKEv2; IKEv1 needs the Quick Mode after Phase 1
            done = ev.name if isinstance(ev, IkeSaUp) and args.version == 2 else None
            if isinstance(ev, ChildUp) and args.version == 1:
                done = ev.ike_name
            if done is not None:
                established += 1
                latencies.append(now - began.get(done, now))
                engine.terminate(done, now)
            elif isinstance(ev, IkeSaDown):
                if ev.reason != "terminated by command":
                    failed += 1
                if now < t_end:
                    began[ev.name] = now
                    engine.initiate(ev.name, now)

    while True:
        now = time.monotonic()
        flush(now)
        if now >= t_end and not engine.sas and not engine.v1.sas:
            break
        if now >= t_end + 5:
            break
        timer = engine.get_timer()
        timeout = 0.05 if timer is None else max(0.0, min(timer - now, 0.05))
        for key, _ in sel.select(timeout):
            s = key.fileobj
            port = key.data
            for _ in range(64):
                try:
                    data, addr = s.recvfrom(65535)
                except BlockingIOError:
                    break
                if port == 4500:
                    if data[:4] != MARKER:
                        continue
                    data = data[4:]
                engine.receive_datagram(data, (args.local, port), addr, time.monotonic())
        now = time.monotonic()
        timer = engine.get_timer()
        if timer is not None and timer <= now:
            engine.handle_timer(now)
    elapsed = min(time.monotonic(), t_end) - start
    cpu = cpu_seconds(args.pid) - cpu0
    own = os.times()
    latencies.sort()
    print(
        json.dumps(
            {
                "established": established,
                "failed": failed,
                "seconds": round(elapsed, 3),
                "responder_cpu_seconds": round(cpu, 3),
                "load_cpu_seconds": round(own.user + own.system, 3),
                "sas_per_cpu_second": round(established / cpu, 1) if cpu > 0 else None,
                "sas_per_second": round(established / elapsed, 1) if elapsed > 0 else None,
                "median_setup_ms": round(1000 * latencies[len(latencies) // 2], 2)
                if latencies
                else None,
                "drops": engine.stats(),
            }
        )
    )


if __name__ == "__main__":
    main()
