"""The xfrm data plane against this machine's kernel, inside network namespaces of the test's own.

The host kernel has XFRM netlink but no ESP (see docs/lab.md): policies can be installed,
read with ``ip xfrm policy`` and removed; an SA cannot, and the data plane must say why and
leave nothing behind. SAs are tested in User-mode Linux guests (tests/agent/uml).
"""

from __future__ import annotations

import ipaddress
import json
import re
import sys
import time

import pytest

from ikeagent.dataplane.base import Acquire, ChildSa, SaKeys, TrafficSelector
from ikeagent.dataplane.factory import probe_kernel_esp
from ikeagent.dataplane.xfrm import XfrmDataplane, XfrmError
from ikelab_testing.netns import Lab, Namespace

pytestmark = pytest.mark.netns

MASK = 0x2000


def ts(text: str, protocol: int = 0, ports: tuple[int, int] = (0, 65535)) -> TrafficSelector:
    return TrafficSelector(ipaddress.ip_network(text), protocol, *ports)


def child(reqid: int = 7) -> ChildSa:
    return ChildSa(
        reqid=reqid,
        name="net",
        local_addr="192.0.2.1",
        remote_addr="192.0.2.2",
        inbound=SaKeys(0xC1000001, 20, bytes(20), None),
        outbound=SaKeys(0xC2000001, 20, bytes(range(20)), None),
        local_ts=(ts("10.1.0.0/24"), ts("2001:db8:1::/64")),
        remote_ts=(ts("10.2.0.0/16", 17, (53, 53)), ts("2001:db8:2::/64")),
    )


GUARD_MARK = "0x2000/0x2000"  # the guard of each policy of ours (marked packets: block)


def policies(ns: Namespace) -> list[dict[str, str]]:
    """``ip xfrm policy`` as one dict per policy, without the guards of ours."""
    return [p for p in all_policies(ns) if p.get("mark") != GUARD_MARK]


def guards(ns: Namespace) -> list[dict[str, str]]:
    return [p for p in all_policies(ns) if p.get("mark") == GUARD_MARK]


def all_policies(ns: Namespace) -> list[dict[str, str]]:
    """``ip xfrm policy`` as one dict per policy (iproute2 prints no JSON for xfrm)."""
    text = ns.run(["ip", "xfrm", "policy", "list"]).stdout
    found: list[dict[str, str]] = []
    for block in re.split(r"\n(?=src )", text.strip()):
        if not block:
            continue
        words = block.split()
        entry: dict[str, str] = {}
        keys = (
            "src", "dst", "proto", "dport", "sport", "dir", "action", "priority", "mark", "reqid"
        )  # fmt: skip
        in_tmpl = False
        for i, word in enumerate(words[:-1]):
            if word == "tmpl":
                in_tmpl = True
            elif word in keys and not (in_tmpl and word == "proto"):
                name = f"tmpl_{word}" if in_tmpl and word in ("src", "dst") else word
                entry.setdefault(name, words[i + 1])
            elif in_tmpl and word in ("mode",):
                entry["mode"] = words[i + 1]
        found.append(entry)
    return found


def expected_policies() -> list[dict[str, str]]:
    """Written out by hand from child(): (local, remote) x (out, in, fwd), same family only."""
    rows = []
    for local, remote, extra_out, extra_in in (
        ("10.1.0.0/24", "10.2.0.0/16", {"proto": "udp", "dport": "53"}, {"proto": "udp"}),
        ("2001:db8:1::/64", "2001:db8:2::/64", {}, {}),
    ):
        rows.append(
            {
                "src": local,
                "dst": remote,
                **extra_out,
                "dir": "out",
                "mark": f"0/{MASK:#x}",
                "tmpl_src": "192.0.2.1",
                "tmpl_dst": "192.0.2.2",
                "reqid": "7",
                "mode": "tunnel",
            }
        )
        for direction in ("in", "fwd"):
            inbound = {**extra_in, **({"sport": "53"} if extra_in else {})}
            rows.append(
                {
                    "src": remote,
                    "dst": local,
                    **inbound,
                    "dir": direction,
                    "mark": f"0/{MASK:#x}",
                    "tmpl_src": "192.0.2.2",
                    "tmpl_dst": "192.0.2.1",
                    "reqid": "7",
                    "mode": "tunnel",
                }
            )
    return rows


