"""IKE SAs per CPU-second of a responder: the agent against charon, same load, same proposal, in
IKEv2 and in IKEv1 (Main Mode + Quick Mode).

The load comes from ``ike_rate.py`` (many initiators on the agent's own engine) in gwA; the
responder runs in gwB. Both responders establish an IKE SA and one Child SA per exchange and
install it in their userspace data plane (the agent's, and charon's kernel-libipsec).
"""

from __future__ import annotations

import json
import secrets
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from ikelab_testing.agent import Agent
from ikelab_testing.charon import Charon, Child, Connection, Secret
from ikelab_testing.netns import topology

HERE = Path(__file__).resolve().parent
PROPOSAL = "aes128-sha256-x25519"
ESP = "aes128gcm16"
LOAD_ID, RESP_ID = "load.example", "responder.example"
LOAD_TS, RESP_TS = "10.8.0.0/24", "10.9.0.0/24"


@dataclass
class RateResult:
    label: str
    established: int = 0
    failed: int = 0
    cpu_seconds: float = 0.0
    sas_per_cpu_second: float | None = None
    sas_per_second: float | None = None
    median_setup_ms: float | None = None
    error: str = ""


def _agent_responder(topo, psk: str, version: int = 2):
    gw = topo.gw_b
    cfg = {
        "connections": {
            "load": {
                "version": version,
                "local_addrs": [topo.spec.gw_b_outer],
                "remote_addrs": [topo.spec.gw_a_outer],
                "proposals": [PROPOSAL],
                "local": {"auth": "psk", "id": RESP_ID},
                "remote": {"auth": "psk", "id": LOAD_ID},
                "rekey_time": 0,
                "children": {
                    "net": {
                        "local_ts": [RESP_TS],
                        "remote_ts": [LOAD_TS],
                        "esp_proposals": [ESP],
                        "rekey_time": 0,
                    }
                },
            }
        },
        "secrets": {"ike-load": {"id": [LOAD_ID, RESP_ID], "secret": psk}},
    }
    agent = Agent(gw, cfg, topo.lab, name="bench", log_level="warning").start()
    assert agent.proc is not None
    return agent.proc.pid, agent.stop


# both responders log as little as they can: the agent at "warning", charon at level 0 (its
# audit messages), so neither pays for verbose logging the other does not
QUIET_CHARON = dict.fromkeys(("default", "ike", "cfg", "chd", "knl", "net", "enc", "esp"), 0)


def _charon_responder(topo, psk: str, version: int = 2):
    charon = Charon(topo.gw_b, topo.lab, log_levels=QUIET_CHARON).start()
    conn = Connection(
        name="load",
        version=version,
        local_addrs=[topo.spec.gw_b_outer],
        remote_addrs=[topo.spec.gw_a_outer],
        local_id=RESP_ID,
        remote_id=LOAD_ID,
        proposals=(PROPOSAL,),
        rekey_time="0",
        children=[Child("net", [RESP_TS], [LOAD_TS], esp_proposals=(ESP,), rekey_time="0")],
    )
    charon.load([conn], [Secret("load", sorted([LOAD_ID, RESP_ID]), psk.encode())])
    assert charon.proc is not None
    return charon.proc.pid, charon.stop


RESPONDERS = {
    "agent": ("ikeagent responder", _agent_responder),
    "charon": ("charon responder", _charon_responder),
}


def measure_rate(kind: str, seconds: float = 8.0, conns: int = 16, version: int = 2) -> RateResult:
    label, start = RESPONDERS[kind]
    result = RateResult(f"{label} (IKEv{version})")
    psk = secrets.token_urlsafe(32)
    with topology() as topo:
        pid, stop = start(topo, psk, version)
        try:
            time.sleep(0.5)
            argv = topo.gw_a.argv(
                [
                    sys.executable,
                    str(HERE / "ike_rate.py"),
                    "--local",
                    topo.spec.gw_a_outer,
                    "--remote",
                    topo.spec.gw_b_outer,
                    "--pid",
                    str(pid),
                    "--duration",
                    str(seconds),
                    "--conns",
                    str(conns),
                    "--proposal",
                    PROPOSAL,
                    "--esp",
                    ESP,
                    f"--psk={psk}",
                    "--local-id",
                    LOAD_ID,
                    "--remote-id",
                    RESP_ID,
                    "--local-ts",
                    LOAD_TS,
                    "--remote-ts",
                    RESP_TS,
                    "--version",
                    str(version),
                ]
            )
            proc = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 60)
            if proc.returncode != 0:
                result.error = (proc.stderr or proc.stdout).strip().splitlines()[-1][:200]
                return result
            data = json.loads(proc.stdout.strip().splitlines()[-1])
            result.established = data["established"]
            result.failed = data["failed"]
            result.cpu_seconds = data["responder_cpu_seconds"]
            result.sas_per_cpu_second = data["sas_per_cpu_second"]
            result.sas_per_second = data["sas_per_second"]
            result.median_setup_ms = data["median_setup_ms"]
        finally:
            stop()
    return result


def rate_table(results: list[RateResult]) -> str:
    head = ("responder", "SAs", "failed", "CPU s", "SAs/CPU-s", "SAs/s", "median setup ms", "note")
    rows = [head]
    for r in results:
        rows.append(
            (
                r.label,
                str(r.established),
                str(r.failed),
                f"{r.cpu_seconds:.2f}",
                "-" if r.sas_per_cpu_second is None else f"{r.sas_per_cpu_second:.0f}",
                "-" if r.sas_per_second is None else f"{r.sas_per_second:.0f}",
                "-" if r.median_setup_ms is None else f"{r.median_setup_ms:.1f}",
                r.error,
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(head))]
    out = []
    for n, row in enumerate(rows):
        out.append("  ".join(c.ljust(widths[i]) for i, c in enumerate(row)).rstrip())
        if n == 0:
            out.append("  ".join("-" * w for w in widths))
    return "\n".join(out)


if __name__ == "__main__":
    res = [
        measure_rate(k, float(sys.argv[1]) if len(sys.argv) > 1 else 6.0)
        for k in ("agent", "charon")
    ]
    print(rate_table(res))
