"""``bench/rollout``: the time from playbook start until every tunnel is verified.

For each lab size (default 10 and 20 sites: full meshes of 45 and 190 tunnels) it builds a
fresh lab with ``playbooks/lab.yml`` (not timed), then times ``site.yml`` (agent rollout and
every tunnel up) followed by ``verify.yml`` (traffic proven through every tunnel), and tears the
lab down. Prints one row per size and the growth per added site; JSON to bench/results/.

There is no strongSwan column: strongSwan has no playbook that does this job; the per-tunnel
protocol cost side by side with charon is in ``bench/run`` (IKE SAs per CPU-second).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"


def playbook(name: str, inventory: Path, extra: list[str], log, check: bool = True) -> float:
    env = os.environ | {"ANSIBLE_CONFIG": str(ROOT / "ansible.cfg")}
    cmd = [str(ROOT / ".venv/bin/ansible-playbook"), "-i", str(inventory), *extra]
    cmd.append(str(ROOT / "playbooks" / name))
    start = time.monotonic()
    done = subprocess.run(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)
    seconds = time.monotonic() - start
    if done.returncode and check:
        raise RuntimeError(f"{name} failed (exit {done.returncode}); see {log.name}")
    return seconds


def measure(sites: int, lab: str, management: str, workdir: Path) -> dict[str, float | int]:
    base = workdir / f"{lab}-{sites}"
    inventory = base / "hosts.yml"
    lab_vars = [
        "-e", f"ikelab_lab_name={lab}",
        "-e", f"ikelab_lab_sites={sites}",
        "-e", f"ikelab_lab_inventory={inventory}",
        "-e", f"ikelab_lab_dir={base / 'lab'}",
        "-e", f"ikelab_lab_management_network={management}",
    ]  # fmt: skip
    log_path = workdir.parent / f"rollout-{sites}.log"
    with open(log_path, "w") as log:
        try:
            playbook("lab.yml", Path("localhost,"), lab_vars, log)  # not timed
            site = playbook("site.yml", inventory, [], log)
            verify = playbook("verify.yml", inventory, [], log)
        finally:
            playbook("teardown.yml", Path("localhost,"), lab_vars, log, check=False)
    tunnels = sites * (sites - 1) // 2
    return {
        "sites": sites,
        "tunnels": tunnels,
        "site_s": round(site, 1),
        "verify_s": round(verify, 1),
        "total_s": round(site + verify, 1),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sites", type=int, nargs="+", default=[10, 20])
    ap.add_argument("--lab", default="bnch", help="lab name (at most 5 characters)")
    ap.add_argument("--management", default="198.18.200.0/24", help="the lab's management network")
    args = ap.parse_args(argv)
    if os.geteuid() != 0:
        print("bench/rollout needs root (it builds network namespaces)", file=sys.stderr)
        return 2
    rows = []
    RESULTS.mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="rollout-", dir=RESULTS) as tmp:
        for n in sorted(args.sites):
            print(f"measuring a full mesh of {n} sites ...", flush=True)
            rows.append(measure(n, args.lab, args.management, Path(tmp)))
    head = f"{'sites':>5}  {'tunnels':>7}  {'site.yml s':>10}  {'verify.yml s':>12}  {'total s':>8}"
    print(head)
    for r in rows:
        print(
            f"{r['sites']:>5}  {r['tunnels']:>7}  {r['site_s']:>10.1f}  "
            f"{r['verify_s']:>12.1f}  {r['total_s']:>8.1f}"
        )
    growth = None
    if len(rows) >= 2:
        a, b = rows[0], rows[-1]
        growth = (b["total_s"] - a["total_s"]) / (b["sites"] - a["sites"])
        per_tunnel = (b["total_s"] - a["total_s"]) / (b["tunnels"] - a["tunnels"])
        print(f"growth: {growth:.1f} s per added site, {per_tunnel:.2f} s per added tunnel")
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"rollout-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.write_text(
        json.dumps(
            {
                "python": platform.python_version(),
                "cpus": os.cpu_count(),
                "rows": rows,
                "growth_s_per_site": growth,
            },
            indent=2,
        )
    )
    print(f"results: {out.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
