"""Two userspace data planes in network namespaces, wired with manually keyed SA pairs.

Topology (all inside namespaces this test creates and deletes)::

    ns A: lo 10.1.0.1/32, ipsec0 (TUN)      ns B: lo 10.2.0.1/32, ipsec0 (TUN)
          veth 192.0.2.1/24  <------------------->  veth 192.0.2.2/24

Each data plane runs in a driver process inside its namespace (this file run as a script), reads
commands on stdin and answers with JSON lines. Proof that the tunnel works (design.md, Tests):
the SAs are installed with the expected algorithms; a ping from 10.1.0.1 reaches 10.2.0.1
(and did not before the tunnel); the capture on the veth holds only UDP 4500 ESP, never ICMP;
the counters rose on both sides.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = os.geteuid() == 0 if hasattr(os, "geteuid") else False
TOOLS = all(shutil.which(t) for t in ("ip", "ping", "tcpdump"))

pytestmark = [
    pytest.mark.netns,
    pytest.mark.skipif(not (ROOT and TOOLS), reason="needs root, ip, ping and tcpdump"),
]

# algorithms: (encr id, encr key length incl. salt, integ id or None, integ key length)
SUITES = {
    "aes128gcm16": (20, 20, None, 0),
    "aes256-sha256": (12, 32, 12, 32),
    "chacha20poly1305": (28, 36, None, 0),
}


# -- namespace helpers (reusable by other tests of this file) --------------------------------


def sh(*args: str, check: bool = True, timeout: float = 20) -> subprocess.CompletedProcess:
    return subprocess.run(args, check=check, capture_output=True, text=True, timeout=timeout)


def in_ns(
    ns: str, *args: str, check: bool = True, timeout: float = 20
) -> subprocess.CompletedProcess:
    return sh("ip", "netns", "exec", ns, *args, check=check, timeout=timeout)


@dataclass(frozen=True)
class Site:
    ns: str
    veth: str
    outer: str  # gateway address on the veth
    inner: str  # protected address (on lo)
    subnet: str  # protected subnet (traffic selector)


@contextlib.contextmanager
def two_sites() -> Iterator[tuple[Site, Site]]:
    tag = f"{os.getpid() % 100000}"
    a = Site(f"ikl-dpa-{tag}", "dpa0", "192.0.2.1", "10.1.0.1", "10.1.0.0/24")
    b = Site(f"ikl-dpb-{tag}", "dpb0", "192.0.2.2", "10.2.0.1", "10.2.0.0/24")
    try:
        for site in (a, b):
            sh("ip", "netns", "add", site.ns)
            in_ns(site.ns, "ip", "link", "set", "lo", "up")
            in_ns(site.ns, "ip", "addr", "add", f"{site.inner}/32", "dev", "lo")
        sh(
            "ip",
            "link",
            "add",
            a.veth,
            "netns",
            a.ns,
            "type",
            "veth",
            "peer",
            "name",
            b.veth,
            "netns",
            b.ns,
        )
        for site in (a, b):
            in_ns(site.ns, "ip", "addr", "add", f"{site.outer}/24", "dev", site.veth)
            in_ns(site.ns, "ip", "link", "set", site.veth, "up")
        yield a, b
    finally:
        for site in (a, b):
            sh("ip", "netns", "del", site.ns, check=False)


class Driver:
    """A data plane running in a namespace, driven over stdin/stdout JSON lines."""

    def __init__(self, site: Site, config: dict) -> None:
        self.proc = subprocess.Popen(
            ["ip", "netns", "exec", site.ns, sys.executable, __file__, "--driver"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.ask({"op": "start", **config})

    def ask(self, request: dict) -> dict:
        assert self.proc.stdin and self.proc.stdout
        self.proc.stdin.write(json.dumps(request) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            err = self.proc.stderr.read() if self.proc.stderr else ""
            raise RuntimeError(f"driver died: {err}")
        answer = json.loads(line)
        if "error" in answer:
            raise RuntimeError(answer["error"])
        return answer

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.ask({"op": "quit"})
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def keys_for(suite: str, seed: int) -> dict:
    encr, klen, integ, ilen = SUITES[suite]
    material = bytes((seed * 31 + i) & 0xFF for i in range(klen + ilen))
    return {
        "encr_id": encr,
        "encr_key": material[:klen].hex(),
        "integ_id": integ,
        "integ_key": material[klen:].hex(),
    }


def child_config(local: Site, remote: Site, suite: str, spi_in: int, spi_out: int) -> dict:
    return {
        "reqid": 1,
        "local_addr": local.outer,
        "remote_addr": remote.outer,
        "local_ts": local.subnet,
        "remote_ts": remote.subnet,
        "in": {"spi": spi_in, **keys_for(suite, spi_in)},
        "out": {"spi": spi_out, **keys_for(suite, spi_out)},
    }


@contextlib.contextmanager
def tunnel(suite: str, options: dict | None = None) -> Iterator[tuple[Site, Site, Driver, Driver]]:
    with two_sites() as (a, b):
        drivers = []
        try:
            da = Driver(a, {"bind": a.outer, "options": options or {}})
            drivers.append(da)
            db = Driver(b, {"bind": b.outer, "options": options or {}})
            drivers.append(db)
            yield a, b, da, db
        finally:
            for driver in drivers:
                driver.close()


def install(a: Site, b: Site, da: Driver, db: Driver, suite: str) -> None:
    da.ask({"op": "install", **child_config(a, b, suite, 0xA0000001, 0xB0000001)})
    db.ask({"op": "install", **child_config(b, a, suite, 0xB0000001, 0xA0000001)})


@contextlib.contextmanager
def capture(site: Site, path: Path) -> Iterator[None]:
    """tcpdump on the site's veth, all protocols, while the body runs."""
    proc = subprocess.Popen(
        ["ip", "netns", "exec", site.ns, "tcpdump", "-i", site.veth, "-n", "-U", "-w", str(path)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stderr is not None
        line = proc.stderr.readline()  # "listening on ..." once the capture runs
        assert "listening" in line, line
        yield
        time.sleep(0.3)
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def read_capture(path: Path) -> list[str]:
    out = sh("tcpdump", "-n", "-r", str(path)).stdout
    return [line for line in out.splitlines() if line.strip()]


# -- tests -----------------------------------------------------------------------------------


@pytest.mark.parametrize("suite", list(SUITES))
def test_ping_crosses_encrypted(suite: str, tmp_path: Path) -> None:
    with tunnel(suite) as (a, b, da, db):
        before = in_ns(a.ns, "ping", "-c", "1", "-W", "1", b.inner, check=False)
        assert before.returncode != 0, "reachable before the tunnel existed"

        install(a, b, da, db, suite)
        pcap = tmp_path / "veth.pcap"
        with capture(a, pcap):
            ping = in_ns(
                a.ns, "ping", "-c", "5", "-i", "0.2", "-W", "2", "-I", a.inner, b.inner, check=False
            )
        assert ping.returncode == 0, ping.stdout + ping.stderr
        assert " 0% packet loss" in ping.stdout

        lines = read_capture(pcap)
        ipv4 = [x for x in lines if " IP " in x]
        esp = [x for x in ipv4 if "UDP-encap: ESP" in x]
        assert len(esp) >= 10, lines  # 5 requests and 5 replies
        assert ipv4 == esp, [x for x in ipv4 if x not in esp]
        assert all(f"{a.outer}.4500" in x and f"{b.outer}.4500" in x for x in esp), esp
        assert not [x for x in lines if a.inner in x or b.inner in x or "ICMP echo" in x], lines

        ca, cb = da.ask({"op": "counters"}), db.ask({"op": "counters"})
        for counters in (ca, cb):
            pair = counters["pair"]
            assert pair["packets_out"] >= 5 and pair["packets_in"] >= 5, counters
            assert pair["bytes_in"] >= 5 * 84 and pair["last_used"] is not None
            assert counters["stats"]["auth"] == 0 and counters["stats"]["replay"] == 0


def test_wrong_key_is_dropped_as_auth_failure() -> None:
    with tunnel("aes128gcm16") as (a, b, da, db):
        da.ask({"op": "install", **child_config(a, b, "aes128gcm16", 0xA0000001, 0xB0000001)})
        wrong = child_config(b, a, "aes128gcm16", 0xB0000001, 0xA0000001)
        wrong["in"]["encr_key"] = "00" * 20
        db.ask({"op": "install", **wrong})
        ping = in_ns(
            a.ns, "ping", "-c", "2", "-i", "0.2", "-W", "1", "-I", a.inner, b.inner, check=False
        )
        assert ping.returncode != 0
        stats = db.ask({"op": "counters"})["stats"]
        assert stats["auth"] >= 2 and stats["esp_in"] == 0, stats


def test_routes_removed_with_the_policy_and_everything_on_close() -> None:
    with tunnel("aes128gcm16") as (a, b, da, db):
        install(a, b, da, db, "aes128gcm16")
        routes = in_ns(a.ns, "ip", "route", "show", "table", "220").stdout
        assert "10.2.0.0/24 dev ipsec0" in routes and "src 10.1.0.1" in routes, routes
        assert "lookup 220" in in_ns(a.ns, "ip", "rule").stdout
        da.ask({"op": "remove", "reqid": 1})
        assert "10.2.0.0/24" not in in_ns(a.ns, "ip", "route", "show", "table", "220").stdout
        da.close()
        assert "lookup 220" not in in_ns(a.ns, "ip", "rule").stdout
        assert "ipsec0" not in in_ns(a.ns, "ip", "link").stdout


def test_peer_inside_remote_selector_is_pinned() -> None:
    """A remote selector of 0.0.0.0/0 covers the peer itself: ESP to the peer must not loop
    into the TUN device, so a host route to the peer goes into the table first."""
    with tunnel("aes128gcm16") as (a, b, da, db):
        ca = child_config(a, b, "aes128gcm16", 0xA0000001, 0xB0000001)
        ca["remote_ts"] = "0.0.0.0/0"
        cb = child_config(b, a, "aes128gcm16", 0xB0000001, 0xA0000001)
        cb["local_ts"] = "0.0.0.0/0"
        da.ask({"op": "install", **ca})
        db.ask({"op": "install", **cb})
        routes = in_ns(a.ns, "ip", "route", "show", "table", "220").stdout
        assert f"{b.outer} dev {a.veth}" in routes and "default dev ipsec0" in routes, routes
        ping = in_ns(a.ns, "ping", "-c", "3", "-i", "0.2", "-W", "2", b.inner, check=False)
        assert ping.returncode == 0, ping.stdout
        assert da.ask({"op": "counters"})["pair"]["packets_in"] >= 3


@pytest.mark.slow
@pytest.mark.skipif(not shutil.which("iperf3"), reason="needs iperf3")
@pytest.mark.parametrize(
    ("suite", "options"),
    [
        ("aes128gcm16", {}),
        ("aes256-sha256", {}),
        # the other modes: a thread per direction, and plain TUN writes without coalescing
        ("aes128gcm16", {"threads": 2, "coalesce": False}),
    ],
    ids=["gcm", "cbc", "gcm-two-threads-plain"],
)
def test_iperf3_throughput(suite: str, options: dict) -> None:
    """Measures (and prints) TCP throughput through the tunnel; asserts that data flowed and
    that batching, segmentation and coalescing lost nothing to replay or ICV checks."""
    with tunnel(suite, options) as (a, b, da, db):
        install(a, b, da, db, suite)
        server = subprocess.Popen(
            ["ip", "netns", "exec", b.ns, "iperf3", "-s", "-1", "-B", b.inner],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            time.sleep(0.5)
            result = in_ns(
                a.ns, "iperf3", "-c", b.inner, "-B", a.inner, "-t", "5", "-J", timeout=60
            )
        finally:
            server.terminate()
            server.wait(timeout=10)
        report = json.loads(result.stdout)
        bps = report["end"]["sum_received"]["bits_per_second"]
        counters = da.ask({"op": "counters"})["pair"]
        print(f"\n{suite}: {bps / 1e6:.0f} Mbit/s, {counters['packets_out']} ESP packets out")
        assert bps > 0 and counters["packets_out"] > 0
        for stats in (da.ask({"op": "counters"})["stats"], db.ask({"op": "counters"})["stats"]):
            assert stats["auth"] == stats["replay"] == stats["error"] == 0, stats
            assert stats["tun_write"] == stats["send_failed"] == 0, stats


# -- the driver (runs inside a namespace) ----------------------------------------------------


def driver() -> None:  # pragma: no cover - runs in a subprocess
    import ipaddress
    import socket

    from ikeagent.dataplane.base import ChildSa, SaKeys, TrafficSelector
    from ikeagent.dataplane.userspace import UserspaceDataplane

    def sa_keys(spec: dict) -> SaKeys:
        return SaKeys(
            spi=spec["spi"],
            encr_id=spec["encr_id"],
            encr_key=bytes.fromhex(spec["encr_key"]),
            integ_id=spec["integ_id"],
            integ_key=bytes.fromhex(spec["integ_key"]),
        )

    plane = None
    sock = None
    child = None
    for line in sys.stdin:
        request = json.loads(line)
        op = request["op"]
        try:
            if op == "start":
                plane = UserspaceDataplane(**request.get("options", {}))
                plane.start()
                sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 << 20)
                sock.bind((request["bind"], 4500))
                plane.attach_encap_socket(sock, (request["bind"], 4500), lambda *a: None)
                answer: dict = {"ok": True}
            elif op == "install":
                child = ChildSa(
                    reqid=request["reqid"],
                    name="test",
                    local_addr=request["local_addr"],
                    remote_addr=request["remote_addr"],
                    inbound=sa_keys(request["in"]),
                    outbound=sa_keys(request["out"]),
                    local_ts=(TrafficSelector(ipaddress.ip_network(request["local_ts"])),),
                    remote_ts=(TrafficSelector(ipaddress.ip_network(request["remote_ts"])),),
                    encap=(4500, 4500),
                )
                plane.install_child(child)
                plane.flush()  # routes are applied by the link worker: wait for them
                answer = {"ok": True}
            elif op == "remove":
                plane.remove_policy(request["reqid"])
                plane.flush()
                answer = {"ok": True}
            elif op == "counters":
                pair = None
                if child is not None:
                    c = plane.counters(child.reqid, child.inbound.spi, child.outbound.spi)
                    pair = {
                        k: getattr(c, k)
                        for k in ("bytes_in", "packets_in", "bytes_out", "packets_out", "last_used")
                    }
                answer = {"pair": pair, "stats": plane.stats()}
            elif op == "quit":
                plane.close()
                sock.close()
                print(json.dumps({"ok": True}), flush=True)
                return
            else:
                answer = {"error": f"unknown op {op}"}
        except Exception as exc:
            answer = {"error": f"{type(exc).__name__}: {exc}"}
        print(json.dumps(answer), flush=True)


if __name__ == "__main__":
    if sys.argv[1:] == ["--driver"]:
        driver()
