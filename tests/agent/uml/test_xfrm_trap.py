"""Trap policies of the xfrm data plane in User-mode Linux guests (a kernel with ESP).

Guest a routes for a LAN behind it (a network namespace ``lan`` inside the guest: the host
10.1.1.2 behind a veth, a's side 10.1.1.1, forwarding on) and has two traps towards b:

- reqid 11, 10.1.1.0/24 === 10.2.0.0/16, no local address (the kernel picks the tunnel
  source): a ping from the LAN host to b's protected address (forwarded traffic) hits it;
- reqid 12, 10.1.0.0/24 === 10.2.0.0/16, local address named: a ping from a's own protected
  address (local traffic) hits it.

Each raises an ``Acquire`` with its reqid and the packet's addresses, and the pings are held
(``xfrm_larval_drop`` 0, set by the plane) until matching SA pairs with hand-made keys are
installed on both guests: then the held echoes (icmp_seq 1 first, in order) get their replies,
and only ESP crossed the underlay. Deleting reqid 11's pair keeps its policies (the trap is
armed again, its template back to "any" source) and the next packet raises a new ``Acquire``
at once. Closing the planes removes everything and restores the sysctls.
"""

from __future__ import annotations

import json
import re
import secrets
import time
from collections.abc import Callable

import pytest

from ikelab_testing.capture import Capture
from ikelab_testing.uml import Guest, UmlLab

pytestmark = [pytest.mark.uml, pytest.mark.slow]

LAN_HOST = "10.1.1.2"
HOLD = 1.5  # seconds the pings wait for their SAs at least
# reqid -> (a's side, b's side)
NETS = {11: ("10.1.1.0/24", "10.2.0.0/16"), 12: ("10.1.0.0/24", "10.2.0.0/16")}

DRIVER = r"""
import dataclasses, ipaddress, json, logging, os, sys, time
from ikeagent.dataplane.base import ChildSa, SaKeys, TrafficSelector, TrapPolicy
from ikeagent.dataplane.xfrm import XfrmDataplane

logging.basicConfig(level=logging.INFO, stream=sys.stdout, format="log %(name)s: %(message)s")
cfg = json.loads(sys.argv[1])
ts = lambda t: (TrafficSelector(ipaddress.ip_network(t)),)

def child(cmd):
    keys = lambda d: SaKeys(d["spi"], 20, bytes.fromhex(d["ekey"]), None)  # AES-GCM-16
    lts, rts = cfg["nets"][str(cmd["reqid"])]
    return ChildSa(cmd["reqid"], "net", cfg["local"], cfg["remote"], keys(cmd["in"]),
                   keys(cmd["out"]), ts(lts), ts(rts))

dp = XfrmDataplane()
dp.start()
for reqid, local in cfg["traps"].items():
    lts, rts = cfg["nets"][reqid]
    dp.install_trap(TrapPolicy(int(reqid), "net", local, cfg["remote"], ts(lts), ts(rts)))
print("ready", json.dumps(dp.stats()), flush=True)
step = 0
while True:
    for event in dp.poll_events():
        print("event", json.dumps({"type": type(event).__name__, **dataclasses.asdict(event)}),
              flush=True)
    path = os.path.join(cfg["dir"], f"cmd-{step}")
    if not os.path.exists(path):
        time.sleep(0.05)
        continue
    with open(path) as f:
        cmd = json.load(f)
    if cmd["op"] == "install":
        dp.install_child(child(cmd))
    elif cmd["op"] == "counters":
        c = dp.counters(cmd["reqid"], cmd["in"]["spi"], cmd["out"]["spi"])
        print("counters", json.dumps(dataclasses.asdict(c)), flush=True)
    elif cmd["op"] == "delete":
        dp.delete_child_sas(cmd["reqid"], cmd["in"]["spi"], cmd["out"]["spi"])
    elif cmd["op"] == "close":
        dp.close()
    print(f"done {step}", json.dumps(dp.stats()), flush=True)
    step += 1
    if cmd["op"] == "close":
        break
"""

LAN = f"""
ip netns add lan
ip link add lan0 type veth peer name lan1 netns lan
ip addr add 10.1.1.1/24 dev lan0
ip link set lan0 up
ip -n lan addr add {LAN_HOST}/24 dev lan1
ip -n lan link set lan1 up
ip -n lan link set lo up
ip -n lan route add default via 10.1.1.1
echo 1 > /proc/sys/net/ipv4/ip_forward
"""


