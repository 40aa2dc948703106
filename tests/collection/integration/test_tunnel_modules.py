"""The tunnel, sa_info and flow_check modules for real: two agents in network namespaces
(userspace data plane), each driven by ``ansible -m ikelab.ipsec.<module> -c local`` run inside
its gateway's namespace with the system Python, as on a managed host.

Each gateway's agent runs from a private directory (``config_dir``) whose main config includes
``tunnels.d/*.yaml``; nothing is written outside the lab's directories.
"""

from __future__ import annotations

import base64
import json
import os
import stat
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from ikelab_testing.agent import tool, write_private
from ikelab_testing.checks import assert_blocked, assert_encrypted
from ikelab_testing.netns import HOST_IF, LAN, WAN, Lab, Site, Topology
from ikelab_testing.peers import fresh_psk

pytestmark = [pytest.mark.netns, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[3]
BIN = Path(sys.executable).parent
VENV = BIN.parent
HOST_PYTHON = "/usr/bin/python3"  # the managed host's system python (stdlib only)

# records every task result as a JSON line (the json stdout callback is not in ansible-core)
RECORDER = """\
import json, os
from ansible.plugins.callback import CallbackBase

class CallbackModule(CallbackBase):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "notification"
    CALLBACK_NAME = "record"
    CALLBACK_NEEDS_ENABLED = True

    def _write(self, result, failed):
        data = dict(result._result, failed=failed)
        with open(os.environ["IKELAB_TEST_RECORD"], "a") as f:
            f.write(json.dumps(data, default=str) + "\\n")

    def v2_runner_on_ok(self, result):
        self._write(result, False)

    def v2_runner_on_failed(self, result, ignore_errors=False):
        self._write(result, True)
"""


class Gateway:
    """One gateway: its agent (main config including tunnels.d), and its modules."""

    def __init__(self, lab: Lab, site: Site, peer: Site, psk: bytes, initiator: bool) -> None:
        self.lab, self.site, self.peer, self.psk = lab, site, peer, psk
        self.initiator = initiator
        self.ns = site.gw
        self.dir = lab.workdir(f"gw{site.name}")
        self.config_dir = self.dir / "etc"
        self.config_dir.mkdir(mode=0o700)
        self.socket = self.dir / "run" / "ikeagent.sock"
        self.log = self.dir / "agent.log"
        self.ansible_dir = lab.workdir(f"ansible{site.name}")
        (self.ansible_dir / "callback_plugins").mkdir()
        (self.ansible_dir / "callback_plugins" / "record.py").write_text(RECORDER)
        # the PSK reaches the module through a 0600 vars file, never a command line
        write_private(self.ansible_dir / "vars.json", json.dumps({"ikelab_test_psk": psk.decode()}))
        self.outputs: list[str] = []
        self.settings: dict[str, Any] = {}  # tunnel parameters changed during a test
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def conn(self) -> str:
        return f"site-{self.peer.name}"

    @property
    def fragment(self) -> Path:
        return self.config_dir / "tunnels.d" / f"{self.conn}.yaml"

    def start_agent(self) -> Gateway:
        main = self.config_dir / "ikeagent.yaml"
        write_private(main, 'include:\n  - "tunnels.d/*.yaml"\n')
        argv = [
            tool("ikeagent"),
            "--config",
            str(main),
            "--socket",
            str(self.socket),
            "--dataplane",
            "userspace",
            "--log-level",
            "info",
        ]
        with self.log.open("wb") as log:
            self.proc = self.ns.spawn(argv, stdout=log)
        deadline = time.monotonic() + 10
        while not self.socket.exists():
            assert self.proc.poll() is None, f"agent exited:\n{self.log_tail()}"
            assert time.monotonic() < deadline, f"no control socket:\n{self.log_tail()}"
            time.sleep(0.05)
        return self

    def log_tail(self, lines: int = 40) -> str:
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        return "\n".join(text.splitlines()[-lines:])

    def tunnel_args(self, **over: Any) -> dict[str, Any]:
        args: dict[str, Any] = {
            "name": self.conn,
            "state": "present",
            "local_addrs": [self.site.outer],
            "remote_addrs": [self.peer.outer],
            "local_id": f"gw-{self.site.name}.example",
            "remote_id": f"gw-{self.peer.name}.example",
            "psk": "{{ ikelab_test_psk }}",
            "ike_proposals": ["aes256gcm16-prfsha256-x25519"],
            "esp_proposals": ["aes256gcm16"],
            "local_ts": [self.site.subnet],
            "remote_ts": [self.peer.subnet],
            "start_action": "start" if self.initiator else "none",
            "timeout": 20,
        }
        args.update(self.settings)
        args.update(over)
        return args | self.paths()

    def paths(self) -> dict[str, str]:
        return {
            "config_dir": str(self.config_dir),
            "socket": str(self.socket),
            "agent_venv": str(VENV),
        }

    def module(self, name: str, args: dict[str, Any], *opts: str) -> dict[str, Any]:
        """Run ``ikelab.ipsec.<name>`` in this gateway's namespace; its result."""
        record = self.ansible_dir / "record.jsonl"
        record.unlink(missing_ok=True)
        env = dict(os.environ)
        env.update(
            ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"),
            ANSIBLE_HOME=str(self.ansible_dir / "home"),
            ANSIBLE_LOCAL_TEMP=str(self.ansible_dir / "tmp"),
            ANSIBLE_REMOTE_TEMP=str(self.ansible_dir / "tmp"),
            ANSIBLE_CALLBACK_PLUGINS=str(self.ansible_dir / "callback_plugins"),
            ANSIBLE_CALLBACKS_ENABLED="record",
            ANSIBLE_LOAD_CALLBACK_PLUGINS="1",
            ANSIBLE_NOCOLOR="1",
            IKELAB_TEST_RECORD=str(record),
        )
        argv = [
            str(BIN / "ansible"),
            "localhost",
            "-i",
            "localhost,",
            "-c",
            "local",
            "-e",
            f"ansible_python_interpreter={HOST_PYTHON}",
            "-e",
            f"@{self.ansible_dir / 'vars.json'}",
            "-m",
            f"ikelab.ipsec.{name}",
            "-a",
            json.dumps(args),
            *opts,
        ]
        proc = subprocess.run(
            self.ns.argv(argv), env=env, cwd=ROOT, capture_output=True, text=True, timeout=180
        )
        out = proc.stdout + proc.stderr
        results = (
            [json.loads(x) for x in record.read_text().splitlines()] if record.exists() else []
        )
        self.outputs += [out, json.dumps(results)]
        assert len(results) == 1, f"{out}\n--- agent log ---\n{self.log_tail()}"
        return results[0]

    def tunnel(self, *opts: str, **over: Any) -> dict[str, Any]:
        return self.module("tunnel", self.tunnel_args(**over), *opts)

    def sa_info(self, **over: Any) -> dict[str, Any]:
        return self.module("sa_info", {"socket": str(self.socket), **over})

    def flow_check(self, *opts: str, **over: Any) -> dict[str, Any]:
        args = {
            "source": self.site.inner,
            "destination": self.peer.host_addr,
            "connection": self.conn,
            "socket": str(self.socket),
            **over,
        }
        return self.module("flow_check", args, *opts)

    def stop(self) -> int | None:
        return self.lab.stop(self.proc) if self.proc is not None else None


def ok(result: dict[str, Any], gw: Gateway) -> dict[str, Any]:
    assert not result["failed"], f"{result.get('msg')}\n--- agent log ---\n{gw.log_tail()}"
    return result


def installed(result: dict[str, Any], conn: str) -> dict[str, Any]:
    """The one installed child of ``conn`` in a result's ``sas``."""
    [sa] = [s for s in result["sas"] if s["name"] == conn]
    assert sa["state"] == "ESTABLISHED", sa
    [child] = sa["children"]
    assert child["name"] == "net" and child["state"] == "INSTALLED", child
    return child


def psk_forms(psk: bytes) -> list[str]:
    return [psk.decode(), base64.b64encode(psk).decode(), psk.hex()]


def v6_sites(lab: Lab) -> tuple[Site, Site]:
    """The standard picture in IPv6: underlay 2001:db8:1::/64, subnets 2001:db8:a|b::/64."""
    ns = {role: lab.namespace(role) for role in ("ha", "ga", "gb", "hb")}
    for n in ns.values():  # addresses usable at once (no duplicate address detection here)
        n.sysctl("net.ipv6.conf.default.accept_dad", 0)
        n.sysctl("net.ipv6.conf.all.accept_dad", 0)
    lab.veth(ns["ga"], WAN, ns["gb"], WAN)
    sites = []
    for x, gw, host, outer in (
        ("a", "ga", "ha", "2001:db8:1::1"),
        ("b", "gb", "hb", "2001:db8:1::2"),
    ):
        inner, host_addr = f"2001:db8:{x}::1", f"2001:db8:{x}::2"
        ns[gw].sysctl("net.ipv6.conf.all.forwarding", 1)
        lab.veth(ns[gw], LAN, ns[host], HOST_IF)
        ns[gw].add_address(WAN, f"{outer}/64")
        ns[gw].add_address(LAN, f"{inner}/64")
        ns[host].add_address(HOST_IF, f"{host_addr}/64")
        ns[host].add_route("::/0", gateway=inner)
        sites.append(Site(x, ns[gw], ns[host], outer, inner, host_addr, f"2001:db8:{x}::/64"))
    return sites[0], sites[1]


def start_gateways(lab: Lab, a_site: Site, b_site: Site):
    psk = fresh_psk()
    a = Gateway(lab, a_site, b_site, psk, initiator=True).start_agent()
    b = Gateway(lab, b_site, a_site, psk, initiator=False).start_agent()
    yield a, b
    for gw in (a, b):
        # no module output and no agent log ever holds the PSK
        for form in psk_forms(psk):
            assert not any(form in text for text in gw.outputs), "PSK in module output"
            assert form not in gw.log.read_text(errors="replace"), "PSK in the agent log"
        gw.stop()


@pytest.fixture
def gateways(topology: Topology):
    yield from start_gateways(topology.lab, *topology.sites())


def bring_up(a: Gateway, b: Gateway) -> tuple[dict[str, Any], dict[str, Any]]:
    """Both ends configured, then the initiator up, then the responder up (the role's order)."""
    ok(b.tunnel(), b)
    ok(a.tunnel(), a)
    up_a = ok(a.tunnel(state="up"), a)
    up_b = ok(b.tunnel(state="up"), b)
    return up_a, up_b


def test_tunnel_lifecycle_through_the_modules(gateways) -> None:
    a, b = gateways

    # present on the responder: written 0600 in a 0700 directory, validated, loaded
    first = ok(b.tunnel(), b)
    assert first["changed"] and first["actions"] == ["write", "reload"]
    assert first["config_path"] == str(b.fragment)
    assert stat.S_IMODE(b.fragment.stat().st_mode) == 0o600
    assert stat.S_IMODE(b.fragment.parent.stat().st_mode) == 0o700
    assert first["sas"] == [] and first["psk_fingerprint"].startswith("SHA256:")

    # up on the initiator: written, loaded, initiated; then the responder sees it up
    up_a = ok(a.tunnel(state="up"), a)
    assert up_a["changed"] and up_a["actions"][:2] == ["write", "reload"]
    child_a = installed(up_a, "site-b")
    assert up_a["sas"][0]["role"] == "initiator"
    assert up_a["sas"][0]["encryption"] == "AES_GCM_16_256"
    up_b = ok(b.tunnel(state="up"), b)
    assert not up_b["changed"], up_b["actions"]
    child_b = installed(up_b, "site-a")
    assert up_b["sas"][0]["role"] == "responder"
    assert (child_a["spi_in"], child_a["spi_out"]) == (child_b["spi_out"], child_b["spi_in"])
    assert up_a["psk_fingerprint"] == first["psk_fingerprint"]  # both ends hold the same PSK

    # a second run changes nothing
    again = ok(a.tunnel(state="up"), a)
    assert not again["changed"] and again["actions"] == []
    assert installed(again, "site-b")["spi_in"] == child_a["spi_in"]

    # check mode with a change: reported with a diff (fingerprint, never the PSK), not done
    before = a.fragment.read_bytes()
    mtime = a.fragment.stat().st_mtime_ns
    checked = ok(a.tunnel("--check", "--diff", state="up", dpd_delay=30), a)
    assert checked["changed"] and checked["actions"] == ["write", "reload", "bring_up"]
    assert "dpd_delay" in checked["diff"]["after"] and "dpd_delay" not in checked["diff"]["before"]
    assert up_a["psk_fingerprint"] in checked["diff"]["after"]
    assert a.fragment.read_bytes() == before and a.fragment.stat().st_mtime_ns == mtime
    assert installed(ok(a.sa_info(), a), "site-b")["spi_in"] == child_a["spi_in"]

    # a bad option is refused by the agent's schema: the previous fragment stays, SAs too
    bad = a.tunnel(state="up", options={"mobike": "maybe"})
    assert bad["failed"] and "mobike" in bad["msg"] and "ikeagent --check" in bad["msg"]
    assert a.fragment.read_bytes() == before
    assert sorted(os.listdir(a.fragment.parent)) == ["site-b.yaml"]  # no temporary file left
    clash = a.tunnel(options={"children": {}})
    assert clash["failed"] and clash["msg"].startswith("options.children: ")

    # a reload the agent rejects (the connection defined twice): the fragment is restored
    dup = a.fragment.parent / "another.yaml"
    write_private(dup, a.fragment.read_text())
    rejected = a.tunnel(state="up", dpd_delay=30)
    assert rejected["failed"] and "restored" in rejected["msg"], rejected["msg"]
    assert "already defined" in rejected["msg"]
    assert a.fragment.read_bytes() == before
    dup.unlink()
    info = ok(a.sa_info(name="site-b"), a)
    assert installed(info, "site-b")["spi_in"] == child_a["spi_in"]  # still running

    # a real change to a live tunnel, in the role's order (every end present, then up):
    # each reload replaces the connection, the initiator brings it up again
    a.settings = b.settings = {"dpd_delay": 30}
    changed_b = ok(b.tunnel(), b)
    assert changed_b["changed"] and changed_b["actions"] == ["write", "reload"]
    ok(a.tunnel(), a)
    new_a = ok(a.tunnel(state="up"), a)
    new_b = ok(b.tunnel(state="up"), b)
    child_a = installed(new_a, "site-b")
    assert child_a["spi_in"] != child_b["spi_in"]
    assert installed(new_b, "site-a")["spi_out"] == child_a["spi_in"]
    assert "dpd_delay: 30" in a.fragment.read_text()

    # sa_info: states, algorithms, SPIs, counters and the configured connections
    info = ok(a.sa_info(), a)
    assert not info["changed"]
    child = installed(info, "site-b")
    for key in ("spi_in", "spi_out", "encryption", "packets_in", "packets_out", "bytes_in"):
        assert key in child
    assert info["sas"][0]["prf"] and info["sas"][0]["dh"]
    [conn] = info["connections"]
    assert conn["name"] == "site-b" and conn["children"][0]["start_action"] == "start"
    assert info["agent"]["dataplane"]["name"] == "userspace"
    assert ok(a.module("sa_info", {"socket": str(a.socket)}, "--check"), a)["sas"]

    # down on the initiator: SAs gone on both ends, the fragment stays; up brings them back
    down = ok(a.tunnel(state="down"), a)
    assert down["changed"] and down["actions"] == ["down"] and down["sas"] == []
    assert a.fragment.exists()
    assert not ok(a.tunnel(state="down"), a)["changed"]
    back = ok(a.tunnel(state="up"), a)
    assert back["changed"] and back["actions"] == ["up"]
    assert installed(back, "site-b")["spi_in"] != child_a["spi_in"]

    # absent: the fragment goes, the agent deletes the SAs (the peer's go with them)
    gone = ok(a.tunnel(state="absent"), a)
    assert gone["changed"] and gone["actions"] == ["remove", "reload"] and gone["sas"] == []
    assert not a.fragment.exists()
    assert ok(a.sa_info(), a)["connections"] == []
    deadline = time.monotonic() + 10
    while ok(b.sa_info(), b)["sas"]:
        assert time.monotonic() < deadline, "the responder kept its SAs"
        time.sleep(0.5)
    assert not ok(a.tunnel(state="absent"), a)["changed"]


def test_flow_check_through_the_tunnel(gateways, topology: Topology, capture_factory) -> None:
    a, b = gateways
    assert_blocked(topology)
    cap = capture_factory(topology.gw_a, "wan0")
    bring_up(a, b)

    for proto, extra in (("icmp", {}), ("tcp", {"port": 9}), ("udp", {"port": 9})):
        for gw in (a, b):
            result = ok(gw.flow_check(protocol=proto, count=3, **extra), gw)
            assert result["arrived"] and result["encrypted"] and not result["changed"], result
            assert result["sent"] == 3 and result["received"] == 3, result["outcomes"]
            delta = result["delta"]
            assert delta["packets_out"] >= 3 and delta["packets_in"] >= 3, delta
            assert delta["bytes_out"] > 0 and delta["bytes_in"] > 0
            for key, value in delta.items():
                assert result["counters_after"][key] - result["counters_before"][key] == value
            assert result["sa"]["name"] == gw.conn and result["sa"]["child"] == "net"
            expected = {"icmp": "echo reply", "tcp": "refused (RST)", "udp": "port unreachable"}
            assert result["outcomes"] == [expected[proto]] * 3

    # the child is found by its selectors too, and check mode sends the same proof
    found = ok(a.flow_check("--check", connection=None), a)
    assert found["encrypted"] and found["sa"]["name"] == "site-b"

    # a flow the child does not cover is refused without sending
    outside = a.flow_check(destination="10.99.0.1")
    assert outside["failed"] and "no installed Child SA" in outside["msg"]

    cap.stop()
    assert_encrypted(cap.summary(), topology, udp=True)

    # with the tunnel down, the check fails and says why
    ok(a.tunnel(state="down"), a)
    for proto in ("icmp", "tcp", "udp"):
        failed = a.flow_check(protocol=proto)
        assert failed["failed"], failed
        assert "the tunnel is down" in failed["msg"], failed["msg"]
    assert_blocked(topology)


def test_flow_check_over_ipv6(lab: Lab) -> None:
    """ICMPv6 (raw, the kernel's checksum), TCP and UDP through an IPv6 tunnel."""
    gen = start_gateways(lab, *v6_sites(lab))
    a, b = next(gen)
    try:
        bring_up(a, b)
        for proto, extra in (("icmp", {}), ("tcp", {"port": 9}), ("udp", {"port": 9})):
            result = ok(a.flow_check(protocol=proto, **extra), a)
            assert result["arrived"] and result["encrypted"], result
            assert result["sent"] == result["received"] == 3, result["outcomes"]
            assert result["delta"]["packets_out"] >= 3 and result["delta"]["packets_in"] >= 3
            assert result["sa"]["remote_ts"] == ["2001:db8:b::/64"]
        default_source = ok(a.flow_check(source=None), a)
        assert default_source["source"] == "2001:db8:a::1" and default_source["encrypted"]
    finally:
        next(gen, None)


def test_an_on_demand_tunnel_is_trapped_then_brought_up_by_flow_check(
    gateways, topology: Topology, capture_factory
) -> None:
    """start_action trap: the tunnel module reports the trap and no SA; flow_check's first
    traffic brings the Child SA up, with its time to first packet, and the usual proof follows;
    after ``inactivity`` the Child SA closes and the next check brings it up again."""
    a, b = gateways
    assert_blocked(topology)
    cap = capture_factory(topology.gw_a, "wan0")
    # long enough for the module runs between two checks on a loaded machine (each is an
    # ansible-playbook run): the child must stay up across them
    a.settings = {"start_action": "trap", "inactivity": 20}
    ok(b.tunnel(), b)
    trapped = ok(a.tunnel(state="up"), a)
    assert trapped["actions"] == ["write", "reload", "trap"], trapped["actions"]
    assert trapped["sas"] == [], trapped["sas"]
    trap = trapped["trap"]
    assert trap["state"] == "trapped" and trap["reqid"] > 0 and trap["acquires"] == 0, trap
    assert (trap["local_ts"], trap["remote_ts"]) == ([a.site.subnet], [a.peer.subnet])
    again = ok(a.tunnel(state="up"), a)
    assert not again["changed"] and again["trap"]["state"] == "trapped"
    assert ok(b.sa_info(), b)["sas"] == []  # nothing negotiated before traffic

    first = ok(a.flow_check(count=3), a)
    assert first["on_demand"] is True, first
    assert first["time_to_first_packet_ms"] > 0, first
    assert first["first_packet"]["outcome"] == "echo reply", first["first_packet"]
    assert first["trap"]["reqid"] == trap["reqid"] and first["trap"]["acquires"] >= 1
    assert first["arrived"] and first["encrypted"] and first["received"] == 3, first
    assert first["delta"]["packets_out"] >= 3 and first["delta"]["packets_in"] >= 3
    active = ok(a.tunnel(state="up"), a)  # well within inactivity of the last packet
    assert not active["changed"] and active["trap"]["state"] == "active"

    # the SAs are up on both ends with the expected algorithms, the child under the trap's reqid
    child_a = installed(active, a.conn)
    assert child_a["encryption"] == "AES_GCM_16_256" and child_a["reqid"] == trap["reqid"]
    child_b = installed(ok(b.sa_info(name=b.conn), b), b.conn)
    assert (child_a["spi_in"], child_a["spi_out"]) == (child_b["spi_out"], child_b["spi_in"])

    # now up: a check from either end is an ordinary one
    second = ok(a.flow_check(), a)
    assert second["on_demand"] is False and "time_to_first_packet_ms" not in second
    assert ok(b.flow_check(), b)["encrypted"]

    # idle for longer than inactivity: the Child SA is closed, the trap stays armed
    deadline = time.monotonic() + 60
    while ok(a.tunnel(state="up"), a)["trap"]["state"] != "trapped":
        assert time.monotonic() < deadline, f"the idle child was not closed\n{a.log_tail()}"
        time.sleep(0.5)
    again = ok(a.flow_check(), a)
    assert again["on_demand"] is True and again["time_to_first_packet_ms"] > 0, again
    assert again["encrypted"], again

    cap.stop()
    assert_encrypted(cap.summary(), topology, udp=True)
