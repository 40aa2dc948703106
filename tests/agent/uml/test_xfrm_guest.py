"""The xfrm data plane in User-mode Linux guests, whose kernel has ESP.

Each guest runs a small driver (the checkout's Python) that starts an ``XfrmDataplane``, opens
the NAT-T socket and offers it (UDP_ENCAP_ESPINUDP), installs one child's SA pair and
policies, waits for a go file, reads the counters and closes. Between install and close: what
``ip xfrm state``/``ip xfrm policy`` show is checked, and pings cross the tunnel from one
protected address to the other (the SA counters show they went through ESP). After close
nothing is left.
"""

from __future__ import annotations

import json
import re
import secrets

import pytest

from ikelab_testing.uml import Guest, route_protected

pytestmark = [pytest.mark.uml, pytest.mark.slow]

SPI_AB, SPI_BA = 0xA1B20001, 0xB2A10001
GO = "/tmp/ikelab-xfrm-go"

DRIVER = """
import dataclasses, ipaddress, json, os, socket, sys, time
from ikeagent.dataplane.base import ChildSa, SaKeys, TrafficSelector
from ikeagent.dataplane.xfrm import XfrmDataplane

cfg = json.loads(sys.argv[1])
def keys(d):
    return SaKeys(d["spi"], d["encr"], bytes.fromhex(d["ekey"]), d["integ"],
                  bytes.fromhex(d["ikey"]))
ts = lambda t: (TrafficSelector(ipaddress.ip_network(t)),)
sa = ChildSa(cfg["reqid"], "net", cfg["local"], cfg["remote"], keys(cfg["in"]),
             keys(cfg["out"]), ts(cfg["lts"]), ts(cfg["rts"]), encap=(4500, 4500))
dp = XfrmDataplane()
dp.start()
natt = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
natt.bind(("0.0.0.0", 4500))
print("encap read by data plane:", dp.attach_encap_socket(natt, ("0.0.0.0", 4500), None))
dp.install_child(sa)
print("ready", flush=True)
while not os.path.exists(cfg["go"]):
    time.sleep(0.1)
c = dp.counters(sa.reqid, sa.inbound.spi, sa.outbound.spi)
print("counters " + json.dumps(dataclasses.asdict(c)), flush=True)
dp.close()
print("closed", dp.stats(), flush=True)
"""


def test_child_sa_pair_installed_shown_used_and_removed(uml_pair: tuple[Guest, Guest]) -> None:
    a, b = uml_pair
    # a -> b: AES-GCM-16 (RFC 4106, key + 4-byte salt); b -> a: AES-CBC + HMAC-SHA-256-128
    ab = {"spi": SPI_AB, "encr": 20, "ekey": secrets.token_hex(20), "integ": None, "ikey": ""}
    ba = {
        "spi": SPI_BA,
        "encr": 12,
        "ekey": secrets.token_hex(16),
        "integ": 12,
        "ikey": secrets.token_hex(32),
    }
    route_protected(a, b)

    drivers = {}
    for me, peer, inbound, outbound in ((a, b, ba, ab), (b, a, ab, ba)):
        cfg = {
            "reqid": 7,
            "local": me.address,
            "remote": peer.address,
            "in": inbound,
            "out": outbound,
            "lts": me.protected_net,
            "rts": peer.protected_net,
            "go": GO,
        }
        me.put("/tmp/ikelab-xfrm-driver.py", DRIVER)
        drivers[me.name] = me.spawn([me.uml.python, "/tmp/ikelab-xfrm-driver.py", json.dumps(cfg)])
    for proc in drivers.values():
        log = proc.wait_log("ready")
        assert "encap read by data plane: False" in log

    state = a.run(["ip", "xfrm", "state", "list"], check=True).stdout
    blocks = {
        int(m.group(1), 16): m.group(0)
        for m in re.finditer(
            r"src \S+ dst \S+\s+proto esp spi (0x[0-9a-f]+).*?(?=\nsrc |\Z)", state, re.S
        )
    }
    assert set(blocks) == {SPI_AB, SPI_BA}, state
    assert f"src {a.address} dst {b.address}" in blocks[SPI_AB]
    assert "aead rfc4106(gcm(aes))" in blocks[SPI_AB] and "128" in blocks[SPI_AB]
    assert "enc cbc(aes)" in blocks[SPI_BA] and "auth-trunc hmac(sha256)" in blocks[SPI_BA]
    for block in blocks.values():
        assert "reqid 7 mode tunnel" in block
        assert "encap type espinudp sport 4500 dport 4500" in block
        assert "mark 0/0x2000" in block
    policy = a.run(["ip", "xfrm", "policy", "list"], check=True).stdout
    assert policy.count("reqid 7 mode tunnel") == 3
    assert f"src {a.protected_net} dst {b.protected_net}" in policy and "dir out" in policy

    ping = a.ping(b.protected_address, count=3, src=a.protected_address)
    assert ping.returncode == 0, ping.stdout + ping.stderr

    for g in (a, b):
        g.put(GO, "go\n")
    counters = {}
    for name, proc in drivers.items():
        log = proc.wait_log("closed")
        line = next(x for x in log.splitlines() if x.startswith("counters "))
        counters[name] = json.loads(line.split(" ", 1)[1])
    assert counters["a"]["packets_out"] >= 3 and counters["a"]["packets_in"] >= 1
    assert counters["b"]["packets_in"] >= 3 and counters["b"]["bytes_out"] > 0
    assert counters["a"]["auth_failures"] == 0 and counters["a"]["last_used"] is not None
    for g in (a, b):
        assert g.run(["ip", "xfrm", "state", "list"], check=True).stdout.strip() == ""
        assert g.run(["ip", "xfrm", "policy", "list"], check=True).stdout.strip() == ""


PROBE = """
from ikeagent.dataplane.factory import choose_dataplane
print(choose_dataplane("auto"))
"""


def test_auto_probe_picks_xfrm_and_leaves_no_state(uml_pair: tuple[Guest, Guest]) -> None:
    a, _ = uml_pair
    # an agent stopped in the middle of a probe left its state behind
    a.run(
        ["ip", "xfrm", "state", "add", "src", "127.0.0.1", "dst", "127.0.0.2", "proto", "esp"]
        + ["spi", "0xfe", "mode", "tunnel", "aead", "rfc4106(gcm(aes))", "0x" + "00" * 20, "128"],
        check=True,
    )
    for _ in range(2):
        out = a.run([a.uml.python, "-c", PROBE], check=True).stdout
        assert "('xfrm', 'kernel accepted an ESP state with rfc4106(gcm(aes))')" in out, out
        assert a.run(["ip", "xfrm", "state"], check=True).stdout == ""