def _without_priority(rows: list[dict[str, str]]) -> list[str]:
    return sorted(
        json.dumps({k: v for k, v in r.items() if k != "priority"}, sort_keys=True) for r in rows
    )


def test_policies_of_a_child_appear_exactly_and_go(lab: Lab) -> None:
    ns = lab.namespace("x1pol")
    dp = XfrmDataplane(netns=ns.name)
    dp.start()
    try:
        assert dp.install_policies(child()) is True
        assert dp.install_policies(child()) is False  # once per reqid
        shown = policies(ns)
        assert _without_priority(shown) == _without_priority(expected_policies())
        # each has its guard: same selector, direction and priority, action block, no template
        key = ("src", "dst", "proto", "dport", "sport", "dir", "priority")
        assert sorted(tuple(g.get(k) for k in key) for g in guards(ns)) == sorted(
            tuple(p.get(k) for k in key) for p in shown
        )
        assert {(g.get("action"), g.get("reqid")) for g in guards(ns)} == {("block", None)}
        # the narrower IPv4 pair (24 + 16 bits, udp/53) is preferred over the IPv6 one
        prio = {(r["src"], r["dir"]): int(r["priority"]) for r in shown}
        assert prio[("10.1.0.0/24", "out")] > prio[("2001:db8:1::/64", "out")] - 1000
        assert prio[("10.1.0.0/24", "out")] != prio[("2001:db8:1::/64", "out")]
        dp.remove_policy(7)
        assert all_policies(ns) == []
        dp.install_policies(child(8))
        assert {r["reqid"] for r in policies(ns)} == {"8"}
    finally:
        dp.close()
    assert all_policies(ns) == []


CRASHING_AGENT = """
import ipaddress, os, sys
from ikeagent.dataplane.base import ChildSa, SaKeys, TrafficSelector
from ikeagent.dataplane.xfrm import XfrmDataplane
ts = lambda t: TrafficSelector(ipaddress.ip_network(t))
dp = XfrmDataplane(events=False)
dp.start()
dp.install_policies(ChildSa(3, "c", "192.0.2.1", "192.0.2.2", SaKeys(1, 20, bytes(20), None),
    SaKeys(2, 20, bytes(20), None), (ts("10.1.0.0/24"),), (ts("10.2.0.0/24"),)))
os._exit(0)  # no close(): a crash
"""


def test_reconcile_removes_leftovers_and_nothing_else(lab: Lab) -> None:
    ns = lab.namespace("x1rec")
    ns.run([sys.executable, "-c", CRASHING_AGENT])
    assert {r["reqid"] for r in policies(ns)} == {"3"} and len(policies(ns)) == 3
    # others' policies: same selectors without a mark, and one under another mask
    base = ["ip", "xfrm", "policy", "add", "src", "10.1.0.0/24", "dst", "10.2.0.0/24"]
    tmpl = ["tmpl", "src", "192.0.2.1", "dst", "192.0.2.2", "proto", "esp", "mode", "tunnel"]
    ns.run([*base, "dir", "out", *tmpl, "reqid", "3"])
    ns.run([*base, "dir", "in", "mark", "0", "mask", "0x4000", *tmpl, "reqid", "9"])
    foreign = sorted(
        json.dumps(r, sort_keys=True) for r in policies(ns) if r.get("mark") != "0/0x2000"
    )
    assert len(foreign) == 2

    dp = XfrmDataplane(netns=ns.name, events=False)
    dp.start()
    try:
        assert dp.stats()["reconciled_policies"] == 3
        assert sorted(json.dumps(r, sort_keys=True) for r in policies(ns)) == foreign
    finally:
        dp.close()
    assert len(policies(ns)) == 2  # close() leaves others' policies alone too


