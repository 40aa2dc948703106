"""The collection's playbooks on sites whose gateways are User-mode Linux guests (the lab's
``uml`` engine): lab.yml boots two guests, site.yml ships the agent into them and brings the
tunnel up, and the agent picks the guest kernel's XFRM data plane by itself; verify.yml proves
the tunnel while a capture on the underlay shows only ESP between the gateways; the kernel's
SAs are the ones the agent reports. The lab then converges back to namespaces and is removed
without leftovers."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from ikelab_testing.ansible_lab import LabRun, new_lab, site_playbook, wait_for
from ikelab_testing.capture import Capture

pytestmark = [pytest.mark.netns, pytest.mark.uml, pytest.mark.slow]

HOSTS = ["site1", "site2"]
SOCKET = {"socket": "/run/ikelab/ikeagent.sock"}


class LabNamespace:
    """Enough of ``ikelab_testing.netns.Namespace`` for ``Capture``: a namespace of the lab."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.lab = self

    def spawn(self, argv: Sequence[str], **kwargs: object) -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            ["ip", "netns", "exec", self.name, *argv], start_new_session=True, **kwargs
        )

    def stop(self, proc: subprocess.Popen[bytes]) -> None:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(5)


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabRun]:
    run = new_lab(tmp_path_factory.mktemp("uml"), "g", len(HOSTS))
    run.engine = "uml"
    run.build()
    yield run
    run.playbook("teardown.yml")
    # a guest's kernel stops without closing its TCP connections: Ansible's ssh masters would
    # wait for ServerAliveInterval to notice, so the test ends them itself
    for pid in _pids_with(str(run.control_dir)):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    wait_for(lambda: not run.leftovers(), timeout=10, what=f"a clean machine ({run.leftovers()})")


def shell(lab: LabRun, host: str, command: str) -> str:
    result = lab.adhoc(host, "ansible.builtin.command", {"argv": ["sh", "-c", command]})[host]
    assert result.get("rc") == 0, result
    return result["stdout"]


def test_sites_are_guests_with_a_kernel_of_their_own(lab: LabRun) -> None:
    host_release = os.uname().release
    for host in HOSTS:
        out = shell(lab, host, "uname -r; cat /proc/1/comm; grep -c . /proc/modules")
        release, init, modules = out.split()
        assert release != host_release  # the guest's kernel, not this machine's
        assert init == "ikelab-init"  # the lab's site init is the guest's PID 1
        assert int(modules) > 10  # the XFRM/ESP modules and their algorithms
        rec = lab.init_record(host)
        assert os.path.realpath(f"/proc/{rec['pid']}/exe") == "/usr/bin/linux.uml"
    # a second lab.yml leaves the running guests alone
    before = {h: lab.init_record(h)["pid"] for h in HOSTS}
    assert lab.playbook("lab.yml")[1] == 0
    assert {h: lab.init_record(h)["pid"] for h in HOSTS} == before


def test_site_playbook_brings_the_tunnel_up_on_kernel_esp(lab: LabRun, tmp_path: Path) -> None:
    run = site_playbook(lab, "site.yml")
    assert run.returncode == 0, run.output[-4000:]

    sas = lab.adhoc("sites", "ikelab.ipsec.sa_info", SOCKET)
    for host in HOSTS:
        # nobody told the agent: --dataplane auto found ESP in the guest's kernel
        assert sas[host]["agent"]["dataplane"]["name"] == "xfrm", sas[host]["agent"]
        [sa] = sas[host]["sas"]
        [child] = sa["children"]
        assert child["state"] == "INSTALLED"
        # what the kernel holds is what the agent reports
        state = shell(lab, host, "ip xfrm state")
        kernel_spis = {int(s, 16) for s in re.findall(r"spi (0x[0-9a-f]+)", state)}
        log = shell(lab, host, "grep -h 'data plane' /var/log/ikelab/*.log || true")
        assert kernel_spis == {int(child["spi_in"], 16), int(child["spi_out"], 16)}, state + log
        policy = shell(lab, host, "ip xfrm policy")
        # out, in and fwd through the tunnel, each with its guard (blocks marked packets)
        assert len(re.findall(r"dir (?:in|out|fwd) priority", policy)) == 3, policy
        assert len(re.findall(r"dir (?:in|out|fwd) action block", policy)) == 3, policy

    wan = LabNamespace(f"{lab.name}-wan")
    with Capture(wan, "site1", tmp_path / "wan.pcap") as cap:
        verify = site_playbook(lab, "verify.yml")
    assert verify.returncode == 0, verify.output[-4000:]
    rows = re.findall(r"^\s*(site\d--site\d)\s.*\s(verified|FAILED)\s*$", verify.stdout, re.M)
    assert rows == [("site1--site2", "verified")], verify.stdout[-3000:]
    summary = cap.summary()
    assert summary.cleartext_between("10.1.0.0/24", "10.2.0.0/24") == [], summary.describe()
    esp = summary.of("esp")  # no NAT between the guests: plain ESP, as the kernel sends it
    assert len(esp) >= 12, summary.describe()  # 3 echoes each way from both ends
    assert {p.src for p in esp} == {"192.0.2.11", "192.0.2.12"}
    assert summary.of("esp-in-udp") == []


def test_the_lab_converges_back_to_namespaces(lab: LabRun) -> None:
    lab.engine = "netns"
    try:
        assert lab.playbook("lab.yml")[1] == 1
        for host in HOSTS:
            rec = lab.init_record(host)
            assert os.path.realpath(f"/proc/{rec['pid']}/exe") != "/usr/bin/linux.uml"
            assert shell(lab, host, "uname -r").strip() == os.uname().release
        assert not [p for p in _uml_processes() if str(lab.dir) in p]
    finally:
        lab.engine = "uml"


def _cmdlines() -> dict[int, str]:
    found = {}
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                found[int(pid)] = f.read().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
    return found


def _uml_processes() -> list[str]:
    return [c for c in _cmdlines().values() if c.startswith("/usr/bin/linux.uml")]


def _pids_with(text: str) -> list[int]:
    return [pid for pid, c in _cmdlines().items() if text in c and pid != os.getpid()]
