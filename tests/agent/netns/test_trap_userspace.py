"""A trap policy of the userspace data plane with real packets, in two network namespaces.

Topology and keys as in test_dataplane_userspace (whose helpers this test reuses)::

    ns A: lo 10.1.0.1/32, ipsec0 (TUN)      ns B: lo 10.2.0.1/32, ipsec0 (TUN)
          veth 192.0.2.1/24  <------------------->  veth 192.0.2.2/24

A gets only a trap for 10.1.0.0/24 === 10.2.0.0/24. A ping from 10.1.0.1 to 10.2.0.1 makes A's
data plane raise an Acquire for the trap's reqid with the echo request's addresses and hold the
request; the test then plays the engine and installs hand-keyed SA pairs on both sides. The
held request (icmp_seq 1) must get its reply, i.e. it left through the new SA instead of being
dropped, and the veth never carries ICMP in clear. Deleting the pair arms the trap again: the
next ping raises a new Acquire and is held, and ``remove_policy`` drops it with the routes.
Each data plane runs in a driver process inside its namespace (this file run as a script).
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_dataplane_userspace import (
    ROOT,
    TOOLS,
    Site,
    child_config,
    in_ns,
    read_capture,
    two_sites,
)

pytestmark = [
    pytest.mark.netns,
    pytest.mark.skipif(not (ROOT and TOOLS), reason="needs root, ip, ping and tcpdump"),
]

SUITE = "aes128gcm16"
REQID = 1
SPI_A, SPI_B = 0xA0000001, 0xB0000001  # inbound SPI of A, of B


class Driver:
    """A data plane in a namespace, driven over stdin/stdout JSON lines."""

    def __init__(self, site: Site) -> None:
        self.proc = subprocess.Popen(
            ["ip", "netns", "exec", site.ns, sys.executable, __file__, "--driver"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.ask({"op": "start", "bind": site.outer})

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

    def events(self, wait: float = 0.0) -> list[dict]:
        return self.ask({"op": "events", "wait": wait})["events"]

    def stats(self) -> dict[str, int]:
        return self.ask({"op": "stats"})["stats"]

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.ask({"op": "quit"})
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


@contextlib.contextmanager
def planes() -> Iterator[tuple[Site, Site, Driver, Driver]]:
    with two_sites() as (a, b):
        drivers: list[Driver] = []
        try:
            drivers.append(Driver(a))
            drivers.append(Driver(b))
            yield a, b, drivers[0], drivers[1]
        finally:
            for driver in drivers:
                driver.close()


def start_ping(a: Site, b: Site, count: int, wait: float) -> subprocess.Popen:
    return subprocess.Popen(
        ["ip", "netns", "exec", a.ns, "ping", "-n", "-c", str(count), "-i", "0.2"]
        + ["-W", str(wait), "-I", a.inner, b.inner],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


@contextlib.contextmanager
def capture(site: Site, path: Path) -> Iterator[None]:
    """tcpdump on the site's veth while the body runs; immediate mode, so a capture shorter
    than the ring buffer's block timeout (about a second) still gets its packets written."""
    proc = subprocess.Popen(
        ["ip", "netns", "exec", site.ns, "tcpdump", "-i", site.veth, "-n", "-U"]
        + ["--immediate-mode", "-w", str(path)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stderr is not None
        line = proc.stderr.readline()  # "listening on ..." once the capture runs
        assert "listening" in line, line
        yield
        time.sleep(0.2)
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def table_220(site: Site) -> str:
    return in_ns(site.ns, "ip", "route", "show", "table", "220").stdout


def test_first_packet_raises_acquire_and_is_delivered_once_the_sas_are_up(
    tmp_path: Path,
) -> None:
    with planes() as (a, b, da, db):
        da.ask({"op": "trap", **child_config(a, b, SUITE, SPI_A, SPI_B)})
        assert "10.2.0.0/24 dev ipsec0" in table_220(a)  # the trap's route into the TUN

        pcap = tmp_path / "veth.pcap"
        with capture(a, pcap):
            ping = start_ping(a, b, count=3, wait=5)
            try:
                events = da.events(wait=5)
                assert events == [{"acquire": [REQID, a.inner, b.inner]}], events
                deadline = time.monotonic() + 3  # let a second echo request queue up
                while da.stats()["held"] < 2 and time.monotonic() < deadline:
                    time.sleep(0.05)
                assert da.stats()["held"] >= 2
                # the engine's part: both ends get the negotiated pair
                db.ask({"op": "install", **child_config(b, a, SUITE, SPI_B, SPI_A)})
                da.ask({"op": "install", **child_config(a, b, SUITE, SPI_A, SPI_B)})
                out, _ = ping.communicate(timeout=20)
            finally:
                if ping.poll() is None:
                    ping.kill()
                    ping.wait()
        assert ping.returncode == 0, out
        assert "icmp_seq=1 " in out and " 0% packet loss" in out, out
        stats = da.stats()
        held = stats["held"]
        assert stats["acquires"] == 1 and stats["held_sent"] == held, stats
        assert stats["held_expired"] == stats["trap_queue_full"] == 0, stats
        pair = da.ask({"op": "counters"})["pair"]
        assert pair["packets_out"] == 3 and pair["packets_in"] == 3, pair
        assert db.stats()["auth"] == db.stats()["replay"] == 0
        assert da.events() == []  # no second Acquire once the pair was there

        lines = read_capture(pcap)
        esp = [x for x in lines if "UDP-encap: ESP" in x]
        # the held requests leave first, from sequence number 1 (replies may be batched)
        assert f"{a.outer}.4500 > {b.outer}.4500: UDP-encap: ESP(spi=0x{SPI_B:08x},seq=0x1)" in (
            esp[0] if esp else ""
        ), lines
        assert [x for x in esp if f"{b.outer}.4500 > {a.outer}.4500" in x], lines
        assert not [x for x in lines if "ICMP echo" in x or a.inner in x], lines

        # the pair goes: the trap is armed again and the next packet raises a new Acquire
        da.ask({"op": "delete", "reqid": REQID, "spi_in": SPI_A, "spi_out": SPI_B})
        assert "10.2.0.0/24 dev ipsec0" in table_220(a)
        again = in_ns(a.ns, "ping", "-c", "1", "-W", "1", "-I", a.inner, b.inner, check=False)
        assert again.returncode != 0
        assert da.events(wait=5) == [{"acquire": [REQID, a.inner, b.inner]}]
        assert da.stats()["held"] == held + 1

        # remove_policy drops the held packet, the policy and its route
        da.ask({"op": "remove", "reqid": REQID})
        stats = da.stats()
        assert stats["held_dropped"] == 1 and stats["held_sent"] == held, stats
        assert "10.2.0.0/24" not in table_220(a)
        assert in_ns(a.ns, "ping", "-c", "1", "-W", "1", b.inner, check=False).returncode != 0
        assert da.events() == []


# -- the driver (runs inside a namespace) ----------------------------------------------------


def driver() -> None:  # pragma: no cover - runs in a subprocess
    import ipaddress
    import socket
    import threading

    from ikeagent.dataplane.base import Acquire, ChildSa, SaKeys, TrafficSelector, TrapPolicy
    from ikeagent.dataplane.userspace import UserspaceDataplane

    def sa_keys(spec: dict) -> SaKeys:
        return SaKeys(
            spi=spec["spi"],
            encr_id=spec["encr_id"],
            encr_key=bytes.fromhex(spec["encr_key"]),
            integ_id=spec["integ_id"],
            integ_key=bytes.fromhex(spec["integ_key"]),
        )

    def selectors(text: str) -> tuple[TrafficSelector, ...]:
        return (TrafficSelector(ipaddress.ip_network(text)),)

    def event_json(event: object) -> dict:
        if isinstance(event, Acquire):
            return {"acquire": [event.reqid, event.src, event.dst]}
        return {"other": repr(event)}

    plane = None
    sock = None
    child = None
    raised = threading.Event()
    for line in sys.stdin:
        request = json.loads(line)
        op = request["op"]
        try:
            if op == "start":
                plane = UserspaceDataplane()
                plane.set_event_callback(raised.set)
                plane.start()
                sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                sock.bind((request["bind"], 4500))
                plane.attach_encap_socket(sock, (request["bind"], 4500), lambda *a: None)
                answer: dict = {"ok": True}
            elif op == "trap":
                plane.install_trap(
                    TrapPolicy(
                        reqid=request["reqid"],
                        name="test",
                        local_addr=request["local_addr"],
                        remote_addr=request["remote_addr"],
                        local_ts=selectors(request["local_ts"]),
                        remote_ts=selectors(request["remote_ts"]),
                    )
                )
                plane.flush()
                answer = {"ok": True}
            elif op == "install":
                child = ChildSa(
                    reqid=request["reqid"],
                    name="test",
                    local_addr=request["local_addr"],
                    remote_addr=request["remote_addr"],
                    inbound=sa_keys(request["in"]),
                    outbound=sa_keys(request["out"]),
                    local_ts=selectors(request["local_ts"]),
                    remote_ts=selectors(request["remote_ts"]),
                    encap=(4500, 4500),
                )
                plane.install_child(child)
                plane.flush()
                answer = {"ok": True}
            elif op == "delete":
                plane.delete_child_sas(request["reqid"], request["spi_in"], request["spi_out"])
                answer = {"ok": True}
            elif op == "remove":
                plane.remove_policy(request["reqid"])
                plane.flush()
                answer = {"ok": True}
            elif op == "events":
                if request.get("wait"):
                    raised.wait(request["wait"])
                raised.clear()
                answer = {"events": [event_json(e) for e in plane.poll_events()]}
            elif op == "stats":
                answer = {"stats": plane.stats()}
            elif op == "counters":
                c = plane.counters(child.reqid, child.inbound.spi, child.outbound.spi)
                answer = {
                    "pair": {
                        k: getattr(c, k)
                        for k in ("bytes_in", "packets_in", "bytes_out", "packets_out")
                    }
                }
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
