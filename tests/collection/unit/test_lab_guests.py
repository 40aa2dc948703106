"""The lab's ``uml`` engine, without booting a guest: its parameters, the site config and
inventory it writes, the guest's NIC set-up, kernel command line and boot files."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from ansible_collections.ikelab.ipsec.plugins.module_utils.lab import guests
from ansible_collections.ikelab.ipsec.plugins.module_utils.lab.plan import (
    LabParameterError,
    LabSpec,
    build_plan,
)
from ansible_collections.ikelab.ipsec.plugins.module_utils.lab.render import (
    inventory_data,
    site_config,
)

ROOT = Path(__file__).resolve().parents[3]
INIT = ROOT / "roles" / "lab" / "files" / "ikelab_site_init.py"


def test_engine_and_guest_memory_are_checked() -> None:
    assert LabSpec.parse("ikl", 2).engine == "netns"
    spec = LabSpec.parse("ikl", 2, engine="uml", guest_memory=512)
    assert (spec.engine, spec.guest_memory) == ("uml", 512)
    with pytest.raises(LabParameterError) as info:
        LabSpec.parse("ikl", 2, engine="qemu")
    assert info.value.field == "engine" and "netns, uml" in str(info.value)
    for bad in (64, 5000, "256", True, 256.0):
        with pytest.raises(LabParameterError) as info:
            LabSpec.parse("ikl", 2, engine="uml", guest_memory=bad)  # type: ignore[arg-type]
        assert info.value.field == "guest_memory", bad


def test_site_config_of_a_guest_names_its_nics() -> None:
    plan = build_plan(LabSpec.parse("ikl", 2, engine="uml"))
    site = plan.sites[1]
    netns = site_config(site, "/k", "/a")
    assert netns["engine"] == "netns" and "guest" not in netns
    config = site_config(site, "/k", "/a", "uml", 384)
    assert config["engine"] == "uml"
    guest = config["guest"]
    assert guest["memory"] == 384
    assert [(n["name"], n["carrier"], n["address"]) for n in guest["nics"]] == [
        ("mgmt0", "mgmt0", "198.18.0.12/24"),
        ("wan0", "wan0", "192.0.2.12/24"),
        ("lan0", "lan0", "10.2.0.1/24"),
    ]
    macs = [n["mac"] for n in guest["nics"]]
    # unicast, locally administered, stable, and not the MACs of the namespace's carriers
    assert all(int(m[:2], 16) & 0b11 == 0b10 for m in macs)
    assert macs == [n["mac"] for n in site_config(site, "/k", "/a", "uml")["guest"]["nics"]]
    assert not set(macs) & {site.mac("mgmt0"), site.mac("wan0"), site.mac("lan0")}
    assert len(set(macs)) == 3
    hosts = inventory_data(plan, "/k", "/kh")["all"]["children"]["sites"]["hosts"]
    assert {h["ikelab_lab_engine"] for h in hosts.values()} == {"uml"}


def test_net_batch_names_addresses_and_raises_each_nic() -> None:
    plan = build_plan(LabSpec.parse("ikl", 1, engine="uml"))
    nics = site_config(plan.sites[0], "/k", "/a", "uml")["guest"]["nics"]
    lines = guests.net_batch(nics).splitlines()
    assert lines[0] == "link set lo up"
    assert lines[1:5] == [
        "link set vec0 name mgmt0",
        f"link set dev mgmt0 address {nics[0]['mac']}",
        "addr add 198.18.0.11/24 dev mgmt0",
        "link set mgmt0 up",
    ]
    assert "link set vec2 name lan0" in lines and "addr add 10.1.0.1/24 dev lan0" in lines


def test_kernel_command_line() -> None:
    plan = build_plan(LabSpec.parse("ikl", 1, engine="uml"))
    config = site_config(plan.sites[0], "/k", "/a", "uml", 300)
    argv = guests.guest_argv("/srv/lab/sites/site1", str(INIT), config)
    assert argv[0] == "/usr/bin/linux.uml"
    assert "mem=300M" in argv and "umid=ikl-site1" in argv
    assert {"rootfstype=hostfs", "rootflags=/", "ro"} <= set(argv)
    assert "IKELAB_GUEST_DIR=/srv/lab/sites/site1/guest" in argv
    vecs = [a for a in argv if a.startswith("vec")]
    assert vecs == [
        "vec0:transport=raw,ifname=mgmt0,gro=1",
        "vec1:transport=raw,ifname=wan0,gro=1",
        "vec2:transport=raw,ifname=lan0,gro=1",
    ]
    assert argv[-2:] == ["--", str(INIT.parent / "ikelab_guest_init.sh")]


@pytest.mark.skipif(guests.uml_release() is None, reason="user-mode-linux is not installed")
def test_boot_files_hold_the_site_init_and_its_secrets_privately(tmp_path: Path) -> None:
    host_key, authorized = tmp_path / "hk", tmp_path / "ak.pub"
    host_key.write_text("PRIVATE HOST KEY\n")
    authorized.write_text("ssh-ed25519 AAAA lab\n")
    plan = build_plan(LabSpec.parse("ikl", 1, engine="uml"))
    config = site_config(plan.sites[0], str(host_key), str(authorized), "uml")
    state = tmp_path / "site1"
    state.mkdir()
    guests.write_guest_files(str(state), config, str(INIT))
    d = state / "guest"
    assert stat.S_IMODE(d.stat().st_mode) == 0o700
    assert os.access(d / "modprobe", os.X_OK)
    assert f'-d "{d}/modroot"' in (d / "modprobe").read_text()
    release = guests.uml_release()
    assert (d / "modroot" / "lib" / "modules" / str(release) / "modules.dep").exists()
    assert {"esp4", "xfrm_user", "gcm"} <= set((d / "modules").read_text().split())
    boot = d / "boot"
    assert sorted(p.name for p in boot.iterdir()) == sorted(
        [*guests.BOOT_FILES, "site.json", "ssh_host_ed25519_key", "authorized_keys"]
    )
    inside = json.loads((boot / "site.json").read_text())
    # the guest reads its ssh material from the copy it makes at boot
    assert inside["host_key"] == "/run/ikelab-boot/ssh_host_ed25519_key"
    assert inside["authorized_keys"] == "/run/ikelab-boot/authorized_keys"
    assert (boot / "ssh_host_ed25519_key").read_text() == "PRIVATE HOST KEY\n"
    assert stat.S_IMODE((boot / "ssh_host_ed25519_key").stat().st_mode) == 0o600
    # rewritten from scratch at the next start
    (d / "stale").write_text("x")
    guests.write_guest_files(str(state), config, str(INIT))
    assert not (d / "stale").exists()
