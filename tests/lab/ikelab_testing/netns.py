"""Network namespaces for the lab: a ``Lab`` owns everything it creates and removes only that.

Every lab gets a unique prefix (``ikl`` + 8 hex digits), so parallel runs, or leftovers of a
killed run, never collide with it; its namespaces are named ``<prefix>-<role>``.  Links,
addresses and routes go through pyroute2 inside the namespace; commands run with
``ip netns exec``.  ``Topology`` builds the standard site-to-site picture::

    hostA(10.1.0.2) -- gwA(10.1.0.1 | 192.0.2.1) -- underlay -- gwB(192.0.2.2 | 10.2.0.1) -- hostB(10.2.0.2)
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import re
import secrets
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from pyroute2 import NetNS, netns

PREFIX_BASE = "ikl"


@dataclass(frozen=True, slots=True)
class PingResult:
    ok: bool
    sent: int
    received: int
    loss: float  # percent
    output: str

    def __str__(self) -> str:
        return f"ping {self.received}/{self.sent} received ({self.loss:.0f}% loss)"


class Namespace:
    """One network namespace created by a ``Lab``."""

    def __init__(self, lab: Lab, name: str, role: str) -> None:
        self.lab = lab
        self.name = name
        self.role = role

    def __repr__(self) -> str:
        return f"Namespace({self.name!r})"

    def __str__(self) -> str:
        return self.name

    def argv(self, argv: Sequence[str]) -> list[str]:
        return ["ip", "netns", "exec", self.name, *argv]

    def run(
        self,
        argv: Sequence[str],
        *,
        check: bool = True,
        timeout: float | None = 30.0,
        env: dict[str, str] | None = None,
        input: str | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """Run a command in the namespace and capture its output (text)."""
        proc = subprocess.run(
            self.argv(argv),
            capture_output=True,
            text=True,
            timeout=timeout,
            env=env,
            input=input,
            check=False,
        )
        if check and proc.returncode != 0:
            raise subprocess.CalledProcessError(
                proc.returncode, proc.args, output=proc.stdout, stderr=proc.stderr
            )
        return proc

    def spawn(
        self,
        argv: Sequence[str],
        *,
        stdout: IO[Any] | int | None = subprocess.DEVNULL,
        stderr: IO[Any] | int | None = subprocess.STDOUT,
        env: dict[str, str] | None = None,
    ) -> subprocess.Popen[bytes]:
        """Start a long-running process in the namespace; the lab stops it on close."""
        return self.lab.spawn(self.argv(argv), stdout=stdout, stderr=stderr, env=env)

    def ipr(self) -> NetNS:
        """A pyroute2 handle inside the namespace (use as a context manager)."""
        return NetNS(self.name)

    def sysctl(self, key: str, value: str | int) -> None:
        path = "/proc/sys/" + key.replace(".", "/")
        self.run(["sh", "-c", f'echo {value} > "$1"', "sysctl", path])

    def link_up(self, ifname: str) -> None:
        with self.ipr() as ipr:
            ipr.link("set", index=_index(ipr, ifname), state="up")

    def add_address(self, ifname: str, cidr: str) -> None:
        iface = ipaddress.ip_interface(cidr)
        with self.ipr() as ipr:
            ipr.addr(
                "add",
                index=_index(ipr, ifname),
                address=str(iface.ip),
                prefixlen=iface.network.prefixlen,
            )

    def add_route(self, dst: str, gateway: str | None = None, dev: str | None = None) -> None:
        with self.ipr() as ipr:
            kwargs: dict[str, Any] = {"dst": dst}
            if gateway is not None:
                kwargs["gateway"] = gateway
            if dev is not None:
                kwargs["oif"] = _index(ipr, dev)
            ipr.route("add", **kwargs)

    def ping(
        self,
        dst: str,
        *,
        count: int = 3,
        interval: float = 0.2,
        wait: float = 1.0,
        size: int | None = None,
    ) -> PingResult:
        """Ping ``dst``; ok means at least one reply arrived."""
        argv = ["ping", "-n", "-c", str(count), "-i", str(interval), "-W", str(wait)]
        if size is not None:
            argv += ["-s", str(size)]
        proc = self.run([*argv, dst], check=False, timeout=count * (interval + wait) + 10)
        out = proc.stdout + proc.stderr
        m = re.search(r"(\d+) packets transmitted, (\d+) received", out)
        sent, received = (int(m.group(1)), int(m.group(2))) if m else (count, 0)
        loss = 100.0 * (sent - received) / sent if sent else 100.0
        return PingResult(ok=received > 0, sent=sent, received=received, loss=loss, output=out)


def _index(ipr: NetNS, ifname: str) -> int:
    found = ipr.link_lookup(ifname=ifname)
    if not found:
        raise LookupError(f"no interface {ifname!r}")
    return int(found[0])


class Lab:
    """Owns namespaces and processes; ``close()`` stops and removes exactly those."""

    def __init__(self, prefix: str | None = None) -> None:
        self.prefix = prefix or f"{PREFIX_BASE}{secrets.token_hex(4)}"
        self.namespaces: dict[str, Namespace] = {}
        self._procs: list[subprocess.Popen[bytes]] = []
        self._dirs: list[Path] = []
        self._closed = False
        # IKELAB_KEEP=1 keeps work directories (configs, logs, pcaps) for a post-mortem
        self.keep_dirs = os.environ.get("IKELAB_KEEP", "") not in ("", "0")

    def __enter__(self) -> Lab:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def namespace(self, role: str) -> Namespace:
        """Create ``<prefix>-<role>`` with its loopback up."""
        if role in self.namespaces:
            raise ValueError(f"namespace role {role!r} exists")
        name = f"{self.prefix}-{role}"
        ns = Namespace(self, name, role)
        # registered first: an interrupt inside create() still leaves it to close()
        self.namespaces[role] = ns
        netns.create(name)
        ns.link_up("lo")
        return ns

    def workdir(self, name: str) -> Path:
        """A private (0700) directory under the system temp dir, removed on close."""
        path = Path(tempfile.mkdtemp(prefix=f"{self.prefix}-{name}-"))
        path.chmod(0o700)
        self._dirs.append(path)
        return path

    def veth(self, a: Namespace, if_a: str, b: Namespace, if_b: str) -> None:
        """A veth pair from ``a``/``if_a`` to ``b``/``if_b``, both ends up.

        The pair is created inside ``a`` with its peer placed directly in ``b``, so nothing ever
        appears in the root namespace and fixed interface names cannot collide between labs."""
        with a.ipr() as ipr:
            ipr.link("add", ifname=if_a, kind="veth", peer={"ifname": if_b, "net_ns_fd": b.name})
            ipr.link("set", index=_index(ipr, if_a), state="up")
        b.link_up(if_b)

    def spawn(
        self,
        argv: Sequence[str],
        *,
        stdout: IO[Any] | int | None = subprocess.DEVNULL,
        stderr: IO[Any] | int | None = subprocess.STDOUT,
        env: dict[str, str] | None = None,
    ) -> subprocess.Popen[bytes]:
        """Start a process in its own session (so its whole group can be stopped)."""
        proc = subprocess.Popen(
            list(argv), stdout=stdout, stderr=stderr, env=env, start_new_session=True
        )
        self._procs.append(proc)
        return proc

    def stop(self, proc: subprocess.Popen[bytes], timeout: float = 5.0) -> int | None:
        """SIGTERM, then SIGKILL the process group after ``timeout``; returns the exit code."""
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(5)
        # stray children of the group (e.g. a shell's exec'd child that forked)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        if proc in self._procs:
            self._procs.remove(proc)
        return proc.returncode

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        # a second Ctrl-C or SIGTERM must not cut the clean-up short
        blocked = {signal.SIGINT, signal.SIGTERM, signal.SIGHUP}
        old_mask = signal.pthread_sigmask(signal.SIG_BLOCK, blocked)
        try:
            self._teardown()
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, old_mask)

    def _teardown(self) -> None:
        for proc in reversed(list(self._procs)):
            self.stop(proc)
        for ns in reversed(list(self.namespaces.values())):
            _kill_pids_in(ns.name)
            if os.path.exists(f"/run/netns/{ns.name}"):
                with contextlib.suppress(OSError):
                    netns.remove(ns.name)
        self.namespaces.clear()
        if not self.keep_dirs:
            for path in self._dirs:
                shutil.rmtree(path, ignore_errors=True)


def _kill_pids_in(name: str) -> None:
    """Kill processes left in a namespace this lab created (e.g. started by a test by hand)."""
    proc = subprocess.run(["ip", "netns", "pids", name], capture_output=True, text=True)
    for pid in proc.stdout.split():
        with contextlib.suppress(ProcessLookupError, ValueError):
            os.kill(int(pid), signal.SIGKILL)
    if proc.stdout.strip():
        time.sleep(0.05)


@dataclass(frozen=True, slots=True)
class TopologySpec:
    """Addresses of the standard picture; the defaults are the documented ones."""

    subnet_a: str = "10.1.0.0/24"
    subnet_b: str = "10.2.0.0/24"
    underlay: str = "192.0.2.0/24"
    mtu: int = 1500

    def host(self, subnet: str, n: int) -> str:
        return str(ipaddress.ip_network(subnet)[n])

    @property
    def gw_a_outer(self) -> str:
        return self.host(self.underlay, 1)

    @property
    def gw_b_outer(self) -> str:
        return self.host(self.underlay, 2)

    @property
    def gw_a_inner(self) -> str:
        return self.host(self.subnet_a, 1)

    @property
    def gw_b_inner(self) -> str:
        return self.host(self.subnet_b, 1)

    @property
    def host_a_addr(self) -> str:
        return self.host(self.subnet_a, 2)

    @property
    def host_b_addr(self) -> str:
        return self.host(self.subnet_b, 2)


# interface names inside the namespaces (private to each namespace, so fixed)
WAN = "wan0"  # gateway's underlay side
LAN = "lan0"  # gateway's protected side
HOST_IF = "eth0"  # host's only interface


@dataclass(frozen=True, slots=True)
class Site:
    """One side of the picture as a peer sees it."""

    name: str  # "a" or "b"
    gw: Namespace
    host: Namespace
    outer: str  # gateway's underlay address
    inner: str  # gateway's address in its protected subnet
    host_addr: str
    subnet: str
    wan: str = WAN
    lan: str = LAN


class Topology:
    """The standard two-site picture; gateways forward, hosts route via their gateway, and the
    gateways have no route to the other subnet (so nothing passes until a tunnel does)."""

    def __init__(self, lab: Lab, spec: TopologySpec | None = None) -> None:
        self.lab = lab
        self.spec = spec or TopologySpec()
        self.built = False

    def build(self) -> Topology:
        s = self.spec
        lab = self.lab
        self.host_a = lab.namespace("ha")
        self.gw_a = lab.namespace("ga")
        self.gw_b = lab.namespace("gb")
        self.host_b = lab.namespace("hb")
        for gw in (self.gw_a, self.gw_b):
            gw.sysctl("net.ipv4.ip_forward", 1)
        lab.veth(self.gw_a, WAN, self.gw_b, WAN)
        lab.veth(self.gw_a, LAN, self.host_a, HOST_IF)
        lab.veth(self.gw_b, LAN, self.host_b, HOST_IF)
        plen_u = ipaddress.ip_network(s.underlay).prefixlen
        plen_a = ipaddress.ip_network(s.subnet_a).prefixlen
        plen_b = ipaddress.ip_network(s.subnet_b).prefixlen
        self.gw_a.add_address(WAN, f"{s.gw_a_outer}/{plen_u}")
        self.gw_b.add_address(WAN, f"{s.gw_b_outer}/{plen_u}")
        self.gw_a.add_address(LAN, f"{s.gw_a_inner}/{plen_a}")
        self.gw_b.add_address(LAN, f"{s.gw_b_inner}/{plen_b}")
        self.host_a.add_address(HOST_IF, f"{s.host_a_addr}/{plen_a}")
        self.host_b.add_address(HOST_IF, f"{s.host_b_addr}/{plen_b}")
        self.host_a.add_route("0.0.0.0/0", gateway=s.gw_a_inner)
        self.host_b.add_route("0.0.0.0/0", gateway=s.gw_b_inner)
        self.site_a = Site(
            "a", self.gw_a, self.host_a, s.gw_a_outer, s.gw_a_inner, s.host_a_addr, s.subnet_a
        )
        self.site_b = Site(
            "b", self.gw_b, self.host_b, s.gw_b_outer, s.gw_b_inner, s.host_b_addr, s.subnet_b
        )
        self.built = True
        return self

    def sites(self) -> tuple[Site, Site]:
        return self.site_a, self.site_b

    def describe(self) -> str:
        s = self.spec
        return (
            f"hostA({s.host_a_addr}) -- gwA({s.gw_a_inner} | {s.gw_a_outer}) -- underlay -- "
            f"gwB({s.gw_b_outer} | {s.gw_b_inner}) -- hostB({s.host_b_addr})"
        )


@contextlib.contextmanager
def topology(spec: TopologySpec | None = None) -> Iterator[Topology]:
    """A fresh lab with the standard picture, removed on exit."""
    with Lab() as lab:
        yield Topology(lab, spec).build()