class Driver:
    """The data plane in a guest, driven by command files (see DRIVER)."""

    def __init__(self, guest: Guest, peer: Guest, traps: dict[int, str], *, side: int) -> None:
        self.guest = guest
        self.step = 0
        self.dir = guest.dir / "trap-driver"
        nets = {r: (n[side], n[1 - side]) for r, n in NETS.items()}
        cfg = {
            "local": guest.address,
            "remote": peer.address,
            "nets": nets,
            "traps": traps,
            "dir": str(self.dir),
        }
        guest.put("/tmp/ikelab-trap-driver.py", DRIVER)
        self.proc = guest.spawn([guest.uml.python, "/tmp/ikelab-trap-driver.py", json.dumps(cfg)])

    def ready(self) -> dict:
        self.proc.wait_log("ready", timeout=60)
        return self.lines("ready")[0]

    def send(self, op: str, **cmd: object) -> dict:
        """Run one command; returns the plane's stats after it."""
        n = self.step
        self.guest.put(str(self.dir / f"cmd-{n}"), json.dumps({"op": op, **cmd}))
        self.step += 1
        self.proc.wait_log(f"done {n}", timeout=60)
        return self.lines(f"done {n}")[0]

    def lines(self, prefix: str) -> list[dict]:
        return [
            json.loads(x[len(prefix) + 1 :])
            for x in self.proc.log_text().splitlines()
            if x.startswith(prefix + " ")
        ]

    def acquires(self) -> list[dict]:
        return [e for e in self.lines("event") if e["type"] == "Acquire"]


