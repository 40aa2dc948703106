"""playbooks/lab.yml and playbooks/teardown.yml for real: three sites as namespaces, managed
over ssh by ansible-core, each with its own hostname, /etc and service supervisor; a second run
changes nothing, a site whose init died comes back, and the teardown leaves nothing behind.

Each run uses a lab name and management network of its own, its own inventory, lab directory and
ssh control sockets under the test's temporary directory, so it never meets another lab.
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
import secrets
import signal
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

pytestmark = [pytest.mark.netns, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[3]
BIN = ROOT / ".venv" / "bin"
SITES = 3
RECAP = re.compile(r"localhost\s*:\s*ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)")


def _free_management_network() -> str:
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
    env: dict[str, str] = field(default_factory=dict)

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
            "-e", f"ikelab_lab_sites={SITES}",
            "-e", f"ikelab_lab_dir={self.dir}",
            "-e", f"ikelab_lab_inventory={self.inventory}",
            "-e", f"ikelab_lab_management_network={self.management}",
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


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabRun]:
    if os.geteuid() != 0:
        pytest.skip("needs root")
    if not os.access("/usr/sbin/sshd", os.X_OK):
        pytest.skip("openssh-server is not installed (run: sudo ./scripts/setup)")
    tmp = tmp_path_factory.mktemp("lab")
    run = LabRun(f"t{secrets.token_hex(2)}", _free_management_network(), tmp)
    run.control_dir.mkdir()
    run.env = {
        **os.environ,
        "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"),
        "ANSIBLE_SSH_CONTROL_PATH_DIR": str(run.control_dir),
        "ANSIBLE_NOCOLOR": "1",
    }
    ok, changed = run.playbook("lab.yml")
    assert changed >= 1
    yield run
    if run.dir.exists() or run.leftovers():
        run.playbook("teardown.yml")


def test_every_site_answers_with_its_own_hostname(lab: LabRun) -> None:
    results = lab.adhoc("sites", "ansible.builtin.setup", "filter=ansible_hostname")
    assert sorted(results) == [f"site{i}" for i in range(1, SITES + 1)]
    for host, result in results.items():
        assert result["ansible_facts"]["ansible_hostname"] == host


def test_each_site_has_its_own_etc(lab: LabRun) -> None:
    probe = f"/etc/ikelab-lab-test-{lab.name}"
    written = lab.adhoc("site1", "ansible.builtin.copy", {"dest": probe, "content": "site1\n"})
    assert written["site1"]["changed"] is True
    seen = lab.adhoc("sites", "ansible.builtin.stat", f"path={probe}")
    assert seen["site1"]["stat"]["exists"] is True
    assert seen["site2"]["stat"]["exists"] is False
    assert seen["site3"]["stat"]["exists"] is False
    assert not os.path.exists(probe)  # nor on the machine


def _http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1) as r:
            return r.status == 200
    except OSError:
        return False


def test_the_site_supervisor_runs_services(lab: LabRun) -> None:
    address = lab.address(1)
    web = {
        "argv": ["/usr/bin/python3", "-m", "http.server", "--bind", address, "8080", "-d", "/tmp"],
        "env": {"PYTHONUNBUFFERED": "1"},
    }
    defined = lab.adhoc(
        "site1",
        "ansible.builtin.copy",
        {"dest": "/etc/ikelab/services/web.json", "content": json.dumps(web)},
    )
    assert not defined["site1"].get("failed"), defined
    started = lab.adhoc("site1", "ansible.builtin.command", "ikelab-service start web")["site1"]
    assert started["rc"] == 0, started
    first = json.loads(started["stdout"])
    assert first["running"] is True
    url = f"http://{address}:8080/"
    wait_for(lambda: _http_ok(url), what="the service's HTTP answer")

    script = (
        "ikelab-service restart web; ikelab-service stop web; ikelab-service status web; "
        'echo "rc=$?"; (sleep 0.3 &); sleep 1; '
        'echo "zombies=$(ps -eo stat= | grep -c \'^Z\')"; echo "init=$(cat /proc/1/comm)"; '
        "echo \"starts=$(grep -c 'ikelab-service: start web' /var/log/ikelab/web.log)\""
    )
    out = lab.adhoc("site1", "ansible.builtin.shell", script)["site1"]["stdout_lines"]
    restarted, stopped, status = (json.loads(line) for line in out[:3])
    assert restarted["running"] is True and restarted["pid"] != first["pid"]
    assert stopped["running"] is False
    assert status["running"] is False
    assert "rc=3" in out  # status of a stopped service
    assert "zombies=0" in out  # PID 1 reaps orphans
    assert "init=ikelab-init" in out
    assert "starts=2" in out  # the service's log, with the supervisor's notes
    assert not _http_ok(url)


def test_a_second_run_changes_nothing(lab: LabRun) -> None:
    before = {f"site{i}": lab.init_record(f"site{i}")["pid"] for i in range(1, SITES + 1)}
    _, changed = lab.playbook("lab.yml")
    assert changed == 0
    after = {f"site{i}": lab.init_record(f"site{i}")["pid"] for i in range(1, SITES + 1)}
    assert after == before


def test_a_site_whose_init_died_is_started_again(lab: LabRun) -> None:
    before = {f"site{i}": lab.init_record(f"site{i}")["pid"] for i in range(1, SITES + 1)}
    os.kill(before["site2"], signal.SIGKILL)
    wait_for(lambda: gone(before["site2"]), what="the init's death")
    _, changed = lab.playbook("lab.yml")
    assert changed >= 1
    after = {f"site{i}": lab.init_record(f"site{i}")["pid"] for i in range(1, SITES + 1)}
    assert after["site2"] != before["site2"]
    assert after["site1"] == before["site1"] and after["site3"] == before["site3"]
    pong = lab.adhoc("sites", "ansible.builtin.ping", "")
    assert all(r.get("ping") == "pong" for r in pong.values()), pong


def test_teardown_leaves_nothing_behind(lab: LabRun) -> None:
    records = [lab.init_record(f"site{i}") for i in range(1, SITES + 1)]
    _, changed = lab.playbook("teardown.yml")
    assert changed == 1
    for rec in records:
        wait_for(lambda rec=rec: gone(rec["pid"]) and gone(rec["launcher"]), what="site processes")
    # ssh control masters notice their closed connections and exit
    wait_for(lambda: not lab.leftovers(), timeout=15, what=f"a clean machine ({lab.leftovers()})")
    _, changed = lab.playbook("teardown.yml")
    assert changed == 0
