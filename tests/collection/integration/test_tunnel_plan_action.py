"""ikelab.ipsec.tunnel_plan through ansible-playbook on a static inventory of local hosts.

No host is contacted: the action only plans on the controller. A good inventory gives the plan
(copied to a file by the next task); every bad one fails in the planning task, before any other
task runs, with a message naming host, tunnel and field.
"""

from __future__ import annotations

import copy
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[3]
ANSIBLE_CFG = ROOT / "ansible.cfg"


def _ansible_playbook() -> str:
    local = Path(sys.executable).with_name("ansible-playbook")
    found = str(local) if local.exists() else shutil.which("ansible-playbook")
    if not found:
        pytest.skip("ansible-playbook is not installed")
    return found


def site(i: int) -> dict[str, Any]:
    return {
        "ikelab_underlay_address": f"192.0.2.{10 + i}",
        "ikelab_protected_subnets": [f"10.{i}.0.0/24"],
    }


GOOD: dict[str, Any] = {
    "all": {
        "vars": {
            "ansible_connection": "local",
            "ansible_python_interpreter": "{{ ansible_playbook_python }}",
        },
        "hosts": {"monitor": {}},  # outside the play, no site variables
        "children": {
            "sites": {
                "vars": {
                    "ikelab_topology": {"type": "full_mesh", "group": "sites"},
                    "ikelab_esp_proposals": "modern",
                },
                "hosts": {
                    "site1": site(1),
                    "site2": {
                        **site(2),
                        "ikelab_tunnels": [
                            {"peer": "site3", "options": {"dpd_delay": "30s"}, "name": "east"}
                        ],
                    },
                    # a templated value, as inventories often hold
                    "site3": {**site(3), "ikelab_underlay_address": "{{ '192.0.2.' ~ (10 + 3) }}"},
                },
            }
        },
    }
}

PLAYBOOK = """\
- name: Plan
  hosts: sites
  gather_facts: false
  tasks:
    - name: Plan the tunnels
      ikelab.ipsec.tunnel_plan:
        secrets_dir: "{{ secrets_dir }}"
        generate_keys: "{{ generate_keys }}"
      run_once: true
      register: __plan

    - name: Save the plan
      ansible.builtin.copy:
        content: "{{ __plan | to_nice_json }}"
        dest: "{{ out }}"
        mode: "0600"
      run_once: true
      delegate_to: localhost
"""


