"""Tables, ratios and the SA comparison of the kernel ESP benchmark (``kernel_esp``)."""

from __future__ import annotations

import json
import sys
from typing import Any

from kernel_esp import ESP, IKE, PROBE_INTERVAL, Phase, measure_kernel_esp


def _fmt(v: float | None, spec: str = ".0f") -> str:
    return "-" if v is None else format(v, spec)


def _table(head: tuple[str, ...], rows: list[tuple[str, ...]]) -> str:
    lines = [head, *rows]
    widths = [max(len(line[i]) for line in lines) for i in range(len(head))]
    out = []
    for n, line in enumerate(lines):
        out.append("  ".join(c.ljust(widths[i]) for i, c in enumerate(line)).rstrip())
        if n == 0:
            out.append("  ".join("-" * w for w in widths))
    return "\n".join(out)


def throughput_table(phases: list[Phase]) -> str:
    base = phases[0].median("tcp") if phases else None
    rows = []
    for p in phases:
        tcp, udp = p.median("tcp"), p.median("udp")
        ratio = tcp.mbit_s / base.mbit_s if tcp and base and base.mbit_s else None
        rows.append(
            (
                p.label,
                _fmt(tcp.mbit_s if tcp else None),
                _fmt(ratio, ".2f"),
                str(tcp.retransmits) if tcp else "-",
                _fmt(udp.mbit_s if udp else None),
                _fmt(udp.lost_percent if udp else None, ".1f"),
                p.error or next((r.error for r in p.tcp + p.udp if r.error), ""),
            )
        )
    head = ("row", "TCP Mbit/s", "/plain", "retrans", "UDP Mbit/s", "UDP loss %", "note")
    return _table(head, rows)


def setup_table(phases: list[Phase]) -> str:
    rows = []
    for p in phases[1:]:
        errors = [s.error for s in p.setups if s.error]
        rows.append(
            (
                p.label,
                str(len(p.setups) - len(errors)),
                _fmt(p.setup_median("up_to_reply")),
                _fmt(p.setup_median("up_to_log")),
                _fmt(p.setup_median("log_to_reply"), ".1f"),
                _fmt(p.setup_median("kernel_to_reply"), ".1f"),
                p.error or (errors[0] if errors else ""),
            )
        )
    head = (
        "initiator",
        "n",
        "up->reply ms",
        "up->log ms",
        "log->reply ms",
        "kernel->reply ms",
        "note",
    )
    return _table(head, rows)


def ratios(phases: list[Phase]) -> dict[str, float | None]:
    by = {p.key: p for p in phases}
    out: dict[str, float | None] = {}
    for mode in ("tcp", "udp"):
        ag, ch = by["agent"].median(mode), by["charon"].median(mode)
        out[f"{mode}_agent_over_charon"] = (
            ag.mbit_s / ch.mbit_s if ag and ch and ch.mbit_s else None
        )
    for name in ("up_to_reply", "log_to_reply", "kernel_to_reply"):
        ag, ch = by["agent"].setup_median(name), by["charon"].setup_median(name)
        out[f"{name}_agent_over_charon"] = ag / ch if ag and ch else None
    return out


def same_sas(phases: list[Phase]) -> bool | None:
    """Whether the agent's SAs match charon's in everything the data path uses."""
    by = {p.key: p for p in phases}
    keys = ("guest", "dir", "mode", "aead", "enc", "auth", "encap", "esn", "flags")
    if not by["agent"].sas or not by["charon"].sas:
        return None

    def norm(sas: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
        # the replay window only matters inbound (RFC 4303 3.4.3: the receiver checks it);
        # charon gives its outbound SAs 0
        return [
            (*(s[k] for k in keys), s["replay_window"] if s["dir"] == "in" else None) for s in sas
        ]

    return norm(by["agent"].sas) == norm(by["charon"].sas)


def report(phases: list[Phase], seconds: float, reps: int) -> str:
    lines = [
        f"Kernel ESP in UML guests: iperf3 10.1.0.1 -> 10.2.0.1, {seconds:g} s per run; IKEv2"
        f" {IKE} PSK / ESP {ESP}",
        throughput_table(phases),
        "",
        f"Set-up to first packet (initiator a, median of {reps}; UDP probe every"
        f" {PROBE_INTERVAL * 1000:g} ms; up: the request on the daemon's control socket, log: the"
        " initiator's installed/established line, kernel: the last XFRM add it announced)",
        setup_table(phases),
    ]
    r = ratios(phases)
    parts = [f"{k} {v:.2f}" for k, v in r.items() if v is not None]
    if parts:
        lines.append("ratios agent/charon: " + ", ".join(parts))
    same = same_sas(phases)
    if same is not None:
        lines.append(
            "SAs in the kernels (algorithm, bits, mode, encap, inbound replay window, ESN, flags): "
            + ("the same for agent and charon" if same else "DIFFER between agent and charon")
        )
        for p in phases[1:]:
            for s in p.sas:
                if s["guest"] == "a":
                    lines.append(
                        f"  {p.key} a {s['dir']}: {s['mode']} aead={s['aead']} encap={s['encap']}"
                        f" replay-window={s['replay_window']} esn={s['esn']} flags={s['flags'] or '-'}"
                    )
    return "\n".join(lines)


if (
    __name__ == "__main__"
):  # a quick look without bench.py: python kernel_esp_report.py [SECONDS REPS]
    secs = float(sys.argv[1]) if len(sys.argv) > 1 else 2.0
    n = int(sys.argv[2]) if len(sys.argv) > 2 else 2
    result = measure_kernel_esp(seconds=secs, reps=n)
    print(report(result, secs, n))
    print(json.dumps([p.as_dict() for p in result], indent=1))
