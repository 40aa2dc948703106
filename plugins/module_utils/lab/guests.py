# Copyright: contributors to the ikelab.ipsec collection
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The ``uml`` engine of the lab: a site's gateway is a User-mode Linux guest, a real Linux
kernel with ESP, XFRM and their crypto, so the agent's kernel data plane runs in a lab.

The guest is Debian's ``linux.uml`` (package ``user-mode-linux``) started inside the site's
network namespace, so the lab's plumbing is the same as with the ``netns`` engine: its three
interfaces are ``vector`` NICs on raw sockets bound to the namespace's ``mgmt0``, ``wan0`` and
``lan0`` veth ends, which carry no address of their own (the guest has them). It boots with
this machine's root file system read-only (hostfs) under an overlay with a tmpfs upper layer,
loads the XFRM/ESP modules through a ``modprobe`` wrapper that points at the UML kernel's
modules, configures its interfaces and then runs the same site init as the ``netns`` engine
(sshd on the management address, the lab's service supervisor) as its PID 1.

Everything a guest needs is written under its site directory (``guest/``); nothing else on
the machine is touched. Its record is the ``linux.uml`` process: it runs in the site's network
namespace, so ``sites.running_init`` and ``sites.stop_site`` serve both engines.
"""

from __future__ import annotations

import json
import os
import shutil
import time

from ansible_collections.ikelab.ipsec.plugins.module_utils.lab.network import (
    LabError,
    netns_path,
)
from ansible_collections.ikelab.ipsec.plugins.module_utils.lab.sites import (
    CLEAN_ENV,
    InitRecord,
    launch,
    log_tail,
    save_record,
    starttime,
)

LINUX_UML = "/usr/bin/linux.uml"
UML_MODULES = "/usr/lib/uml/modules"
MODPROBE = "/sbin/modprobe"
GUEST_INIT = "ikelab_guest_init.sh"  # beside the site init, in the role's files
GUEST_DIR = "guest"

# loaded at boot: XFRM and ESP (NAT-T's ESP in UDP is part of esp4/esp6), tunnel mode, the
# algorithms the agent offers, TUN for the userspace data plane; the guest kernel loads
# anything else it needs through the wrapper
MODULES = (
    "ipv6",
    "xfrm_user",
    "xfrm_algo",
    "esp4",
    "esp6",
    "xfrm4_tunnel",
    "tunnel4",
    "xfrm6_tunnel",
    "tunnel6",
    "gcm",
    "ghash-generic",
    "ctr",
    "cbc",
    "authenc",
    "authencesn",
    "seqiv",
    "echainiv",
    "hmac",
    "sha256_generic",
    "sha512_generic",
    "chacha20poly1305",
    "chacha_generic",
    "poly1305_generic",
    "tun",
)


def uml_release(modules: str = UML_MODULES) -> str | None:
    """The UML kernel's release (the directory of its modules), None when not installed."""
    try:
        names = sorted(
            n
            for n in os.listdir(modules)
            if os.path.exists(os.path.join(modules, n, "modules.dep"))
        )
    except OSError:
        return None
    return names[-1] if names else None


def check_tools(init_script: str) -> None:
    """What the ``uml`` engine needs on this machine, each missing piece named."""
    if not os.access(LINUX_UML, os.X_OK) or uml_release() is None:
        raise LabError(
            f"engine uml needs User-mode Linux: {LINUX_UML} and its modules under "
            f"{UML_MODULES} (apt-get install user-mode-linux)",
            field="engine",
        )
    if not os.access(MODPROBE, os.X_OK):
        raise LabError(f"engine uml needs {MODPROBE} (apt-get install kmod)", field="engine")
    guest_init = os.path.join(os.path.dirname(init_script), GUEST_INIT)
    if not os.path.isfile(guest_init):
        raise LabError(f"the guest init {guest_init} does not exist", field="init_script")
    if not os.path.isdir("/dev/shm"):
        raise LabError("engine uml needs /dev/shm for the guests' memory", field="engine")


def guest_dir(state_dir: str) -> str:
    return os.path.join(state_dir, GUEST_DIR)


def net_batch(nics: list[dict[str, str]]) -> str:
    """``ip -batch`` input that names, addresses and raises the guest's NICs (``vecN`` in the
    order of the kernel command line)."""
    lines = ["link set lo up"]
    for n, nic in enumerate(nics):
        name = nic["name"]
        lines += [
            f"link set vec{n} name {name}",
            f"link set dev {name} address {nic['mac']}",
            f"addr add {nic['address']} dev {name}",
            f"link set {name} up",
        ]
    return "\n".join(lines) + "\n"


BOOT_FILES = ("ikelab_site_init.py", "ikelab_supervisor.py", "ikelab_service.py")
BOOT_DIR_IN_GUEST = "/run/ikelab-boot"  # where the guest init copies boot/


def write_guest_files(state_dir: str, config: dict, init_script: str) -> None:
    """The guest's boot material under ``state_dir/guest`` (rewritten at every start): the
    modprobe wrapper and the module tree it points at, the module list, the NIC set-up, and in
    ``boot/`` the site init with its config and ssh material (copied into the guest at boot)."""
    release = uml_release()
    if release is None:
        raise LabError(f"no UML modules under {UML_MODULES}", field="engine")
    d = guest_dir(state_dir)
    if os.path.isdir(d):
        shutil.rmtree(d)
    modroot = os.path.join(d, "modroot", "lib", "modules")
    os.makedirs(modroot, mode=0o700)
    os.chmod(d, 0o700)
    os.symlink(os.path.join(UML_MODULES, release), os.path.join(modroot, release))
    _write(
        os.path.join(d, "modprobe"), f'#!/bin/sh\nexec {MODPROBE} -d "{d}/modroot" "$@"\n', 0o755
    )
    _write(os.path.join(d, "modules"), "\n".join(MODULES) + "\n")
    _write(os.path.join(d, "net.batch"), net_batch(config["guest"]["nics"]))
    boot = os.path.join(d, "boot")
    os.mkdir(boot, 0o700)
    here = os.path.dirname(init_script)
    for name in BOOT_FILES:
        shutil.copyfile(os.path.join(here, name), os.path.join(boot, name))
    inside = dict(config)
    for key, name in (("host_key", "ssh_host_ed25519_key"), ("authorized_keys", "authorized_keys")):
        shutil.copyfile(config[key], os.path.join(boot, name))
        os.chmod(os.path.join(boot, name), 0o600)
        inside[key] = f"{BOOT_DIR_IN_GUEST}/{name}"
    _write(os.path.join(boot, "site.json"), json.dumps(inside, indent=2, sort_keys=True) + "\n")


def _write(path: str, text: str, mode: int = 0o600) -> None:
    with open(path, "w") as f:
        f.write(text)
    os.chmod(path, mode)


def guest_argv(state_dir: str, init_script: str, config: dict) -> list[str]:
    guest = config["guest"]
    d = guest_dir(state_dir)
    argv = [
        LINUX_UML,
        f"mem={int(guest['memory'])}M",
        f"umid={config['lab']}-{config['site']}",
        f"uml_dir={d}",
        "rootfstype=hostfs",
        "rootflags=/",
        "ro",
        "init=/bin/sh",  # runs the guest init given after "--" (no exec bit needed)
        f"IKELAB_GUEST_DIR={d}",
        "con0=null,fd:1",
        "con=null",
        "ssl=null",
        "quiet",
    ]
    # raw sockets on the namespace's veth ends; gro=1 (virtio-net headers) or bulk TCP crawls
    argv += [
        f"vec{n}:transport=raw,ifname={nic['carrier']},gro=1" for n, nic in enumerate(guest["nics"])
    ]
    argv += ["--", os.path.join(os.path.dirname(init_script), GUEST_INIT)]
    return argv


def start_guest(netns: str, state_dir: str, init_script: str, site_config: str) -> InitRecord:
    """Boot the site's guest inside ``netns`` (detached, in a session of its own) and record
    the ``linux.uml`` process as the site's init."""
    with open(site_config) as f:
        config = json.load(f)
    write_guest_files(state_dir, config, init_script)
    argv = [
        shutil.which("nsenter") or "nsenter",
        f"--net={netns_path(netns)}",
        "--",
        *guest_argv(state_dir, init_script, config),
    ]
    # UML backs the guest's memory with a file in TMPDIR: keep it in memory
    proc = launch(argv, state_dir, {**CLEAN_ENV, "TMPDIR": "/dev/shm"})
    # nsenter execs linux.uml in place: the process is the guest's kernel
    deadline = time.monotonic() + 10.0
    while True:
        st = starttime(proc.pid)
        if st is not None and _is_uml(proc.pid):
            break
        if proc.poll() is not None or time.monotonic() > deadline:
            raise LabError(
                f"the guest of {netns} did not start (exit {proc.poll()}):\n{log_tail(state_dir)}"
            )
        time.sleep(0.01)
    proc.returncode = 0  # the module does not wait for the guest
    return save_record(state_dir, InitRecord(proc.pid, st, proc.pid))


def _is_uml(pid: int) -> bool:
    try:
        return os.path.realpath(f"/proc/{pid}/exe") == os.path.realpath(LINUX_UML)
    except OSError:
        return False
