"""The collection end to end on a lab of four sites in full mesh (six tunnels), through its own
playbooks: lab.yml builds the sites, bad input fails before any host changes, site.yml rolls
the agent out and brings every tunnel up, pytest-testinfra checks every site, a second run and
a check-mode run change nothing, verify.yml proves every tunnel with traffic that crossed the
underlay as ESP only, and teardown.yml leaves nothing behind."""

from __future__ import annotations

import base64
import hashlib
import json
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ikelab_testing.ansible_lab import (
    ROOT,
    LabRun,
    PlaybookRun,
    new_lab,
    site_playbook,
    wait_for,
)
from ikelab_testing.capture import analyse

pytestmark = [pytest.mark.netns, pytest.mark.slow]

SITES = 4
HOSTS = [f"site{i}" for i in range(1, SITES + 1)]
TUNNELS = [f"site{a}--site{b}" for a in range(1, SITES + 1) for b in range(a + 1, SITES + 1)]
SOCKET = "/run/ikelab/ikeagent.sock"


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabRun]:
    run = new_lab(tmp_path_factory.mktemp("rollout"), "r", SITES)
    run.build()
    yield run
    run.playbook("teardown.yml")


def overrides(lab: LabRun, name: str, host_vars: dict[str, dict[str, object]]) -> Path:
    """An inventory that changes some hosts' variables (it is given after the lab's)."""
    path = lab.tmp / f"{name}.yml"
    hosts = {h: v for h, v in host_vars.items()}
    path.write_text(json.dumps({"all": {"children": {"sites": {"hosts": hosts}}}}))
    return path


def failed_before_any_change(run: PlaybookRun, *expected: str) -> None:
    assert run.returncode != 0, run.output[-3000:]
    assert run.changed() == dict.fromkeys(HOSTS, 0), run.output[-3000:]
    # the planner was the task that failed
    assert "Plan and check every tunnel" in run.output
    for text in expected:
        assert text in run.output, (text, run.output[-3000:])


BAD_INPUT = {
    "a tunnel to a host not in the inventory": (
        {},
        ["-e", json.dumps({"ikelab_topology": {"type": "pairs", "pairs": [["site1", "site9"]]}})],
        ["site9", "not in the inventory"],
    ),
    "peers with no common proposal": (
        {
            "site1": {"ikelab_ike_proposals": ["aes256gcm16-prfsha384-x25519"]},
            "site2": {"ikelab_ike_proposals": ["aes128-sha256-modp2048"]},
        },
        [],
        ["site1--site2", "ikelab_ike_proposals", "no common"],
    ),
    "overlapping protected subnets": (
        {"site3": {"ikelab_protected_subnets": ["10.1.0.0/16"]}},
        [],
        ["site1--site3", "ikelab_protected_subnets", "10.1.0.0/16 of peer site3"],
    ),
    "a missing key": ({}, ["-e", "ikelab_generate_keys=false"], ["missing key"]),
    "an unknown option": (
        {"site1": {"ikelab_tunnels": [{"peer": "site2", "options": {"dpd_delya": "30s"}}]}},
        [],
        ["host site1", "site1--site2", "dpd_delya"],
    ),
}


@pytest.mark.parametrize("case", list(BAD_INPUT))
def test_bad_input_fails_before_any_host_changes(lab: LabRun, case: str) -> None:
    host_vars, args, expected = BAD_INPUT[case]
    inventories = (overrides(lab, case.replace(" ", "-"), host_vars),) if host_vars else ()
    run = site_playbook(lab, "site.yml", *args, inventories=inventories)
    failed_before_any_change(run, *expected)


def test_no_host_was_touched_by_the_bad_runs(lab: LabRun) -> None:
    seen = lab.adhoc("sites", "ansible.builtin.stat", "path=/opt/ikelab")
    assert {h: r["stat"]["exists"] for h, r in seen.items()} == dict.fromkeys(HOSTS, False)
    assert not (lab.dir / "secrets").exists() or not any((lab.dir / "secrets").iterdir())


def test_check_mode_on_fresh_hosts_reports_the_rollout_and_changes_nothing(lab: LabRun) -> None:
    run = site_playbook(lab, "site.yml", "--check", "--diff")
    assert run.returncode == 0, run.output[-4000:]
    assert all(run.changed()[h] > 0 for h in HOSTS), run.recap
    for path in ("/opt/ikelab", "/etc/ikelab/ikeagent.yaml", "/etc/ikelab/tunnels.d"):
        seen = lab.adhoc("sites", "ansible.builtin.stat", f"path={path}")
        assert {h: r["stat"]["exists"] for h, r in seen.items()} == dict.fromkeys(HOSTS, False)


