"""User-mode Linux guests: real Linux kernels (with ESP, XFRM and their crypto) for tests.

``UmlLab(lab)`` owns one namespace of the ``Lab`` (role ``uml``) holding the bridges; every
``Guest`` is a ``linux.uml`` process (Debian's ``user-mode-linux``) started in that namespace in a
session of its own, booting with the machine's root file system read-only (hostfs) under an
overlay with a tmpfs upper layer, so the checkout, its ``.venv`` and the host's tools (ip, ping,
tcpdump) run inside it unchanged.  ``uml_init.sh`` is its PID 1.

Networking (``vec`` interfaces on tap devices in the lab namespace)::

    guest eth0 (192.0.2.N/24) -- tap uNe0 -- bridge "underlay" -- tap uMe0 -- other guest eth0
    guest prot0 (dummy, 10.N.0.1/24): the "protected subnet"; eth1.. on further bridges if asked
    guest mgmt0, in the guest's own "mgmt" namespace -- tap uNm (point-to-point, 198.19.N.0/30)

Commands reach the guest through a small command server (``uml_guest.py``) listening on the
management link: one JSON request per TCP connection, carrying a per-guest random token.  It
lives in a network namespace of its own inside the guest, so nothing a test does to the guest's
routes, XFRM policies or firewall can cut it off, and captures on the bridges never see it.

Each guest has a host work directory (``guest.dir``, 0700, removed with the lab) holding its
console log, and mounted read-write at the same path inside the guest: a file a guest process
writes there (e.g. the log of ``spawn``) is readable on the host as it is written.
"""

from __future__ import annotations

import base64
import contextlib
import ipaddress
import json
import os
import re
import secrets
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from ansible_collections.ikelab.ipsec.plugins.module_utils.lab.guests import (
    MODULES as GUEST_MODULES,
)
from ansible_collections.ikelab.ipsec.plugins.module_utils.lab.guests import (
    uml_release as guest_uml_release,
)
from ikelab_testing.netns import Lab, Namespace
from ikelab_testing.uml_channel import GuestError, GuestProcess, RunResult, connect_in

__all__ = [
    "Guest",
    "GuestError",
    "GuestProcess",
    "Nic",
    "RunResult",
    "UmlLab",
    "available",
    "route_protected",
]

LINUX_UML = "/usr/bin/linux.uml"
UML_MODULES = Path("/usr/lib/uml/modules")
MODPROBE = "/sbin/modprobe"
HERE = Path(__file__).resolve().parent
INIT = HERE / "uml_init.sh"

# loaded at boot: the lab's list for its guests (XFRM/ESP, tunnel mode, the agent's algorithms),
# and dummy for the protected subnet's interface; the kernel loads anything else through the
# modprobe wrapper
MODULES = ["dummy", *GUEST_MODULES]

BRIDGE_UNDERLAY = "underlay"
UNDERLAY = ipaddress.ip_network("192.0.2.0/24")
MGMT = ipaddress.ip_network("198.19.0.0/16")


def available() -> str | None:
    """None when UML guests can run here, else the reason they cannot."""
    if os.geteuid() != 0:
        return "needs root for UML guests (run: sudo ./scripts/test)"
    if not os.access(LINUX_UML, os.X_OK) or not UML_MODULES.is_dir():
        return "user-mode-linux is not installed (run: sudo ./scripts/setup)"
    if not os.access(MODPROBE, os.X_OK):
        return "kmod is not installed (run: sudo ./scripts/setup)"
    if not os.path.exists("/dev/net/tun"):
        return "no /dev/net/tun for the guests' tap devices"
    if shutil.which("ip") is None:
        return "iproute2 (ip) is not installed (run: sudo ./scripts/setup)"
    return None


def uml_release() -> str:
    """The UML kernel's release (its modules' directory name), as the lab finds it."""
    release = guest_uml_release(str(UML_MODULES))
    if release is None:
        raise RuntimeError(f"no UML modules under {UML_MODULES}")
    return release