def test_sa_refused_here_names_the_reason_and_leaves_nothing(lab: Lab) -> None:
    if probe_kernel_esp()[0]:
        pytest.skip("this kernel has ESP: SAs are installable here")
    ns = lab.namespace("x1sa")
    dp = XfrmDataplane(netns=ns.name)
    dp.start()
    try:
        with pytest.raises(XfrmError) as info:
            dp.install_child(child())
        message = str(info.value)
        # the kernel's own words (extended ACK), e.g. "Requested AEAD algorithm not found"
        assert "not found" in message and "SA 0xc1000001" in message, message
        assert policies(ns) == []
        state = ns.run(["ip", "xfrm", "state", "list"]).stdout
        assert state.strip() == ""
        assert dp.stats()["children"] == 0 and dp.stats()["install_failures"] == 1
    finally:
        dp.close()


def test_acquire_from_traffic_without_sa(lab: Lab) -> None:
    a = lab.namespace("x1acqa")
    b = lab.namespace("x1acqb")
    lab.veth(a, "va", b, "vb")
    a.add_address("va", "192.0.2.1/24")
    b.add_address("vb", "192.0.2.2/24")
    a.add_address("lo", "10.1.0.1/32")
    a.add_route("10.2.0.0/16", gateway="192.0.2.2")
    dp = XfrmDataplane(netns=a.name)
    woken: list[bool] = []
    dp.set_event_callback(lambda: woken.append(True))
    dp.start()
    try:
        # ICMP is covered by the IPv4 pair only without the udp/53 restriction
        sa = child()
        wide = ChildSa(
            **{f: getattr(sa, f) for f in ChildSa.__slots__ if f != "remote_ts"},
            remote_ts=(ts("10.2.0.0/16"),),
        )
        dp.install_policies(wide)
        events: list[object] = []
        for _ in range(50):  # the event arrives on the listener thread
            a.run(["ping", "-n", "-c", "1", "-W", "0.2", "-I", "10.1.0.1", "10.2.0.5"], check=False)
            events += dp.poll_events()
            if events:
                break
            time.sleep(0.1)
        assert Acquire(7, "10.1.0.1", "10.2.0.5") in events, dp.stats()
        assert woken
    finally:
        dp.close()


def test_routes_via_the_next_hop_and_leftovers_reconciled(lab: Lab) -> None:
    """Policies (no SA needed) bring routes to the remote TS in table 220 via the gateway
    towards the peer, src the local address inside local TS; a restart removes a crashed
    run's routes and rule, and only those; close() leaves nothing of ours."""
    ns = lab.namespace("x1rt")
    peer = lab.namespace("x1rtp")
    lab.veth(ns, "vr", peer, "vp")
    ns.add_address("vr", "198.18.0.1/24")
    ns.add_address("lo", "10.1.0.1/32")
    ns.add_route("192.0.2.0/24", gateway="198.18.0.254")
    ns.run(["ip", "route", "add", "10.8.0.0/16", "via", "198.18.0.9", "table", "220"])

    def table() -> str:
        return ns.run(["ip", "route", "show", "table", "220"], check=False).stdout

    def our_rules() -> list[str]:
        text = ns.run(["ip", "rule", "show"]).stdout
        return [line for line in text.splitlines() if line.startswith("220:")]

    crashed = XfrmDataplane(netns=ns.name, events=False)
    crashed.start()
    crashed.install_policies(child())
    shown = table()
    assert "10.2.0.0/16 via 198.18.0.254 dev vr proto 157 src 10.1.0.1" in shown, shown
    assert "2001:db8:2::" not in shown  # no IPv6 underlay towards the peer
    assert len(our_rules()) == 1 and "lookup 220" in our_rules()[0]
    crashed._sock.close()  # type: ignore[union-attr]  # a kill -9: nothing removed

    dp = XfrmDataplane(netns=ns.name, events=False)
    dp.start()
    try:
        assert "10.2.0.0/16" not in table() and "10.8.0.0/16" in table()  # not ours: kept
        assert our_rules() == [] and dp.stats()["reconciled_routes"] == 1
        dp.install_policies(child(8))
        assert "10.2.0.0/16 via 198.18.0.254" in table() and len(our_rules()) == 1
    finally:
        dp.close()
    assert "10.2.0.0/16" not in table() and "10.8.0.0/16" in table()
    assert our_rules() == []