def wait_for(what: str, check: Callable[[], bool], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"no {what} after {timeout:.0f} s"
        time.sleep(0.1)


def keys(reqid: int) -> tuple[dict, dict]:
    """One pair: (a -> b, b -> a), AES-GCM-16 with 20-byte key+salt (RFC 4106 8.1)."""
    return (
        {"spi": 0xA1E00000 + reqid, "ekey": secrets.token_hex(20)},
        {"spi": 0xB2E00000 + reqid, "ekey": secrets.token_hex(20)},
    )


def replies(ping_output: str) -> dict[int, float]:
    """icmp_seq -> round-trip time (ms) of every reply in a ping's output."""
    return {
        int(m.group(1)): float(m.group(2))
        for m in re.finditer(r"icmp_seq=(\d+) ttl=\d+ time=([\d.]+) ms", ping_output)
    }


def policies_of(g: Guest, reqid: int) -> list[str]:
    """The ``ip xfrm policy`` blocks whose template names ``reqid``."""
    text = g.run(["ip", "xfrm", "policy"], check=True).stdout
    blocks = re.split(r"\n(?=src )", text.strip())
    return [b for b in blocks if f"reqid {reqid} mode tunnel" in b]


def sysctls(g: Guest) -> str:
    return g.run(["sysctl", "net.core.xfrm_larval_drop", "net.core.xfrm_acq_expires"]).stdout


def test_traps_hold_traffic_until_their_sas_and_arm_again(
    uml_lab: UmlLab, uml_pair: tuple[Guest, Guest]
) -> None:
    a, b = uml_pair
    a.sh(LAN)
    pcap = uml_lab.lab.workdir("pcap") / "trap.pcap"
    with Capture(uml_lab.ns, a.tap, pcap) as cap:
        da = Driver(a, b, {11: "", 12: a.address}, side=0)
        db = Driver(b, a, {}, side=1)
        stats = da.ready()
        db.ready()
        assert (stats["traps"], stats["policies"], stats["sa_pairs"]) == (2, 6, 0), stats

        # the traps: three policies (and guards) each, no SA, routes, packets held
        assert len(policies_of(a, 11)) == 3 and len(policies_of(a, 12)) == 3
        assert any(f"tmpl src 0.0.0.0 dst {b.address}" in p for p in policies_of(a, 11))
        assert any(f"tmpl src {a.address} dst {b.address}" in p for p in policies_of(a, 12))
        assert a.run(["ip", "xfrm", "state"], check=True).stdout.strip() == ""
        assert "10.2.0.0/16" in a.run(["ip", "route", "show", "table", "220"]).stdout
        assert "xfrm_larval_drop = 0" in sysctls(a) and "xfrm_acq_expires = 5" in sysctls(a)

        # forwarded traffic (a host behind a), then local traffic (a's protected address)
        lan_ping = a.spawn(
            ["ip", "netns", "exec", "lan", "ping", "-n", "-c", "3", "-i", "0.5", "-w", "30"]
            + [b.protected_address]
        )
        wait_for("ACQUIRE of the forwarded ping", lambda: len(da.acquires()) == 1)
        local_ping = a.spawn(
            ["ping", "-n", "-c", "3", "-i", "0.5", "-w", "30", "-I", a.protected_address]
            + [b.protected_address]
        )
        wait_for("ACQUIRE of the local ping", lambda: len(da.acquires()) == 2)
        forwarded = {"type": "Acquire", "reqid": 11, "src": LAN_HOST, "dst": b.protected_address}
        local = {"type": "Acquire", "reqid": 12, "src": a.protected_address}
        assert da.acquires() == [forwarded, {**local, "dst": b.protected_address}]
        time.sleep(HOLD)
        assert lan_ping.poll() is None and local_ping.poll() is None  # nothing answered yet
        assert replies(lan_ping.log_text()) == {} and replies(local_ping.log_text()) == {}

        # the SAs arrive (b first: it must have them when a's held packets leave)
        pairs = {reqid: keys(reqid) for reqid in NETS}
        for reqid, (ab, ba) in pairs.items():
            db.send("install", reqid=reqid, **{"in": ab, "out": ba})
        for reqid, (ab, ba) in pairs.items():
            stats = da.send("install", reqid=reqid, **{"in": ba, "out": ab})
        assert (stats["sa_pairs"], stats["policies"]) == (2, 6), stats
        for ping in (lan_ping, local_ping):
            assert ping.wait(30) == 0, ping.log_text()
        for ping in (lan_ping, local_ping):
            got = replies(ping.log_text())
            # the first echoes were held, not lost: answered, late, in order, before any
            # echo sent after the SAs were in
            assert {1, 2, 3} <= set(got), ping.log_text()
            assert got[1] > 1000 * HOLD and got[1] > got[2] > got[3], ping.log_text()
        for reqid, (ab, ba) in pairs.items():
            da.send("counters", reqid=reqid, **{"in": ba, "out": ab})
            counters = da.lines("counters")[-1]
            assert counters["packets_out"] >= 3 and counters["packets_in"] >= 3, counters
        # a trap without local address now names the child's
        assert any(f"tmpl src {a.address} dst {b.address}" in p for p in policies_of(a, 11))
        # (a hold longer than xfrm_acq_expires raises the same ACQUIREs again)
        assert all(e in (forwarded, {**local, "dst": b.protected_address}) for e in da.acquires())

        # reqid 11's pair goes: its policies stay, armed ("any" source again), and the next
        # packet raises a new ACQUIRE at once (the SA took the first one's larval state away)
        ab, ba = pairs.pop(11)
        db.send("delete", reqid=11, **{"in": ab, "out": ba})
        stats = da.send("delete", reqid=11, **{"in": ba, "out": ab})
        assert (stats["traps"], stats["policies"], stats["sa_pairs"]) == (2, 6, 1), stats
        assert len(policies_of(a, 11)) == 3
        assert any(f"tmpl src 0.0.0.0 dst {b.address}" in p for p in policies_of(a, 11))
        before = len(da.acquires())
        t0 = time.monotonic()
        a.spawn(["ip", "netns", "exec", "lan", "ping", "-n", "-c", "1", "-W", "1", "10.2.0.9"])
        wait_for("new ACQUIRE", lambda: len(da.acquires()) > before, timeout=4.0)
        print(f"new ACQUIRE {time.monotonic() - t0:.2f} s after the ping started")
        assert da.acquires()[before] == {**forwarded, "dst": "10.2.0.9"}
        # the other trap's pair still carries a's own traffic
        ping = a.ping(b.protected_address, count=2, src=a.protected_address)
        assert ping.returncode == 0, ping.stdout

        for d in (da, db):
            stats = d.send("close")
            assert (stats["children"], stats["policies"], stats["traps"]) == (0, 0, 0), stats

    assert "xfrm_larval_drop = 1" in sysctls(a) and "xfrm_acq_expires = 30" in sysctls(a)
    log = "\n".join(da.proc.log_text().splitlines())
    assert "set xfrm_larval_drop from 1 to 0" in log and "restored xfrm_larval_drop to 1" in log
    for g in (a, b):
        assert g.run(["ip", "xfrm", "policy"], check=True).stdout.strip() == ""
        assert g.run(["ip", "route", "show", "table", "220"]).stdout.strip() == ""
    assert b.run(["ip", "xfrm", "state"], check=True).stdout.strip() == ""
    # on a, only the larval state of the last ACQUIRE (SPI 0: no DELSA reaches it) is left,
    # until the kernel drops it (xfrm_acq_expires was 5 s when it was made)
    state = a.run(["ip", "xfrm", "state"], check=True).stdout
    assert re.findall(r"spi (0x[0-9a-f]+) reqid (\d+)", state) in ([], [("0x00000000", "11")])
    wait_for("larval state gone", lambda: a.run(["ip", "xfrm", "state"]).stdout == "", 8.0)

    summary = cap.summary()
    # nothing between the protected networks crossed in clear, nothing but ESP (and link
    # noise) crossed at all, and the held echoes and their replies (two pings, three each
    # way at least) crossed as ESP between the gateways
    assert summary.cleartext_between("10.1.0.0/16", "10.2.0.0/16") == [], summary.describe()
    assert summary.esp_only(require_udp=False), summary.describe()
    esp = summary.of("esp")
    assert len(esp) >= 12, summary.describe()
    assert {(p.src, p.dst) for p in esp} == {(a.address, b.address), (b.address, a.address)}