@dataclass(frozen=True, slots=True)
class Nic:
    """An extra guest interface (eth1, eth2 ...) on a bridge of the lab namespace."""

    bridge: str
    addresses: tuple[str, ...] = ()


class Guest:
    """One UML guest; made by ``UmlLab.guest``."""

    def __init__(
        self,
        uml: UmlLab,
        name: str,
        index: int,
        mem: str,
        addresses: tuple[str, ...],
        protected: tuple[str, ...],
        nics: tuple[Nic, ...],
    ) -> None:
        self.uml = uml
        self.name = name
        self.index = index
        self.mem = mem
        self.addresses = addresses
        self.protected = protected
        self.nics = (Nic(BRIDGE_UNDERLAY, addresses), *nics)
        self.taps = tuple(f"u{index}e{n}" for n in range(len(self.nics)))
        self.mgmt_tap = f"u{index}m"
        mgmt = list(ipaddress.ip_network(f"{MGMT[index * 4]}/30").hosts())
        self.mgmt_host, self.mgmt_guest = str(mgmt[0]), str(mgmt[1])
        self.dir = uml.lab.workdir(f"uml-{name}")
        self.console_path = self.dir / "console.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self._token = secrets.token_hex(16)
        self._spawned = 0
        self.boot_seconds: float | None = None

    def __repr__(self) -> str:
        return f"Guest({self.name!r}, {self.address})"

    @property
    def address(self) -> str:
        """The first underlay address (without prefix length)."""
        return str(ipaddress.ip_interface(self.addresses[0]).ip)

    @property
    def protected_address(self) -> str:
        """The first protected address (without prefix length)."""
        return str(ipaddress.ip_interface(self.protected[0]).ip)

    @property
    def protected_net(self) -> str:
        """The /24 of the first protected address (``10.2.0.0/24``)."""
        return str(ipaddress.ip_interface(self.protected[0]).network.supernet(new_prefix=24))

    @property
    def tap(self) -> str:
        """The guest's underlay tap (a port of the underlay bridge) in ``uml.ns``."""
        return self.taps[0]

    # --- boot ---------------------------------------------------------------------------------
    def _write_config(self) -> None:
        d = self.dir
        (d / "token").write_text(self._token + "\n")
        (d / "token").chmod(0o600)
        (d / "mgmt_address").write_text(self.mgmt_guest + "\n")
        (d / "python").write_text(self.uml.python + "\n")
        (d / "modules").write_text("\n".join(MODULES) + "\n")
        modroot = d / "modroot" / "lib" / "modules"
        modroot.mkdir(parents=True)
        (modroot / self.uml.release).symlink_to(UML_MODULES / self.uml.release)
        wrapper = d / "modprobe"
        wrapper.write_text(f'#!/bin/sh\nexec {MODPROBE} -d "{d / "modroot"}" "$@"\n')
        wrapper.chmod(0o755)
        (d / "net.sh").write_text(self._net_script())

    def _net_script(self) -> str:
        """Shell run by the guest's init: two ``ip -batch`` runs (each ip start costs ~70 ms
        in a guest), the main namespace's links and the management namespace's."""
        d = self.dir
        main = [f"link set vec{n} name eth{n}" for n in range(len(self.nics))]
        for n, nic in enumerate(self.nics):
            main += [f"addr add {a} dev eth{n}" for a in nic.addresses]
            main.append(f"link set eth{n} up")
        if self.protected:
            main.append("link add prot0 type dummy")
            main += [f"addr add {a} dev prot0" for a in self.protected]
            main.append("link set prot0 up")
        m = len(self.nics)
        main += ["netns add mgmt", f"link set vec{m} netns mgmt"]
        mgmt = [
            f"link set vec{m} name mgmt0",
            f"addr add {self.mgmt_guest}/30 dev mgmt0",
            "link set lo up",
            "link set mgmt0 up",
        ]
        (d / "net-main.batch").write_text("\n".join(main) + "\n")
        (d / "net-mgmt.batch").write_text("\n".join(mgmt) + "\n")
        return (
            f"hostname {_quote(self.name)}\n"
            "echo 0 > /proc/sys/net/ipv6/conf/default/accept_dad\n"
            f"ip -batch {_quote(str(d / 'net-main.batch'))}\n"
            f"ip -n mgmt -batch {_quote(str(d / 'net-mgmt.batch'))}\n"
        )

    def _argv(self) -> list[str]:
        argv = [
            LINUX_UML,
            f"mem={self.mem}",
            f"umid={self.uml.lab.prefix}-{self.name}",
            f"uml_dir={self.dir}",
            "rootfstype=hostfs",
            "rootflags=/",
            "ro",
            "init=/bin/sh",  # runs INIT (after "--"): no need for its exec bit
            f"IKELAB_DIR={self.dir}",
            "con0=null,fd:1",
            "con=null",
            "ssl=null",
            "quiet",
        ]
        argv += [f"vec{n}:transport=tap,ifname={tap},gro=1" for n, tap in enumerate(self.taps)]
        argv.append(f"vec{len(self.taps)}:transport=tap,ifname={self.mgmt_tap}")
        argv += ["--", str(INIT)]
        return argv

    def start(self, timeout: float = 120.0) -> Guest:
        """Boot and wait (deadline ``timeout``) until the command server answers."""
        ns = self.uml.ns
        for tap, nic in zip(self.taps, self.nics, strict=True):
            self.uml.bridge(nic.bridge)
            ns.run(["ip", "tuntap", "add", "dev", tap, "mode", "tap"])
            ns.run(["ip", "link", "set", tap, "master", self.uml.bridges[nic.bridge], "up"])
        ns.run(["ip", "tuntap", "add", "dev", self.mgmt_tap, "mode", "tap"])
        ns.run(["ip", "addr", "add", f"{self.mgmt_host}/30", "dev", self.mgmt_tap])
        ns.run(["ip", "link", "set", self.mgmt_tap, "up"])
        self._write_config()
        env = {
            "PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"),
            "TMPDIR": "/dev/shm",
        }
        t0 = time.monotonic()
        with self.console_path.open("wb") as console:
            self.proc = self.uml.lab.spawn(
                ns.argv(self._argv()), stdout=console, stderr=subprocess.STDOUT, env=env
            )
        self.wait_ready(timeout)
        self.boot_seconds = time.monotonic() - t0
        return self

    def wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            if not self.alive():
                raise GuestError(f"{self.name}: linux.uml exited\n{self.console_tail()}")
            try:
                self._request({"op": "ping"}, timeout=5.0)
                return
            except (OSError, GuestError) as exc:
                if time.monotonic() > deadline:
                    raise GuestError(
                        f"{self.name}: not ready after {timeout:.0f} s ({exc})\n"
                        f"{self.console_tail()}"
                    )
            time.sleep(0.2)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def console_tail(self, lines: int = 40) -> str:
        try:
            text = self.console_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    # --- commands -----------------------------------------------------------------------------
    def _request(self, req: Mapping[str, object], timeout: float = 30.0) -> dict:
        if not self.alive():
            raise GuestError(f"{self.name}: guest is not running")
        body = json.dumps({**req, "token": self._token}).encode() + b"\n"
        with connect_in(self.uml.ns.name, self.mgmt_guest, timeout) as sock:
            sock.sendall(body)
            chunks = []
            while True:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                chunks.append(chunk)
        if not chunks:
            raise GuestError(f"{self.name}: no reply to {req.get('op')}")
        reply = json.loads(b"".join(chunks))
        if "error" in reply:
            raise GuestError(f"{self.name}: {req.get('op')}: {reply['error']}")
        return reply

    def run(
        self,
        argv: Sequence[str],
        timeout: float = 60.0,
        *,
        check: bool = False,
        input: str | bytes | None = None,
        env: Mapping[str, str] | None = None,
        cwd: str | None = None,
    ) -> RunResult:
        """Run ``argv`` as root in the guest's main network namespace; output is text.
        ``timeout`` raises ``subprocess.TimeoutExpired`` (the command's group is killed)."""
        data = input.encode() if isinstance(input, str) else input
        req = {
            "op": "run",
            "argv": list(argv),
            "timeout": timeout,
            "input": base64.b64encode(data).decode() if data is not None else None,
            "env": dict(env or {}),
            "cwd": cwd,
        }
        reply = self._request(req, timeout=timeout + 30.0)
        out = base64.b64decode(reply["stdout"]).decode(errors="replace")
        err = base64.b64decode(reply["stderr"]).decode(errors="replace")
        if reply["timed_out"]:
            raise subprocess.TimeoutExpired(list(argv), timeout, out, err)
        result = RunResult(tuple(argv), int(reply["returncode"]), out, err)
        if check:
            result.check_returncode()
        return result

    def sh(self, script: str, timeout: float = 60.0, *, check: bool = True) -> RunResult:
        """``/bin/sh -c script`` (checked by default)."""
        return self.run(["/bin/sh", "-c", script], timeout, check=check)

    def spawn(
        self,
        argv: Sequence[str],
        log_path: str | os.PathLike[str] | None = None,
        *,
        env: Mapping[str, str] | None = None,
        cwd: str | None = None,
    ) -> GuestProcess:
        """Start a long-running process (own session) with stdout+stderr appended to
        ``log_path``: by default a file in ``guest.dir``, which the host reads directly (any
        path under ``guest.dir`` is shared; another path stays inside the guest)."""
        self._spawned += 1
        if log_path is None:
            log_path = self.dir / f"{Path(argv[0]).name}-{self._spawned}.log"
        req = {
            "op": "spawn",
            "argv": list(argv),
            "log": str(log_path),
            "env": dict(env or {}),
            "cwd": cwd,
        }
        reply = self._request(req)
        return GuestProcess(self, int(reply["pid"]), argv, Path(log_path))

    def put(self, path: str, data: str | bytes, mode: int = 0o644) -> None:
        """Write a file (parents created) in the guest's writable root."""
        raw = data.encode() if isinstance(data, str) else data
        self._request(
            {"op": "put", "path": path, "data": base64.b64encode(raw).decode(), "mode": mode}
        )

    def read(self, path: str) -> str:
        """A text file of the guest."""
        return self.run(["cat", path], check=True).stdout

    def ping(
        self, dst: str, *, count: int = 3, src: str | None = None, wait: float = 2.0
    ) -> RunResult:
        argv = ["ping", "-n", "-c", str(count), "-i", "0.2", "-W", str(wait)]
        if src:
            argv += ["-I", src]
        return self.run([*argv, dst], timeout=count * (0.2 + wait) + 30)

    # --- stop ---------------------------------------------------------------------------------
    def stop(self, timeout: float = 15.0) -> int | None:
        """SIGTERM to ``linux.uml``, SIGKILL of its process group after ``timeout``."""
        proc = self.proc
        if proc is None:
            return None
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                pass
        # kills what is left of the group (UML's helper processes) and forgets the process
        return self.uml.lab.stop(proc, timeout=5.0)