def test_site_rolls_out_and_brings_every_tunnel_up(lab: LabRun) -> None:
    run = site_playbook(lab, "site.yml")
    assert run.returncode == 0, run.output[-4000:]
    assert all(run.changed()[h] > 0 for h in HOSTS), run.recap
    keys = sorted(p.name for p in (lab.dir / "secrets").iterdir())
    assert keys == [f"{t}.psk" for t in TUNNELS]
    for key in (lab.dir / "secrets").iterdir():
        assert key.stat().st_mode & 0o777 == 0o600
        # the key never reached Ansible's output
        assert key.read_text().strip() not in run.output


def test_testinfra_checks_every_site(lab: LabRun) -> None:
    proc = lab.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "--rootdir",
            str(ROOT / "tests" / "testinfra"),
            str(ROOT / "tests" / "testinfra"),
            "--hosts=ansible://sites",
            f"--ansible-inventory={lab.inventory}",
        ],  # fmt: skip
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    assert re.search(rf"\b{5 * SITES} passed\b", proc.stdout), proc.stdout[-2000:]


def fragments(lab: LabRun) -> dict[str, dict[str, str]]:
    """sha1 of every tunnel file on every site."""
    found = lab.adhoc(
        "sites",
        "ansible.builtin.find",
        {"paths": "/etc/ikelab/tunnels.d", "patterns": "*.yaml", "get_checksum": True},
    )
    return {h: {f["path"]: f["checksum"] for f in r["files"]} for h, r in found.items()}


def child_spis(lab: LabRun) -> dict[str, set[str]]:
    sas = lab.adhoc("sites", "ikelab.ipsec.sa_info", {"socket": "/run/ikelab/ikeagent.sock"})
    return {h: {c["spi_in"] for sa in r["sas"] for c in sa["children"]} for h, r in sas.items()}


def test_a_second_run_changes_nothing(lab: LabRun) -> None:
    before = fragments(lab), child_spis(lab)
    run = site_playbook(lab, "site.yml")
    assert run.returncode == 0, run.output[-4000:]
    assert run.changed() == dict.fromkeys(HOSTS, 0), run.recap
    assert (fragments(lab), child_spis(lab)) == before


def test_check_mode_reports_changes_and_makes_none(lab: LabRun) -> None:
    before = fragments(lab), child_spis(lab)
    run = site_playbook(lab, "site.yml", "--check", "--diff")
    assert run.returncode == 0 and run.changed() == dict.fromkeys(HOSTS, 0), run.output[-3000:]
    # a real change, asked in check mode: reported with a diff, not made
    run = site_playbook(lab, "site.yml", "--check", "--diff", "-e", "ikelab_esp_proposals=compat")
    assert run.returncode == 0, run.output[-4000:]
    assert all(run.changed()[h] > 0 for h in HOSTS), run.recap
    assert "aes256-sha256" in run.output  # the diff shows the new ESP proposals
    for key in (lab.dir / "secrets").iterdir():
        assert key.read_text().strip() not in run.output
    assert (fragments(lab), child_spis(lab)) == before


def test_a_tunnel_no_longer_planned_is_removed_and_comes_back(lab: LabRun) -> None:
    pairs = [[a, b] for t in TUNNELS if t != "site3--site4" for a, b in [t.split("--")]]
    run = site_playbook(
        lab, "site.yml", "-e", json.dumps({"ikelab_topology": {"type": "pairs", "pairs": pairs}})
    )
    assert run.returncode == 0, run.output[-4000:]
    assert run.changed()["site1"] == run.changed()["site2"] == 0, run.recap
    assert run.changed()["site3"] > 0 and run.changed()["site4"] > 0, run.recap
    files = fragments(lab)
    assert not any(p.endswith("/site4.yaml") for p in files["site3"])
    assert not any(p.endswith("/site3.yaml") for p in files["site4"])
    sas = lab.adhoc("site3", "ikelab.ipsec.sa_info", {"socket": "/run/ikelab/ikeagent.sock"})
    assert sorted(sa["name"] for sa in sas["site3"]["sas"]) == ["site1", "site2"]
    # the full mesh again: the tunnel is back, up
    run = site_playbook(lab, "site.yml")
    assert run.returncode == 0, run.output[-4000:]
    assert run.changed()["site3"] > 0 and run.changed()["site1"] == 0, run.recap
    sas = lab.adhoc("site3", "ikelab.ipsec.sa_info", {"socket": "/run/ikelab/ikeagent.sock"})
    assert sorted(sa["name"] for sa in sas["site3"]["sas"]) == ["site1", "site2", "site4"]


