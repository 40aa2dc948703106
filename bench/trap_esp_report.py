"""Table and ratios of the on-demand benchmark (``trap_esp``)."""

from __future__ import annotations

import json
import sys

from kernel_esp import ESP, IKE
from kernel_esp_report import _fmt, _table
from trap_esp import KINDS, SEND_INTERVAL, Phase, measure_trap


def ratios(phases: list[Phase]) -> dict[str, float | None]:
    """agent/charon for cold and warm; cold/warm for each daemon (medians)."""
    by = {p.key: p for p in phases}
    out: dict[str, float | None] = {}
    for kind in KINDS:
        ag, ch = by["agent"].median(kind), by["charon"].median(kind)
        out[f"{kind}_agent_over_charon"] = ag / ch if ag and ch else None
    for p in phases:
        cold, warm = p.median("cold"), p.median("warm")
        out[f"{p.key}_cold_over_warm"] = cold / warm if cold and warm else None
    return out


def _seqs(p: Phase, kind: str) -> str:
    seqs = [r.seq for r in p.ok(kind)]
    return ",".join(str(s) for s in seqs) if seqs else "-"


def _note(p: Phase) -> str:
    errors = [r.error for kind in KINDS for r in getattr(p, kind) if r.error]
    return p.error or (errors[0] if errors else "") or (p.notes[0] if p.notes else "")


def main_table(phases: list[Phase]) -> str:
    r = ratios(phases)
    rows = []
    for p in phases:
        rows.append(
            (
                p.label,
                p.larval_drop or "-",
                f"{len(p.ok('cold'))}/{len(p.ok('warm'))}",
                _fmt(p.median("cold"), ".1f"),
                _fmt(p.median("warm"), ".1f"),
                _fmt(r.get(f"{p.key}_cold_over_warm"), ".2f"),
                _seqs(p, "cold"),
                _seqs(p, "warm"),
                _note(p),
            )
        )
    head = (
        "daemons",
        "larval_drop",
        "n cold/warm",
        "cold ms",
        "warm ms",
        "cold/warm",
        "cold: 1st echo is probe",
        "warm: 1st echo is probe",
        "note",
    )
    return _table(head, rows)


def detail_table(phases: list[Phase]) -> str:
    rows = []
    for p in phases:
        for kind in KINDS:
            runs = p.ok(kind)
            firsts = [r.first_ms for r in runs if r.first_ms is not None]
            rows.append(
                (
                    f"{p.key} {kind}",
                    _fmt(p.median(kind, "acquire_ms"), ".1f"),
                    _fmt(p.median(kind, "sa_ms"), ".1f"),
                    _fmt(p.median(kind, "sa_to_reply_ms"), ".1f"),
                    f"{_fmt(p.median(kind, 'first_ms'), '.1f')} ({len(firsts)}/{len(runs)})",
                    " ".join(f"{r.probes - r.answered}/{r.probes}" for r in runs) or "-",
                    str(sum(r.retransmits for r in runs)),
                    ",".join(map(str, runs[-1].order[:8])) if runs else "-",
                )
            )
    head = (
        "run",
        "->ACQUIRE",
        "->SA in",
        "SA->echo",
        "->probe 1 echoed (runs)",
        "lost/sent per run",
        "IKE retransmits",
        "echo order (last run)",
    )
    return _table(head, rows)


def report(phases: list[Phase], reps: int) -> str:
    lines = [
        f"On-demand tunnels in UML guests (kernel XFRM; agent a -> b, charon c -> d, cycles"
        f" taking turns): a UDP probe every {SEND_INTERVAL * 1000:g} ms from the initiator's"
        f" subnet meets its trap; first probe sent -> first echo, median of {reps} (IKEv2 {IKE}"
        f" PSK / ESP {ESP})",
        "cold: no SA at all (IKE_SA_INIT + IKE_AUTH); warm: the IKE SA kept, only the Child SA"
        " closed (CREATE_CHILD_SA only)",
        main_table(phases),
        "",
        "Medians in ms from the first probe sent (the initiator's ip -ts xfrm monitor): the kernel's"
        " ACQUIRE, the last ESP SA added before the first echo, from it to that echo; the first"
        " probe's own echo (runs where it came: held, not dropped); probes never echoed; IKE"
        " requests re-sent (all runs)",
        detail_table(phases),
    ]
    r = ratios(phases)
    parts = [f"{k} {v:.2f}" for k, v in r.items() if v is not None]
    if parts:
        lines.append("ratios: " + ", ".join(parts))
    h = next((p.host for p in phases if p.host), None)
    if h:
        lines.append(
            f"machine during the cycles: {h['seconds']:g} s, load {h['load1_start']:.2f} ->"
            f" {h['load1_end']:.2f}, CPUs busy {h['busy_percent']:g}% (the guests' own work"
            f" included), stolen by the hypervisor {_fmt(h['steal_percent'], 'g')}%"
        )
    for p in phases:
        for note in p.notes:
            lines.append(f"  {p.key}: {note}")
    return "\n".join(lines)


if __name__ == "__main__":  # a quick look without bench.py: python trap_esp_report.py [REPS]
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 2
    result = measure_trap(reps=n)
    print(report(result, n))
    print(json.dumps([p.as_dict() for p in result], indent=1))
