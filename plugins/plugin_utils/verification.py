# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The verification table: both ends of every tunnel, their SAs and the traffic proof.

Input per host: the results of ``ikelab.ipsec.flow_check`` looped over the host's planned
tunnels (each result carries its loop ``item``: the plan entry with ``tunnel_id``, ``name`` and
``peer``) and the host's ``ikelab.ipsec.sa_info`` result. A tunnel is verified when, from each of
its two ends, the traffic arrived and the Child SA's counters rose by at least what was sent.
An on-demand tunnel whose Child SA the traffic brought up shows the time to the first answer.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

COLUMNS = ("tunnel", "ike", "esp", "spis", "a->b", "b->a", "result")


def _ike_sa(sa_info: Mapping[str, Any] | None, name: str) -> Mapping[str, Any] | None:
    for sa in (sa_info or {}).get("sas") or []:
        if sa.get("name") == name and sa.get("state") == "ESTABLISHED":
            return sa
    return None


def _algorithms(entry: Mapping[str, Any], keys: Sequence[str]) -> str:
    return "/".join(str(entry[k]) for k in keys if entry.get(k))


def _ike_cell(sa: Mapping[str, Any] | None) -> str:
    """``IKEv2 AES_GCM_16_256/PRF_HMAC_SHA2_384/CURVE_25519``; IKEv1 with its Phase 1 mode;
    ``pubkey`` after the version when the peers authenticated with certificates."""
    if not sa:
        return "-"
    algs = _algorithms(sa, ("encryption", "integrity", "prf", "dh")) or "-"
    version = f"IKEv{sa.get('version', 2)}"
    if sa.get("mode"):
        version += f"-{sa['mode']}"
    if "pubkey" in (sa.get("local_auth"), sa.get("remote_auth")):
        version += " pubkey"
    return f"{version} {algs}"


def _flow_cell(result: Mapping[str, Any] | None) -> tuple[str, str | None]:
    """A short proof (``ok 3/3``) or the reason it failed."""
    if result is None:
        return "-", "no traffic was sent"
    if result.get("skipped"):
        return "skipped", "the check was skipped"
    delta = result.get("delta") or {}
    sent = f"{delta.get('packets_out', 0)} out/{delta.get('packets_in', 0)} in"
    if result.get("failed") or not result.get("arrived") or not result.get("encrypted"):
        return f"FAIL {sent}", str(result.get("msg") or "traffic not proven")
    if result.get("on_demand") and result.get("time_to_first_packet_ms") is not None:
        # the Child SA was negotiated for this traffic: how long the first answer took
        return f"ok {sent}, on demand {result['time_to_first_packet_ms']:.0f} ms", None
    return f"ok {sent}", None


def verify(
    tunnels: Sequence[Mapping[str, Any]],
    per_host: Mapping[str, tuple[Sequence[Mapping[str, Any]], Mapping[str, Any] | None]],
) -> dict[str, Any]:
    """``per_host``: host -> (flow_check loop results, sa_info result)."""
    flows: dict[tuple[str, str], Mapping[str, Any]] = {}  # (tunnel id, from host) -> result
    names: dict[tuple[str, str], str] = {}  # (tunnel id, host) -> connection name there
    for host, (results, _sas) in per_host.items():
        for result in results or []:
            item = result.get("item") or {}
            tid = item.get("tunnel_id")
            if tid:
                flows[(tid, host)] = result
                names[(tid, host)] = item.get("name", "")
    rows, failures = [], []
    for tunnel in tunnels:
        tid = tunnel["id"]
        a, b = _ends(tunnel)
        problems = []
        sa_a = _ike_sa(per_host.get(a, ((), None))[1], names.get((tid, a), b))
        sa_b = _ike_sa(per_host.get(b, ((), None))[1], names.get((tid, b), a))
        if sa_a is None:
            problems.append(f"{a}: no established IKE SA")
        if sa_b is None:
            problems.append(f"{b}: no established IKE SA")
        child = next(iter((sa_a or {}).get("children") or []), {})
        cell_ab, why_ab = _flow_cell(flows.get((tid, a)))
        cell_ba, why_ba = _flow_cell(flows.get((tid, b)))
        if why_ab:
            problems.append(f"{a} -> {b}: {why_ab}")
        if why_ba:
            problems.append(f"{b} -> {a}: {why_ba}")
        row = {
            "tunnel": tid,
            "ike": _ike_cell(sa_a),
            "esp": _algorithms(child, ("encryption", "integrity", "dh")) or "-",
            "spis": f"{child['spi_in']}/{child['spi_out']}" if child.get("spi_in") else "-",
            "a->b": cell_ab,
            "b->a": cell_ba,
            "result": "verified" if not problems else "FAILED",
            "problems": problems,
        }
        rows.append(row)
        failures += [f"tunnel {tid}: {p}" for p in problems]
    return {"rows": rows, "table": render(rows), "failures": failures}


def _ends(tunnel: Mapping[str, Any]) -> tuple[str, str]:
    ends = tunnel.get("hosts") or tunnel.get("ends") or tunnel["id"].split("--", 1)
    first, second = (e["host"] if isinstance(e, Mapping) else e for e in ends)
    return first, second


def render(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    cells = [list(COLUMNS)] + [[str(r[c]) for c in COLUMNS] for r in rows]
    widths = [max(len(line[i]) for line in cells) for i in range(len(COLUMNS))]
    return [
        "  ".join(v.ljust(w) for v, w in zip(line, widths, strict=True)).rstrip() for line in cells
    ]