def test_verify_proves_every_tunnel_with_esp_only_on_the_wire(lab: LabRun) -> None:
    pcap = lab.tmp / "underlay.pcap"
    wan = f"{lab.name}-wan"
    err = open(lab.tmp / "tcpdump.log", "w+b")  # noqa: SIM115 - closed below
    tcpdump = subprocess.Popen(
        ["ip", "netns", "exec", wan, "tcpdump", "-Z", "root", "-i", "br0", "-n", "-U",
         "--immediate-mode", "-w", str(pcap)],
        stdout=subprocess.DEVNULL, stderr=err,
    )  # fmt: skip
    try:
        wait_for(lambda: b"listening on" in (lab.tmp / "tcpdump.log").read_bytes(), 5, "tcpdump")
        run = site_playbook(lab, "verify.yml")
    finally:
        time.sleep(0.3)
        tcpdump.terminate()
        tcpdump.wait(10)
        err.close()
    assert run.returncode == 0, run.output[-4000:]
    rows = re.findall(r"^\s*(site\d--site\d)\s.*\s(verified|FAILED)\s*$", run.stdout, re.M)
    assert sorted(rows) == [(t, "verified") for t in TUNNELS], run.stdout[-3000:]
    assert f"{len(TUNNELS)} tunnel(s) verified" in run.stdout
    summary = analyse(pcap)
    # traffic between the sites' subnets crossed, and only as ESP: never in cleartext
    assert summary.esp >= 2 * 3 * 2 * len(TUNNELS), summary.describe()
    for a in range(1, SITES + 1):
        for b in range(a + 1, SITES + 1):
            leaked = summary.cleartext_between(f"10.{a}.0.0/24", f"10.{b}.0.0/24")
            assert not leaked, summary.describe()
    assert not summary.of("icmp"), summary.describe()


def test_the_agents_keep_the_keys_to_themselves(lab: LabRun) -> None:
    psks = [p.read_text().strip() for p in (lab.dir / "secrets").iterdir()]
    logs = lab.adhoc("sites", "ansible.builtin.slurp", "src=/var/log/ikelab/ikeagent.log")
    for host, result in logs.items():
        text = base64.b64decode(result["content"]).decode(errors="replace")
        # the log is the real one: it records this host's Child SAs coming up
        assert re.search(r"CHILD_SA site\d/net reqid \d+ up", text), host
        for psk in psks:
            assert psk not in text, host
            assert hashlib.sha256(psk.encode()).hexdigest() not in text


def test_on_demand_tunnels_are_trapped_then_brought_up_by_verify(lab: LabRun) -> None:
    """ikelab_tunnel_start_action trap: site.yml arms a trap on every initiating end and
    negotiates nothing; verify.yml's first traffic from those ends brings every tunnel up and
    proves it, reporting the time to first packet; start again brings them all up."""
    trap = ["-e", json.dumps({"ikelab_tunnel_start_action": "trap"})]
    run = site_playbook(lab, "site.yml", *trap)
    assert run.returncode == 0, run.output[-4000:]
    # the initiators' files changed (start_action), the reloads deleted every SA
    assert all(run.changed()[h] > 0 for h in HOSTS[:-1]), run.recap
    infos: dict[str, Any] = {}

    def no_sas() -> bool:
        infos.update(lab.adhoc("sites", "ikelab.ipsec.sa_info", {"socket": SOCKET}))
        return all(not r["sas"] for r in infos.values())

    wait_for(no_sas, 15, "the SAs of the replaced connections to go")
    for host, result in infos.items():
        actions = {c["name"]: c["children"][0]["start_action"] for c in result["connections"]}
        assert actions == {
            peer: ("trap" if host < peer else "none") for peer in HOSTS if peer != host
        }, (host, actions)
    again = site_playbook(lab, "site.yml", *trap)
    assert again.returncode == 0 and again.changed() == dict.fromkeys(HOSTS, 0), again.recap

    run = site_playbook(lab, "verify.yml", *trap)
    assert run.returncode == 0, run.output[-4000:]
    rows = re.findall(r"^\s*(site\d--site\d)\s.*\s(verified|FAILED)\s*$", run.stdout, re.M)
    assert sorted(rows) == [(t, "verified") for t in TUNNELS], run.stdout[-3000:]
    # each tunnel was brought up by the first traffic from its initiating end
    assert len(re.findall(r"on demand \d+ ms", run.stdout)) >= len(TUNNELS), run.stdout[-3000:]

    run = site_playbook(lab, "site.yml")
    assert run.returncode == 0, run.output[-4000:]
    sas = lab.adhoc("sites", "ikelab.ipsec.sa_info", {"socket": SOCKET})
    assert all(len(r["sas"]) == SITES - 1 for r in sas.values()), sas