class UmlLab:
    """UML guests on bridges inside one namespace of ``lab`` (role ``uml``); the lab's close
    stops the guests (their ``linux.uml`` runs in that namespace) and removes everything."""

    def __init__(self, lab: Lab) -> None:
        reason = available()
        if reason:
            raise GuestError(reason)
        self.lab = lab
        self.ns: Namespace = lab.namespace("uml")
        # no IPv6 on the host side of the taps: only the guests' own frames cross the bridges
        for key in ("all", "default"):
            self.ns.sysctl(f"net.ipv6.conf.{key}.disable_ipv6", 1)
        self.guests: dict[str, Guest] = {}
        self.bridges: dict[str, str] = {}
        self.release = uml_release()
        self.python = str(Path(sys.executable))

    def bridge(self, name: str) -> str:
        """The device name of bridge ``name`` in ``ns`` (created on first use)."""
        if name not in self.bridges:
            dev = f"br{len(self.bridges)}"
            self.ns.run(
                [
                    "ip",
                    "link",
                    "add",
                    dev,
                    "type",
                    "bridge",
                    "stp_state",
                    "0",
                    "forward_delay",
                    "0",
                    "mcast_snooping",
                    "0",
                ]
            )
            self.ns.run(["ip", "link", "set", dev, "up"])
            self.bridges[name] = dev
        return self.bridges[name]

    def guest(
        self,
        name: str,
        mem: str = "256M",
        addresses: Sequence[str] | None = None,
        *,
        protected: Sequence[str] | None = None,
        nics: Sequence[Nic] = (),
        timeout: float = 120.0,
    ) -> Guest:
        """Boot guest ``name``: eth0 on the underlay bridge with ``addresses`` (default
        192.0.2.<n+1>/24 for the n-th guest), a dummy ``prot0`` with ``protected`` (default
        10.<n+1>.0.1/24; ``()`` for none), ``nics`` as eth1...; returns once its command server
        answers (deadline ``timeout``)."""
        return self._new(name, mem, addresses, protected, nics).start(timeout)

    def boot(self, *names: str, mem: str = "256M", timeout: float = 120.0) -> list[Guest]:
        """Boot several guests with default addresses at once (their boots overlap)."""
        made = [self._new(name, mem, None, None, ()) for name in names]
        errors: list[BaseException] = []

        def start(g: Guest) -> None:
            try:
                g.start(timeout)
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=start, args=(g,)) for g in made]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        if errors:
            raise errors[0]
        return made

    def _new(
        self,
        name: str,
        mem: str,
        addresses: Sequence[str] | None,
        protected: Sequence[str] | None,
        nics: Sequence[Nic],
    ) -> Guest:
        if not re.fullmatch(r"[a-z][a-z0-9-]{0,19}", name):
            raise ValueError(f"guest name {name!r}: lower-case letters, digits, '-'")
        if name in self.guests:
            raise ValueError(f"guest {name!r} exists")
        if not re.fullmatch(r"[0-9]+[KMG]?", mem):
            raise ValueError(f"mem {mem!r}: e.g. 256M")
        index = len(self.guests)
        if addresses is None:
            addresses = (f"{UNDERLAY[index + 1]}/{UNDERLAY.prefixlen}",)
        if protected is None:
            protected = (f"10.{index + 1}.0.1/24",)
        nics = tuple(Nic(n.bridge, _cidrs(n.addresses)) for n in nics)
        # bridges first: guests booting in parallel then only add their own taps
        for bridge in (BRIDGE_UNDERLAY, *(n.bridge for n in nics)):
            self.bridge(bridge)
        g = Guest(self, name, index, mem, _cidrs(addresses), _cidrs(protected), nics)
        self.guests[name] = g
        return g

    def close(self) -> None:
        """Stop every guest (the lab's close would too, less gently)."""
        for g in reversed(list(self.guests.values())):
            g.stop()


def route_protected(a: Guest, b: Guest) -> None:
    """Each guest's route to the other's protected subnet over the underlay, from its own
    protected address (XFRM policies then decide what happens to the packets)."""
    for me, peer in ((a, b), (b, a)):
        me.run(
            ["ip", "route", "add", peer.protected_net, "via", peer.address]
            + ["src", me.protected_address],
            check=True,
        )


def _quote(s: str) -> str:
    return shlex.quote(s)


def _cidrs(values: Sequence[str]) -> tuple[str, ...]:
    """Validated interface addresses (address/prefix), IPv4 or IPv6."""
    return tuple(str(ipaddress.ip_interface(v)) for v in values)
