"""A lab of sites built with the collection's own playbooks (lab.yml, teardown.yml), driven
from tests: its own lab name, management network, inventory, lab directory and ssh control
sockets under a temporary directory, so it never meets another lab."""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import re
import secrets
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[3]  # tests/lab/ikelab_testing/ -> the checkout
BIN = ROOT / ".venv" / "bin"
RECAP = re.compile(r"localhost\s*:\s*ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)")
HOST_RECAP = re.compile(
    r"^(\S+)\s*:\s*ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)", re.M
)


def free_management_network() -> str:
    """A 198.18.x.0/24 that nothing in the root namespace uses yet."""
    from pyroute2 import IPRoute

    with IPRoute() as ipr:
        used = [
            ipaddress.ip_network(f"{m.get_attr('IFA_ADDRESS')}/{m['prefixlen']}", strict=False)
            for m in ipr.get_addr(family=2)
        ]
    for _ in range(100):
        net = ipaddress.ip_network(f"198.18.{secrets.randbelow(150) + 100}.0/24")
        if not any(net.overlaps(u) for u in used):
            return str(net)
    raise RuntimeError("no free management network")


def wait_for(pred: Callable[[], Any], timeout: float = 10.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = pred()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not reached within {timeout}s")
        time.sleep(0.1)


def gone(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"  # a zombie holds nothing
    except FileNotFoundError:
        return True


@dataclass
class LabRun:
    name: str
    management: str
    tmp: Path
    sites: int = 3
    env: dict[str, str] = field(default_factory=dict)
    engine: str = "netns"

    @property
    def dir(self) -> Path:
        return self.tmp / "lab"

    @property
    def inventory(self) -> Path:
        return self.tmp / "hosts.yml"

    @property
    def control_dir(self) -> Path:
        return self.tmp / "cp"

    def address(self, index: int) -> str:
        return str(ipaddress.ip_network(self.management)[10 + index])

    def extra_vars(self) -> list[str]:
        return [
            "-e", f"ikelab_lab_name={self.name}",
            "-e", f"ikelab_lab_sites={self.sites}",
            "-e", f"ikelab_lab_dir={self.dir}",
            "-e", f"ikelab_lab_inventory={self.inventory}",
            "-e", f"ikelab_lab_management_network={self.management}",
            "-e", f"ikelab_lab_engine={self.engine}",
            "-i", str(self.inventory),
        ]  # fmt: skip

    def run(self, argv: list[str], timeout: float = 180) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            argv, cwd=ROOT, env=self.env, capture_output=True, text=True, timeout=timeout
        )

    def playbook(self, name: str) -> tuple[int, int]:
        """Run playbooks/NAME; returns (ok, changed) of localhost's recap."""
        proc = self.run([str(BIN / "ansible-playbook"), f"playbooks/{name}", *self.extra_vars()])
        assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
        m = RECAP.search(proc.stdout)
        assert m, proc.stdout[-2000:]
        ok, changed, unreachable, failed = map(int, m.groups())
        assert (unreachable, failed) == (0, 0)
        return ok, changed

    def build(self) -> tuple[int, int]:
        """Run playbooks/lab.yml; if it fails, tear down what it left (sites that did start)
        before the failure is raised, so that it costs the next tests nothing."""
        try:
            return self.playbook("lab.yml")
        except BaseException:
            with contextlib.suppress(Exception):
                self.playbook("teardown.yml")
            raise

    def adhoc(self, pattern: str, module: str, args: str | dict[str, Any]) -> dict[str, Any]:
        """Results per host of an ad-hoc task (the tree callback writes one JSON per host)."""
        tree = Path(tempfile.mkdtemp(prefix="tree-", dir=self.tmp))
        a = args if isinstance(args, str) else json.dumps(args)
        argv = [str(BIN / "ansible"), "-i", str(self.inventory), pattern, "-m", module]
        proc = self.run([*argv, "-a", a, "--tree", str(tree)], timeout=120)
        results = {p.name: json.loads(p.read_text()) for p in tree.iterdir()}
        assert results, proc.stdout[-2000:] + proc.stderr[-2000:]
        return results

    def init_record(self, site: str) -> dict[str, int]:
        return json.loads((self.dir / "sites" / site / "init.json").read_text())

    def leftovers(self) -> list[str]:
        """Everything of this lab that still exists on the machine."""
        found = [f"netns {n}" for n in _listdir("/run/netns") if n.startswith(f"{self.name}-")]
        found += [f"link {n}" for n in _listdir("/sys/class/net") if n.startswith(f"{self.name}-")]
        with open("/proc/self/mountinfo") as f:
            found += [f"mount {line.split()[4]}" for line in f if f"/{self.name}-" in line]
        for pid in _listdir("/proc"):
            if not pid.isdigit():
                continue
            try:
                with open(f"/proc/{pid}/cmdline", "rb") as f:
                    cmdline = f.read().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            if (str(self.dir) in cmdline or str(self.control_dir) in cmdline) and not gone(
                int(pid)
            ):
                found.append(f"process {pid}: {cmdline[:120]}")
        if self.dir.exists():
            found.append(f"directory {self.dir}")
        if self.inventory.exists():
            found.append(f"file {self.inventory}")
        return found


def _listdir(path: str) -> list[str]:
    try:
        return os.listdir(path)
    except FileNotFoundError:
        return []


@dataclass
class PlaybookRun:
    """One ansible-playbook run against the lab's sites: exit code, output, per-host recap."""

    returncode: int
    stdout: str
    stderr: str
    recap: dict[str, dict[str, int]]

    @property
    def output(self) -> str:
        return self.stdout + self.stderr

    def changed(self) -> dict[str, int]:
        return {host: r["changed"] for host, r in self.recap.items()}


def site_playbook(
    lab: LabRun, name: str, *args: str, inventories: tuple[Path, ...] = (), timeout: float = 600
) -> PlaybookRun:
    """Run playbooks/NAME against the lab's inventory (plus ``inventories``, which override
    it host by host) with ``args`` (e.g. ``--check``, ``-e``)."""
    argv = [str(BIN / "ansible-playbook"), "-i", str(lab.inventory)]
    for extra in inventories:
        argv += ["-i", str(extra)]
    proc = lab.run([*argv, *args, f"playbooks/{name}"], timeout=timeout)
    recap = {
        m.group(1): dict(
            zip(("ok", "changed", "unreachable", "failed"), map(int, m.groups()[1:]), strict=True)
        )
        for m in HOST_RECAP.finditer(proc.stdout)
    }
    return PlaybookRun(proc.returncode, proc.stdout, proc.stderr, recap)


def new_lab(tmp: Path, prefix: str, sites: int) -> LabRun:
    """A ``LabRun`` of its own (unique name, free management network, its own ssh control
    sockets), not built yet; skips the test when this machine cannot run a lab."""
    import pytest

    if os.geteuid() != 0:
        pytest.skip("needs root")
    if not os.access("/usr/sbin/sshd", os.X_OK):
        pytest.skip("openssh-server is not installed (run: sudo ./scripts/setup)")
    run = LabRun(f"{prefix}{secrets.token_hex(2)}", free_management_network(), tmp, sites)
    run.control_dir.mkdir()
    run.env = {
        **os.environ,
        "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"),
        "ANSIBLE_SSH_CONTROL_PATH_DIR": str(run.control_dir),
        "ANSIBLE_NOCOLOR": "1",
        # ansible-inventory on PATH for pytest-testinfra's ansible backend
        "PATH": f"{BIN}:{os.environ.get('PATH', '/usr/bin:/bin')}",
    }
    return run
