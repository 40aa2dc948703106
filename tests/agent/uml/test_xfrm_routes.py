"""Routes of the xfrm data plane in User-mode Linux guests.

The guests have only their underlay subnet (192.0.2.0/24, no default route), so nothing
reaches the peer's protected subnet until the data plane installs a child: its route in
table 220 (looked up first by the rule at priority 220), via the peer's interface, with the
guest's protected address as source, lets the guest itself (no ``-I``) and its protected
address reach the other side through the tunnel. After close() route and rule are gone.
"""

from __future__ import annotations

import json
import secrets

import pytest

from ikelab_testing.uml import Guest

pytestmark = [pytest.mark.uml, pytest.mark.slow]

SPI_AB, SPI_BA = 0xA1C30001, 0xB2C40001
GO = "/tmp/ikelab-xfrm-routes-go"

DRIVER = """
import dataclasses, ipaddress, json, os, sys, time
from ikeagent.dataplane.base import ChildSa, SaKeys, TrafficSelector
from ikeagent.dataplane.xfrm import XfrmDataplane

cfg = json.loads(sys.argv[1])
keys = lambda d: SaKeys(d["spi"], 20, bytes.fromhex(d["ekey"]), None)
ts = lambda t: (TrafficSelector(ipaddress.ip_network(t)),)
sa = ChildSa(cfg["reqid"], "net", cfg["local"], cfg["remote"], keys(cfg["in"]),
             keys(cfg["out"]), ts(cfg["lts"]), ts(cfg["rts"]))
dp = XfrmDataplane()
dp.start()
dp.install_child(sa)
print("ready", json.dumps(dp.stats()), flush=True)
while not os.path.exists(cfg["go"]):
    time.sleep(0.1)
c = dp.counters(sa.reqid, sa.inbound.spi, sa.outbound.spi)
print("counters " + json.dumps(dataclasses.asdict(c)), flush=True)
dp.close()
print("closed", flush=True)
"""


def test_routes_let_a_guest_without_default_route_reach_the_peers_subnet(
    uml_pair: tuple[Guest, Guest],
) -> None:
    a, b = uml_pair
    for me, peer in ((a, b), (b, a)):
        assert me.run(["ip", "route", "show", "default"], check=True).stdout.strip() == ""
        # no route yet: the kernel refuses before any policy is looked at
        assert me.run(["ip", "route", "get", peer.protected_address]).returncode != 0

    ab = {"spi": SPI_AB, "ekey": secrets.token_hex(20)}
    ba = {"spi": SPI_BA, "ekey": secrets.token_hex(20)}
    drivers = {}
    for me, peer, inbound, outbound in ((a, b, ba, ab), (b, a, ab, ba)):
        cfg = {
            "reqid": 9,
            "local": me.address,
            "remote": peer.address,
            "in": inbound,
            "out": outbound,
            "lts": me.protected_net,
            "rts": peer.protected_net,
            "go": GO,
        }
        me.put("/tmp/ikelab-xfrm-routes.py", DRIVER)
        drivers[me.name] = me.spawn([me.uml.python, "/tmp/ikelab-xfrm-routes.py", json.dumps(cfg)])
    for proc in drivers.values():
        proc.wait_log("ready")

    for me, peer in ((a, b), (b, a)):
        table = me.run(["ip", "route", "show", "table", "220"], check=True).stdout
        assert peer.protected_net in table and f"src {me.protected_address}" in table, table
        assert "dev eth0" in table and "proto 157" in table, table
        rules = me.run(["ip", "rule", "show"], check=True).stdout
        assert any(line.startswith("220:") and "lookup 220" in line for line in rules.splitlines())
        got = me.run(["ip", "route", "get", peer.protected_address], check=True).stdout
        assert f"src {me.protected_address}" in got, got

    # from the gateway itself (source chosen by the route) and from its protected address
    ping = a.ping(b.protected_address, count=3)
    assert ping.returncode == 0, ping.stdout + ping.stderr
    ping = b.ping(a.protected_address, count=2, src=b.protected_address)
    assert ping.returncode == 0, ping.stdout + ping.stderr

    for g in (a, b):
        g.put(GO, "go\n")
    counters = {}
    for name, proc in drivers.items():
        log = proc.wait_log("closed")
        line = next(x for x in log.splitlines() if x.startswith("counters "))
        counters[name] = json.loads(line.split(" ", 1)[1])
    # the pings went through ESP, not around it
    assert counters["a"]["packets_out"] >= 3 and counters["a"]["packets_in"] >= 5
    assert counters["b"]["packets_in"] >= 5 and counters["b"]["packets_out"] >= 5

    for g in (a, b):
        assert g.run(["ip", "route", "show", "table", "220"], check=True).stdout.strip() == ""
        rules = g.run(["ip", "rule", "show"], check=True).stdout
        assert not any(line.startswith("220:") for line in rules.splitlines()), rules
        assert g.run(["ip", "xfrm", "policy", "list"], check=True).stdout.strip() == ""
