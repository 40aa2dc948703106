"""strongSwan's charon inside a User-mode Linux guest, with the kernel's own ESP (kernel-netlink).

In a guest the kernel has ESP, XFRM and their crypto, so charon runs as on a real gateway: its
IPsec backend is the kernel-netlink plugin (SAs and policies through NETLINK_XFRM, raw ESP
unless a NAT is detected), not kernel-libipsec as in the namespace lab (``charon.CharonPeer``).
The swanctl vocabulary (``Connection``, ``Child``, ``Secret``, ``swanctl_conf``, ``render``)
comes from ``ikelab_testing.charon``; only the running differs:

- the daemon's files live in the guest's writable root under ``/run/ikelab-<name>``
  (strongswan.conf, swanctl/swanctl.conf mode 0600, the VICI socket); its file log goes to the
  guest's shared work directory (``guest.dir``), readable on the host as charon writes it;
- charon writes ``/var/run/charon.pid``: the guest's /run is its own tmpfs, so one charon per
  guest needs no mount tricks;
- ``swanctl`` and the VICI queries run in the guest (``Guest.run``): the socket is a guest file.

Usage::

    c = GuestCharon(guest).start()
    c.load([Connection(...)], [Secret(...)])
    c.initiate("net")
    c.wait_child_installed("net")
    c.list_sas()                    # VICI list-sas, as charon.Charon.list_sas
    c.stop()
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from ikelab_testing.charon import (
    CHARON,
    CREDENTIAL_FOLDERS,
    DEFAULT_LOG_LEVELS,
    DEFAULT_PLUGINS,
    CharonError,
    Connection,
    KeyFile,
    Secret,
    plugins_available,
    strongswan_conf,
    swanctl_conf,
)
from ikelab_testing.uml import Guest, GuestProcess, RunResult

__all__ = ["NETLINK_PLUGINS", "CharonError", "GuestCharon"]

# the namespace lab's plugin list without kernel-libipsec: kernel-netlink is then both the
# IPsec backend (XFRM SAs/policies) and the networking one (addresses, routes in table 220)
NETLINK_PLUGINS = tuple(p for p in DEFAULT_PLUGINS if p != "kernel-libipsec")

LAB_PACKAGE_DIR = str(Path(__file__).resolve().parent.parent)  # holds ikelab_testing/

# run in the guest by ``list_sas``: the stdlib-only VICI client of this package, as JSON
_LIST_SAS = (
    "import json, sys\n"
    "sys.path.insert(0, sys.argv[1])\n"
    "from ikelab_testing import vici\n"
    "print(json.dumps(vici.list_sas(sys.argv[2])))\n"
)


class GuestCharon:
    """One charon in ``guest`` (kernel-netlink); ``stop()`` or the guest's end ends it."""

    def __init__(
        self,
        guest: Guest,
        *,
        name: str = "charon",
        plugins: Sequence[str] = NETLINK_PLUGINS,
        log_levels: Mapping[str, int] | None = None,
        options: Mapping[str, Any] | None = None,
    ) -> None:
        self.guest = guest
        self.name = name
        self.plugins = plugins_available(plugins)
        if "kernel-netlink" not in self.plugins:
            raise CharonError("strongSwan's kernel-netlink plugin is not installed")
        self.log_levels = {**DEFAULT_LOG_LEVELS, **(log_levels or {})}
        self.options = dict(options or {})
        self.dir = f"/run/ikelab-{name}"
        self.conf_path = f"{self.dir}/strongswan.conf"
        self.swanctl_dir = f"{self.dir}/swanctl"
        self.swanctl_path = f"{self.swanctl_dir}/swanctl.conf"
        self.vici_path = f"{self.dir}/charon.vici"
        # in the shared work directory: the host reads it while charon writes
        self.log_path = guest.dir / f"{name}.log"
        self.proc: GuestProcess | None = None

    def __repr__(self) -> str:
        return f"GuestCharon({self.name!r} in {self.guest.name})"

    # --- configuration ------------------------------------------------------------------------
    def strongswan_conf(self) -> str:
        return strongswan_conf(
            plugins=self.plugins,
            log_path=str(self.log_path),
            log_levels=self.log_levels,
            vici_path=self.vici_path,
            resolv_path=f"{self.dir}/resolv.conf",
            options=self.options,
        )

    @property
    def env(self) -> dict[str, str]:
        """For charon and swanctl in the guest (SWANCTL_DIR: swanctl's credential folders)."""
        return {"STRONGSWAN_CONF": self.conf_path, "SWANCTL_DIR": self.swanctl_dir}

    # --- lifecycle ----------------------------------------------------------------------------
    def start(self, timeout: float = 120.0) -> GuestCharon:
        """Write the configuration, spawn charon and wait (deadline ``timeout``) until its VICI
        socket answers."""
        folders = " ".join(f"{self.swanctl_dir}/{f}" for f in CREDENTIAL_FOLDERS)
        self.guest.sh(f"umask 077 && mkdir -p {self.dir} {folders}")
        self.guest.put(self.conf_path, self.strongswan_conf(), mode=0o644)
        self.proc = self.guest.spawn(
            [CHARON], self.guest.dir / f"{self.name}.out", env=self.env, cwd=self.dir
        )
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise CharonError(f"{self} exited with {self.proc.poll()}:\n{self.log_tail()}")
            if self.swanctl("--stats", check=False, timeout=30).returncode == 0:
                return self
            if time.monotonic() > deadline:
                raise CharonError(f"{self}: no VICI answer in {timeout:.0f} s:\n{self.log_tail()}")
            time.sleep(0.3)

    def running(self) -> bool:
        return self.proc is not None and self.guest.alive() and self.proc.poll() is None

    def stop(self, timeout: float = 30.0) -> int | None:
        """SIGTERM (SIGKILL after ``timeout``); charon removes its SAs and policies and exits
        0.  None if never started or the guest is gone."""
        if self.proc is None or not self.guest.alive():
            return None
        return self.proc.stop(timeout)

    # --- swanctl ------------------------------------------------------------------------------
    def swanctl(self, *args: str, check: bool = True, timeout: float = 60.0) -> RunResult:
        r = self.guest.run(["swanctl", *args], timeout=timeout, env=self.env)
        if check and r.returncode != 0:
            raise CharonError(
                f"swanctl {' '.join(args)} in {self.guest.name} failed ({r.returncode}):\n"
                f"{r.stdout}{r.stderr}\n--- charon log tail ---\n{self.log_tail()}"
            )
        return r

    def load(
        self, connections: Iterable[Connection], secrets: Iterable[Secret | KeyFile] = ()
    ) -> None:
        """Write swanctl.conf (mode 0600: it holds the PSKs) and load everything in it."""
        self.guest.put(self.swanctl_path, swanctl_conf(connections, secrets), mode=0o600)
        self.swanctl("--load-all", "--noprompt", "--file", self.swanctl_path)

    def initiate(
        self, child: str | None = None, *, ike: str | None = None, timeout: int = 60
    ) -> RunResult:
        args = ["--initiate", "--timeout", str(timeout)]
        if child is not None:
            args += ["--child", child]
        if ike is not None:
            args += ["--ike", ike]
        return self.swanctl(*args, timeout=timeout + 30)

    def terminate(
        self, *, ike: str | None = None, child: str | None = None, timeout: int = 60
    ) -> RunResult:
        args = ["--terminate", "--timeout", str(timeout)]
        if ike is not None:
            args += ["--ike", ike]
        if child is not None:
            args += ["--child", child]
        return self.swanctl(*args, timeout=timeout + 30)

    def list_sas_text(self) -> str:
        return self.swanctl("--list-sas").stdout

    # --- state --------------------------------------------------------------------------------
    def list_sas(self) -> dict[str, Any]:
        """VICI ``list-sas`` in the guest, in the shape of ``charon.Charon.list_sas``."""
        r = self.guest.run(
            [self.guest.uml.python, "-I", "-S", "-c", _LIST_SAS, LAB_PACKAGE_DIR, self.vici_path],
            timeout=120,
        )
        if r.returncode != 0:
            raise CharonError(f"{self}: list-sas failed: {r.stderr}\n{self.log_tail()}")
        return json.loads(r.stdout)

    def children(self, name: str | None = None) -> list[dict[str, Any]]:
        """All CHILD_SAs (optionally only those whose config name is ``name``), each with its
        IKE SA under ``"ike"``."""
        found = []
        for ike in self.list_sas().values():
            for child in ike.get("child-sas", {}).values():
                if name is None or child.get("name") == name:
                    found.append({**child, "ike": ike})
        return found

    def wait_child_installed(self, name: str, timeout: float = 120.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            for child in self.children(name):
                if child.get("state") == "INSTALLED":
                    return child
            if time.monotonic() > deadline:
                raise CharonError(
                    f"{self}: CHILD_SA {name!r} not INSTALLED after {timeout:.0f} s\n"
                    f"{self.log_tail()}"
                )
            time.sleep(0.3)

    # --- logs ---------------------------------------------------------------------------------
    def log_text(self) -> str:
        parts = []
        with contextlib.suppress(OSError):
            parts.append(self.log_path.read_text(errors="replace"))
        if self.proc is not None:
            parts.append(self.proc.log_text())
        return "\n".join(parts)

    def log_tail(self, lines: int = 60) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:])
