"""What the lab writes: the inventory (read back by Ansible itself), known_hosts, the site init's
config and the containerlab topology."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from ansible_collections.ikelab.ipsec.plugins.module_utils.lab.plan import (
    LabParameterError,
    LabSpec,
    build_plan,
)
from ansible_collections.ikelab.ipsec.plugins.module_utils.lab.render import (
    MARKER,
    render_containerlab,
    render_inventory,
    render_known_hosts,
    render_site_config,
)

KEY = "/srv/lab dir/id_ed25519"  # a space, to prove the ssh arguments are quoted
KNOWN = "/srv/lab dir/known_hosts"
ROOT = Path(__file__).resolve().parents[3]


def _plan(sites: int = 3, **kw: str):  # type: ignore[no-untyped-def]
    return build_plan(LabSpec.parse("ikl", sites, **kw))


def test_inventory_follows_the_contract() -> None:
    text = render_inventory(_plan(), KEY, KNOWN)
    assert text.startswith(MARKER)
    data = yaml.safe_load(text)
    group = data["all"]["children"]["sites"]
    assert list(group["hosts"]) == ["site1", "site2", "site3"]
    site2 = group["hosts"]["site2"]
    assert site2["ansible_host"] == "198.18.0.12"
    assert site2["ikelab_underlay_address"] == "192.0.2.12"
    assert site2["ikelab_protected_subnets"] == ["10.2.0.0/24"]
    assert site2["ikelab_lan_address"] == "10.2.0.1"
    assert site2["ikelab_lan_host"] == "10.2.0.10"
    assert site2["ikelab_lab_netns"] == "ikl-site2"
    assert site2["ikelab_lab_lan_netns"] == "ikl-site2-lan"
    gv = group["vars"]
    assert gv["ansible_user"] == "root"
    assert gv["ansible_python_interpreter"] == "/usr/bin/python3"
    assert gv["ansible_ssh_private_key_file"] == KEY
    assert gv["ikelab_topology"] == {"type": "full_mesh", "group": "sites"}
    args = shlex.split(gv["ansible_ssh_common_args"])
    assert f"UserKnownHostsFile={KNOWN}" in args
    assert "IdentitiesOnly=yes" in args
    assert "ControlPath" not in gv["ansible_ssh_common_args"]
    assert render_inventory(_plan(), KEY, KNOWN) == text  # deterministic


def test_ansible_reads_the_inventory(tmp_path: Path) -> None:
    inv = tmp_path / "hosts.yml"
    inv.write_text(render_inventory(_plan(2), KEY, KNOWN))
    tool = Path(sys.executable).with_name("ansible-inventory")
    if not tool.exists():
        pytest.skip("ansible-inventory is not installed beside this python")
    env = {**os.environ, "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg")}
    out = subprocess.run(
        [str(tool), "-i", str(inv), "--list"], capture_output=True, text=True, env=env, check=True
    )
    data = json.loads(out.stdout)
    assert sorted(data["sites"]["hosts"]) == ["site1", "site2"]
    hostvars = data["_meta"]["hostvars"]["site1"]
    assert hostvars["ansible_host"] == "198.18.0.11"
    assert hostvars["ansible_user"] == "root"
    assert hostvars["ikelab_topology"]["type"] == "full_mesh"


def test_known_hosts_lists_each_address_with_its_key() -> None:
    text = render_known_hosts(
        [
            ("198.18.0.11", "ssh-ed25519 AAAAC3one ikl-site1"),
            ("198.18.0.12", "ssh-ed25519 AAAAC3two"),
        ]
    )
    assert text == "198.18.0.11 ssh-ed25519 AAAAC3one\n198.18.0.12 ssh-ed25519 AAAAC3two\n"


def test_site_config_tells_the_init_what_to_announce() -> None:
    site = _plan().sites[0]
    data = json.loads(render_site_config(site, "/lab/sites/site1/key", "/lab/id.pub"))
    assert data["hostname"] == "site1"
    assert data["management_address"] == "198.18.0.11"
    assert data["announce"] == [
        ["mgmt0", "198.18.0.11"],
        ["wan0", "192.0.2.11"],
        ["lan0", "10.1.0.1"],
    ]
    assert data["host_key"] == "/lab/sites/site1/key"
    assert data["authorized_keys"] == "/lab/id.pub"


def test_containerlab_topology_mirrors_the_lab() -> None:
    text = render_containerlab(_plan(3), "example/image:1")
    assert text.startswith(MARKER)
    data = yaml.safe_load(text)
    assert data["name"] == "ikl"
    assert data["mgmt"]["ipv4-subnet"] == "198.18.0.0/24"
    topo = data["topology"]
    assert topo["kinds"]["linux"]["image"] == "example/image:1"
    nodes = topo["nodes"]
    assert set(nodes) == {"wan", "site1", "site2", "site3", "site1-lan", "site2-lan", "site3-lan"}
    assert nodes["site2"]["mgmt-ipv4"] == "198.18.0.12"
    assert "ip addr add 192.0.2.12/24 dev wan0" in nodes["site2"]["exec"]
    assert "ip addr add 10.2.0.1/24 dev lan0" in nodes["site2"]["exec"]
    assert "ip addr add 10.2.0.10/24 dev eth1" in nodes["site2-lan"]["exec"]
    mgmt = [n["mgmt-ipv4"] for n in nodes.values()]
    assert len(set(mgmt)) == len(mgmt)
    assert "198.18.0.1" not in mgmt  # the gateway's
    endpoints = [tuple(link["endpoints"]) for link in topo["links"]]
    assert ("site1:wan0", "wan:site1") in endpoints
    assert ("site3:lan0", "site3-lan:eth1") in endpoints
    assert len(endpoints) == 6
    # every interface a link names is unique on its node
    ends = [e for pair in endpoints for e in pair]
    assert len(set(ends)) == len(ends)


def test_containerlab_needs_room_for_the_lan_hosts() -> None:
    plan = _plan(3, management_network="198.18.0.0/28")  # 3 sites fit, not 3 more hosts
    with pytest.raises(LabParameterError) as err:
        render_containerlab(plan)
    assert err.value.field == "containerlab_file"