def run(
    tmp_path: Path, inventory: dict[str, Any], *, generate_keys: bool = True, check: bool = False
) -> tuple[subprocess.CompletedProcess[str], dict[str, Any], Path]:
    (tmp_path / "hosts.yml").write_text(json.dumps(inventory))  # JSON is YAML
    (tmp_path / "play.yml").write_text(PLAYBOOK)
    secrets = tmp_path / "secrets"
    secrets.mkdir(exist_ok=True)
    out = tmp_path / "plan.json"
    extra = {"secrets_dir": str(secrets), "out": str(out), "generate_keys": generate_keys}
    env = {
        **os.environ,
        "ANSIBLE_CONFIG": str(ANSIBLE_CFG),
        # minimal prints "host | STATUS => {result}" per host and task, nothing else
        "ANSIBLE_STDOUT_CALLBACK": "ansible.builtin.minimal",
        "ANSIBLE_CALLBACK_RESULT_FORMAT": "json",
        "ANSIBLE_NOCOLOR": "1",
    }
    argv = [_ansible_playbook(), "-i", str(tmp_path / "hosts.yml"), "-e", json.dumps(extra)]
    argv += ["--check"] if check else []
    proc = subprocess.run(
        [*argv, str(tmp_path / "play.yml")],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    return proc, results(proc), out


_HEADER = re.compile(r"^(?P<host>\S+)(?: -> \S+)? \| (?P<status>[A-Z]+)!?[^\n]*?=> ", re.M)


def results(proc: subprocess.CompletedProcess[str]) -> list[tuple[str, str, dict[str, Any]]]:
    """(host, status, result) of every task result the minimal callback printed, in order."""
    found = []
    decoder = json.JSONDecoder()
    for m in _HEADER.finditer(proc.stdout):
        try:
            result, _ = decoder.raw_decode(proc.stdout, m.end())
        except json.JSONDecodeError:
            pytest.fail(f"unreadable result (rc {proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
        found.append((m["host"], m["status"], result))
    if not found:
        pytest.fail(f"no task result (rc {proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return found


def test_good_inventory_gives_the_plan(tmp_path: Path) -> None:
    proc, printed, out = run(tmp_path, GOOD)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert [(host, status) for host, status, _ in printed] == [
        ("site1", "SUCCESS"),  # the plan, run once
        ("site1", "CHANGED"),  # the copy of the plan
    ]
    result = json.loads(out.read_text())
    assert result["plan"] == printed[0][2]["plan"]
    assert result["changed"] is False
    assert [t["id"] for t in result["tunnels"]] == ["site1--site2", "site1--site3", "site2--site3"]
    assert sorted(result["plan"]) == ["site1", "site2", "site3"]  # the play's hosts only
    by_peer = {e["peer"]: e for e in result["plan"]["site3"]}
    assert sorted(by_peer) == ["site1", "site2"]
    e = by_peer["site2"]
    assert e["name"] == "site2" and e["tunnel_id"] == "site2--site3"
    assert e["local_addrs"] == ["192.0.2.13"] and e["remote_addrs"] == ["192.0.2.12"]
    assert e["local_ts"] == ["10.3.0.0/24"] and e["remote_ts"] == ["10.2.0.0/24"]
    assert (e["local_id"], e["remote_id"]) == ("site3", "site2")
    assert e["start_action"] == "none" and e["dpd_delay"] == "30s"
    assert e["psk_file"] == str(tmp_path / "secrets" / "site2--site3.psk")
    assert e["esp_proposals"][0] == "aes256gcm16-x25519"
    assert e["negotiated"]["ike"]["encryption"] == "AES_GCM_16_256"
    (to3,) = [x for x in result["plan"]["site2"] if x["peer"] == "site3"]
    assert to3["name"] == "east" and to3["start_action"] == "start"
    assert all(t["psk_present"] is False for t in result["tunnels"])


def test_check_mode_plans_the_same(tmp_path: Path) -> None:
    proc, printed, _ = run(tmp_path, GOOD)
    assert proc.returncode == 0, proc.stdout
    planned = printed[0][2]
    proc, printed, _ = run(tmp_path, GOOD, check=True)
    assert proc.returncode == 0, proc.stdout
    checked = printed[0][2]
    assert checked["plan"] == planned["plan"] and checked["tunnels"] == planned["tunnels"]


def _bad(change: dict[str, dict[str, Any]]) -> dict[str, Any]:
    inv = copy.deepcopy(GOOD)
    hosts = inv["all"]["children"]["sites"]["hosts"]
    for host, values in change.items():
        hosts[host].update(values)
    return inv


BAD: list[tuple[str, dict[str, Any], bool, list[str]]] = [
    (
        "overlapping subnets",
        _bad({"site3": {"ikelab_protected_subnets": ["10.2.0.0/16"]}}), True,
        [
            "host site1, tunnels site1--site2 site1--site3, field ikelab_protected_subnets: overlaps: "
            "10.2.0.0/24 of site2 overlaps 10.2.0.0/16 of site3; site1 cannot route one destination "
            "through two tunnels",
            "host site2, tunnel site2--site3, field ikelab_protected_subnets: overlaps: 10.2.0.0/24 "
            "of site2 overlaps 10.2.0.0/16 of peer site3",
        ],
    ),
    (
        "peer not in the inventory and unknown entry key",
        _bad({"site1": {"ikelab_tunnels": [{"peer": "site7"}, {"peer": "site2", "colour": "red"}]}}), True,
        [
            "host site1, tunnel site1--site2, field ikelab_tunnels[1].colour: unknown key (expected "
            "one of: peer, name, ike_proposals, esp_proposals, version, aggressive, "
            "allow_aggressive_psk, start_action, dpd_delay, rekey_time, child_rekey_time, "
            "dpd_timeout, over_time, rand_time, reauth_time, keyingtries, inactivity_close_ike, "
            "inactivity, dpd_action, close_action, child_life_time, child_rand_time, rekey_bytes, "
            "life_bytes, rekey_packets, life_packets, options)",
            "host site1, tunnel site1--site7, field ikelab_tunnels[0].peer: host site7 is not in the inventory",
        ],
    ),
    (
        "peer outside the play",
        _bad({"site1": {"ikelab_tunnels": [{"peer": "monitor"}]}}), True,
        [
            "host site1, tunnel monitor--site1, field ikelab_tunnels[0].peer: host monitor is not "
            "in the play (only one end of the tunnel would be configured)",
        ],
    ),
    (
        "unknown option and duplicate underlay",
        _bad({
            "site2": {"ikelab_tunnels": [{"peer": "site3", "options": {"dpd_dealy": "30s"}}]},
            "site1": {"ikelab_underlay_address": "192.0.2.13"},
        }), True,
        [
            "host site1, tunnels site1--site2 site1--site3, field ikelab_underlay_address: "
            "duplicate: 192.0.2.13 is also the underlay address of site3",
            "host site2, tunnel site2--site3, field ikelab_tunnels[0].options.dpd_dealy: unknown key",
            "host site3, tunnels site1--site3 site2--site3, field ikelab_underlay_address: "
            "duplicate: 192.0.2.13 is also the underlay address of site1",
        ],
    ),
    (
        "no common proposal",
        _bad({"site2": {"ikelab_ike_proposals": "compat"}}), True,
        [
            "host site2, tunnel site1--site2, field ikelab_ike_proposals: no common IKE proposal "
            "between site1 and site2 in either role",
            "host site2, tunnel site2--site3, field ikelab_ike_proposals: no common IKE proposal "
            "between site2 and site3 in either role",
        ],
    ),
    (
        "missing keys",
        GOOD, False,
        [
            f"host {a}, tunnel {a}--{b}, field psk_file: missing key: "
            for a, b in (("site1", "site2"), ("site1", "site3"), ("site2", "site3"))
        ],
    ),
    (
        "a variable that cannot be templated",
        _bad({"site1": {"ikelab_underlay_address": "{{ no_such_variable }}"}}), True,
        ["host site1, field ikelab_underlay_address: cannot be evaluated: "],
    ),
]  # fmt: skip


@pytest.mark.parametrize(
    ("inventory", "generate_keys", "expected"), [b[1:] for b in BAD], ids=[b[0] for b in BAD]
)
def test_bad_inventory_fails_before_any_other_task(
    tmp_path: Path, inventory: dict[str, Any], generate_keys: bool, expected: list[str]
) -> None:
    proc, printed, out = run(tmp_path, inventory, generate_keys=generate_keys)
    assert proc.returncode != 0
    ((host, status, result),) = printed  # the plan task, and nothing after it
    assert (host, status) == ("site1", "FAILED")
    assert not out.exists()
    lines = result["msg"].splitlines()
    assert lines[0] == f"tunnel plan: {len(expected)} problem(s)"
    assert len(lines[1:]) == len(expected)
    for line, want in zip(lines[1:], expected, strict=True):
        assert line.startswith(want), (line, want)
    assert [p["host"] for p in result["problems"]] == [w.split(",")[0].split()[1] for w in expected]
