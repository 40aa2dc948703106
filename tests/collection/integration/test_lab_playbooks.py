"""playbooks/lab.yml and playbooks/teardown.yml for real: three sites as namespaces, managed
over ssh by ansible-core, each with its own hostname, /etc and service supervisor; a second run
changes nothing, a site whose init died comes back, and the teardown leaves nothing behind.

Each run uses a lab name and management network of its own, its own inventory, lab directory and
ssh control sockets under the test's temporary directory, so it never meets another lab.
"""

from __future__ import annotations

import json
import os
import signal
import urllib.request
from collections.abc import Iterator

import pytest

from ikelab_testing.ansible_lab import LabRun, gone, new_lab, wait_for

pytestmark = [pytest.mark.netns, pytest.mark.slow]

SITES = 3


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabRun]:
    run = new_lab(tmp_path_factory.mktemp("lab"), "t", SITES)
    ok, changed = run.build()
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
