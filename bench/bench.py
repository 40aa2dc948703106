"""``bench/run``: measure each row and print a table; JSON goes to bench/results/.

Rows are (key, label, factory for gwA, factory for gwB); any ``PeerFactory`` pair can be a row
(e.g. ``charon_peer`` on one side and ``agent_peer`` on the other).  ``DEFAULT_ROWS`` are the ones
measured without ``--rows``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

from ike_bench import (
    AUTH_KEY_TYPES,
    AUTH_TEXT,
    ESP,
    PROPOSAL,
    make_credentials,
    measure_rate,
    rate_table,
    ratios,
)
from kernel_esp import measure_kernel_esp
from kernel_esp_report import ratios as kernel_esp_ratios
from kernel_esp_report import report as kernel_esp_report
from kernel_esp_report import same_sas
from throughput import ThroughputResult, measure, plain_peer, responder_only
from trap_esp import SEND_INTERVAL, measure_trap
from trap_esp_report import ratios as trap_ratios
from trap_esp_report import report as trap_report

from ikelab_testing.peers import PeerFactory, agent_peer, charon_peer

RESULTS = Path(__file__).resolve().parent / "results"

ROWS: list[tuple[str, str, PeerFactory, PeerFactory]] = [
    ("plain", "plain routing (no IPsec)", plain_peer, responder_only),
    ("charon", "charon <-> charon (kernel-libipsec)", charon_peer, charon_peer),
    ("agent", "ikeagent <-> ikeagent (userspace)", agent_peer, agent_peer),
]
DEFAULT_ROWS = ("plain", "charon", "agent")


def table(results: list[ThroughputResult]) -> str:
    head = ("row", "Mbit/s", "retransmits", "setup ms", "seconds", "note")
    lines = [head]
    for r in results:
        setup = "-" if r.setup_ms is None else f"{r.setup_ms:.0f}"
        lines.append(
            (
                r.label,
                f"{r.mbit_s:.0f}" if not r.error else "-",
                str(r.retransmits),
                setup,
                f"{r.seconds:g}",
                r.error,
            )
        )
    widths = [max(len(line[i]) for line in lines) for i in range(len(head))]
    out = []
    for n, line in enumerate(lines):
        out.append("  ".join(cell.ljust(widths[i]) for i, cell in enumerate(line)).rstrip())
        if n == 0:
            out.append("  ".join("-" * w for w in widths))
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="ikelab.ipsec benchmarks")
    keys = [key for key, *_ in ROWS]
    parser.add_argument(
        "--rows",
        default=",".join(DEFAULT_ROWS),
        help=f"comma list of {keys}, 'all' or 'none' (only the IKE SA rate)",
    )
    parser.add_argument("--seconds", type=float, default=8.0, help="iperf3 duration per row")
    parser.add_argument(
        "--ike-seconds", type=float, default=8.0, help="load duration per IKE responder (0: skip)"
    )
    parser.add_argument(
        "--repeat", type=int, default=1, help="runs per row; the table shows the median"
    )
    parser.add_argument(
        "--ike-versions",
        default="2,1",
        help="IKE versions of the SA-rate rows, comma list of 1 and 2 (default: both)",
    )
    parser.add_argument(
        "--ike-auth",
        default="psk",
        help=f"authentication of the SA-rate rows, comma list of {list(AUTH_KEY_TYPES)} or 'all'"
        " (default: psk; rsa: RSA-2048, ecdsa: ECDSA P-256 certificates)",
    )
    parser.add_argument(
        "--kernel-esp",
        action="store_true",
        help="also measure kernel ESP in two UML guests (plain / agent xfrm / charon"
        " kernel-netlink: iperf3 TCP+UDP and set-up to first packet); about 2 min, off by default",
    )
    parser.add_argument(
        "--kernel-esp-reps",
        type=int,
        default=5,
        help="initiations per daemon for the set-up latency (median; default 5)",
    )
    parser.add_argument(
        "--trap",
        action="store_true",
        help="also measure on-demand tunnels in two UML guests (agent xfrm vs charon"
        " kernel-netlink, start_action trap: first packet through the trap with no SA at all"
        " and with the IKE SA kept); about 5 min, off by default",
    )
    parser.add_argument(
        "--trap-reps",
        type=int,
        default=5,
        help="cold and warm runs per daemon for --trap (median; one more first as warm-up;"
        " default 5)",
    )
    args = parser.parse_args(argv)
    wanted = [k.strip() for k in args.rows.split(",") if k.strip()]
    if wanted == ["all"]:
        wanted = keys
    if wanted == ["none"]:
        wanted = []
    unknown = set(wanted) - set(keys)
    if unknown:
        parser.error(f"unknown rows: {sorted(unknown)}")
    auths = [a.strip() for a in args.ike_auth.split(",") if a.strip()]
    if auths == ["all"]:
        auths = list(AUTH_KEY_TYPES)
    unknown = set(auths) - set(AUTH_KEY_TYPES)
    if unknown:
        parser.error(f"unknown --ike-auth: {sorted(unknown)}")

    results = []
    for key, label, factory_a, factory_b in ROWS:
        if key not in wanted:
            continue
        print(f"measuring: {label} ...", file=sys.stderr, flush=True)
        runs = [
            measure(label, factory_a, factory_b, seconds=args.seconds) for _ in range(args.repeat)
        ]
        runs.sort(key=lambda r: r.mbit_s)
        results.append(runs[len(runs) // 2])

    rates = []
    versions = [int(v) for v in args.ike_versions.split(",") if v.strip()]
    if args.ike_seconds > 0:
        # one throw-away PKI per certificate kind: both responders get the very same files
        with tempfile.TemporaryDirectory(prefix="ikebench-pki-") as pki_dir:
            creds = {
                auth: make_credentials(auth, Path(pki_dir, auth))
                for auth in auths
                if AUTH_KEY_TYPES[auth] is not None
            }
            for auth in auths:
                for version in versions:
                    for kind in ("agent", "charon"):
                        print(
                            f"measuring: IKEv{version} {auth} SAs per CPU-second,"
                            f" {kind} responder ...",
                            file=sys.stderr,
                            flush=True,
                        )
                        runs = [
                            measure_rate(
                                kind,
                                args.ike_seconds,
                                version=version,
                                auth=auth,
                                creds=creds.get(auth),
                            )
                            for _ in range(args.repeat)
                        ]
                        runs.sort(key=lambda r: r.sas_per_cpu_second or 0.0)
                        rates.append(runs[len(runs) // 2])

    kernel_esp = []
    if args.kernel_esp:
        print("measuring: kernel ESP in UML guests ...", file=sys.stderr, flush=True)
        kernel_esp = measure_kernel_esp(
            seconds=args.seconds, repeat=args.repeat, reps=args.kernel_esp_reps
        )

    trap = []
    if args.trap:
        print("measuring: on-demand tunnels in UML guests ...", file=sys.stderr, flush=True)
        trap = measure_trap(reps=args.trap_reps)

    if results or not (kernel_esp or trap):
        print(
            "\nThroughput: iperf3 TCP hostA -> hostB, IKEv2 aes256gcm16-prfsha256-x25519 / ESP"
            " aes256gcm16"
        )
        print(table(results))
        print(
            "(setup ms: from the initiate command until both sides show the CHILD_SA; for the"
            " agent it includes starting ikectl processes to poll, so it is not a protocol timing)"
        )
    by_label = {r.label: r for r in results}
    agent_tp = by_label.get("ikeagent <-> ikeagent (userspace)")
    charon_tp = by_label.get("charon <-> charon (kernel-libipsec)")
    if agent_tp and charon_tp and charon_tp.mbit_s and not (agent_tp.error or charon_tp.error):
        print(f"throughput ratio agent/charon: {agent_tp.mbit_s / charon_tp.mbit_s:.2f}")
    rate_ratios = ratios(rates)
    if rates:
        print(
            f"\nIKE SAs per CPU-second of the responder ({PROPOSAL} / ESP {ESP}, one CHILD_SA"
            " each; IKEv1: Main Mode + Quick Mode; responder pinned to one CPU; auth: "
            + ", ".join(f"{a} = {AUTH_TEXT[a]}" for a in auths)
            + ("" if auths == ["psk"] else ", both from one RSA-2048 CA")
            + ")"
        )
        print(rate_table(rates))
        for r in rate_ratios:
            if r["ratio"] is not None:
                print(
                    f"IKEv{r['version']} {r['auth']} SAs/CPU-s ratio agent/charon: {r['ratio']:.2f}"
                )
    if kernel_esp:
        print("\n" + kernel_esp_report(kernel_esp, args.seconds, args.kernel_esp_reps))
    if trap:
        print("\n" + trap_report(trap, args.trap_reps))
    RESULTS.mkdir(exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    path = RESULTS / f"throughput-{stamp}.json"
    doc = {
        "kind": "throughput",
        "time": stamp,
        "machine": {"kernel": platform.release(), "cpus": _cpus()},
        "results": [r.as_dict() for r in results],
        "ike_rate": [dataclasses.asdict(r) for r in rates],
        "ike_rate_ratios": rate_ratios,
    }
    if kernel_esp:
        doc["kernel_esp"] = {
            "seconds": args.seconds,
            "repeat": args.repeat,
            "setup_reps": args.kernel_esp_reps,
            "phases": [p.as_dict() for p in kernel_esp],
            "ratios": kernel_esp_ratios(kernel_esp),
            "same_sas": same_sas(kernel_esp),
        }
    if trap:
        doc["trap"] = {
            "reps": args.trap_reps,
            "send_interval_s": SEND_INTERVAL,
            "phases": [p.as_dict() for p in trap],
            "ratios": trap_ratios(trap),
        }
    path.write_text(json.dumps(doc, indent=2) + "\n")
    print(f"\nresults: {path.relative_to(RESULTS.parent.parent)}")
    failed = any(r.error for r in results) or any(r.error for r in rates)
    failed = failed or any(p.error for p in kernel_esp) or any(p.error for p in trap)
    return 1 if failed else 0


def _cpus() -> int:
    import os

    return len(os.sched_getaffinity(0))


if __name__ == "__main__":
    sys.exit(main())
