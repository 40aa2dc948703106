"""Two real agents in User-mode Linux guests, with the kernel XFRM data plane (issue 6).

Guest a (192.0.2.1, protected 10.1.0.0/24) and guest b (192.0.2.2, protected 10.2.0.0/24) each
run ``ikeagent --dataplane xfrm`` (``auto`` for a in the rekey test) with a PSK tunnel between the protected
subnets. Each guest's only route off its subnets is a default route via 192.0.2.254, a router
that does not exist (a gateway's upstream, as on a real host): without the tunnel a ping between
the protected subnets goes nowhere, with it the kernel's policy sends it through ESP straight to
the peer (the agent installs no routes with the kernel data plane; the default route is what a
real gateway has).

Without NAT between them the agents do not negotiate UDP encapsulation (RFC 7296 2.23: only a
detected NAT moves IKE to port 4500 and encapsulates ESP), so the wire must show raw ESP (IP
protocol 50, RFC 4303), and IKE stays on port 500.

What is checked: the tunnel (traffic passes now and not before, only ESP on the bridge, the SPIs
on the wire are the agents'), ``ip xfrm state``/``ip xfrm policy`` against ``ikectl list-sas``
(SPIs, algorithm and key size, reqid, endpoints, selectors, owner mark, counters), a CHILD_SA
rekey under a continuous ping (nothing lost, new SPIs in the kernel, old ones gone), and
restarts (SIGTERM cleans up; after SIGKILL the next start removes the leftovers and the tunnel
comes back with one SA pair per side).
"""

from __future__ import annotations

import re
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest

from ikelab_testing.capture import Capture
from ikelab_testing.guest_agent import (
    GuestAgent,
    GuestPing,
    owned,
    xfrm_policies,
    xfrm_states,
)
from ikelab_testing.uml import Guest, UmlLab

pytestmark = [pytest.mark.uml, pytest.mark.slow]

CHILD = "net"
OWNER = (0, 0x2000)  # the xfrm data plane's owner mark: value 0 under mask 0x2000
GUARD = (0x2000, 0x2000)  # its guard policies: packets carrying the owner bit are blocked
UPSTREAM = "192.0.2.254"  # the guests' default router: nobody has this address
PROPOSALS = {
    2: "aes256gcm16-prfsha256-x25519",
    1: "aes256-sha256-modp2048",  # IKEv1 Phase 1 has no AEAD (RFC 5282 is IKEv2 only)
}
ESP = "aes256gcm16"
# AES-GCM with a 16-byte ICV, 256-bit key (RFC 4106): the kernel keys it with the 4-byte salt
# appended (RFC 4106 section 8.1), so 288 key bits and a 128-bit ICV
KERNEL_GCM256 = ("rfc4106(gcm(aes))", 256 + 32, 128)
ICMP_ECHO_BYTES = 84  # IPv4 header 20 + ICMP header 8 + ping's default 56 data bytes


def wait_for(predicate: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.3)


def in_parallel(*calls: Callable[[], Any]) -> list[Any]:
    """Run ``calls`` at once (each guest is its own process); re-raise the first failure."""
    results: list[Any] = [None] * len(calls)
    errors: list[BaseException] = []

    def run(i: int, call: Callable[[], Any]) -> None:
        try:
            results[i] = call()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i, c)) for i, c in enumerate(calls)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    return results


def received(result: object) -> int:
    m = re.search(r"(\d+) received", getattr(result, "stdout", ""))
    return int(m.group(1)) if m else 0


@dataclass
class Site:
    guest: Guest
    peer: Guest
    agent: GuestAgent

    @property
    def conn(self) -> str:
        return f"site-{self.peer.name}"

    def child(self) -> dict[str, Any]:
        """The one INSTALLED CHILD_SA (fails if there is not exactly one)."""
        children = self.agent.children()
        assert [(c["name"], c["state"]) for c in children] == [(CHILD, "INSTALLED")], children
        return children[0]

    def kernel(self) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """The agent's states and policies in the guest's kernel (owner mark)."""
        return owned(xfrm_states(self.guest)), owned(xfrm_policies(self.guest))

    def guards(self) -> list[dict[str, Any]]:
        """The guards of the agent's policies (block packets that carry the owner bit)."""
        return [p for p in xfrm_policies(self.guest) if p["mark"] == GUARD]


def agent_config(me: Guest, peer: Guest, version: int, psk: str) -> dict[str, Any]:
    ids = sorted(f"gw-{g.name}.example" for g in (me, peer))
    return {
        "agent": {"retransmit_timeout": 2.0},  # UML is slow to start: no needless retransmits
        "connections": {
            f"site-{peer.name}": {
                "version": version,
                "local_addrs": [me.address],
                "remote_addrs": [peer.address],
                "proposals": [PROPOSALS[version]],
                "local": {"auth": "psk", "id": f"gw-{me.name}.example"},
                "remote": {"auth": "psk", "id": f"gw-{peer.name}.example"},
                "children": {
                    CHILD: {
                        "local_ts": [me.protected_net],
                        "remote_ts": [peer.protected_net],
                        "esp_proposals": [ESP],
                        "start_action": "none",
                    }
                },
            }
        },
        "secrets": {"ike-lab": {"id": ids, "secret": psk}},
    }


def warm_crypto(g: Guest) -> None:
    """The guest kernel's first AES-GCM state costs seconds (the crypto API instantiates
    rfc4106(gcm(aes)) and its parts); pay that here, with a state nobody uses (no mark, so
    not the agent's), instead of inside the agents' first install."""
    key = "0x" + secrets.token_hex(36)
    sa = "src 192.0.2.250 dst 192.0.2.251 proto esp spi 0x77"
    aead = f"aead 'rfc4106(gcm(aes))' {key} 128"
    g.sh(f"ip xfrm state add {sa} mode tunnel {aead} && ip xfrm state delete {sa}", timeout=120)


def start_sites(
    a: Guest,
    b: Guest,
    *,
    version: int = 2,
    dataplane_a: str = "xfrm",
    child: dict[str, Any] | None = None,
) -> tuple[Site, Site]:
    """Both agents started (``child``: extra settings of the CHILD_SA on both sides)."""
    psk = "k" + secrets.token_urlsafe(24)  # never "0x"/"0s" (hex/base64 forms)
    configs = [agent_config(me, peer, version, psk) for me, peer in ((a, b), (b, a))]
    for config in configs:
        for conn in config["connections"].values():
            conn["children"][CHILD].update(child or {})
    sites = (
        Site(a, b, GuestAgent(a, configs[0], dataplane=dataplane_a)),
        Site(b, a, GuestAgent(b, configs[1], dataplane="xfrm")),
    )
    for s in sites:
        s.guest.run(["ip", "route", "add", "default", "via", UPSTREAM], check=True)

    in_parallel(*(lambda s=s: (warm_crypto(s.guest), s.agent.start()) for s in sites))
    return sites


def bring_up(initiator: Site, responder: Site, timeout: float = 90.0) -> None:
    initiator.agent.ikectl("up", initiator.conn, json_output=False, timeout=timeout)
    in_parallel(
        *(
            lambda s=s: wait_for(
                lambda: s.agent.installed(CHILD), timeout, f"{CHILD} INSTALLED in {s.guest}"
            )
            for s in (initiator, responder)
        )
    )


def dump(*sites: Site) -> None:
    for s in sites:
        print(f"\n--- agent in {s.guest.name} ---\n{s.agent.log_tail(80)}")
        if s.guest.alive():
            print(s.guest.run(["ip", "-s", "xfrm", "state", "list", "nokeys"]).stdout)
            print(s.guest.run(["ip", "xfrm", "policy"]).stdout)


def check_kernel_agrees(site: Site, child: dict[str, Any]) -> None:
    """The guest kernel holds exactly the SA pair and policies ``child`` (a ``list-sas``
    entry read by the caller between two kernel reads) describes."""
    me, peer = site.guest, site.peer
    states, policies = site.kernel()
    by_spi = {st["spi"]: st for st in states}
    spi_in, spi_out = int(child["spi_in"], 16), int(child["spi_out"], 16)
    assert set(by_spi) == {spi_in, spi_out}, [st["text"] for st in states]
    for spi, (src, dst) in ((spi_out, (me, peer)), (spi_in, (peer, me))):
        st = by_spi[spi]
        assert (st["src"], st["dst"]) == (src.address, dst.address), st["text"]
        assert (st["proto"], st["mode"], st["reqid"]) == ("esp", "tunnel", child["reqid"])
        assert child["encryption"] == "AES_GCM_16_256" and child["integrity"] is None
        assert st["aead"] == KERNEL_GCM256, st["text"]
        assert "enc" not in st and "auth-trunc" not in st
        # raw ESP: no encapsulation in the kernel, none in the agent's view
        assert st["encap"] is None and child["encap"] is False, st["text"]
        assert st["mark"] == OWNER

    assert child["local_ts"] == [me.protected_net] and child["remote_ts"] == [peer.protected_net]
    got = sorted(
        (p["dir"], p["src"], p["dst"], p["tmpl_src"], p["tmpl_dst"], p["proto"], p["reqid"])
        for p in policies
    )
    reqid = child["reqid"]
    inbound = (peer.protected_net, me.protected_net, peer.address, me.address, "esp", reqid)
    want = sorted(
        [
            ("out", me.protected_net, peer.protected_net, me.address, peer.address, "esp", reqid),
            ("in", *inbound),
            ("fwd", *inbound),
        ]
    )
    assert got == want, [p["text"] for p in policies]
    assert {p["mode"] for p in policies} == {"tunnel"}
    # each policy has its guard: same selector, direction and priority, action block
    guards = site.guards()
    assert sorted((g["dir"], g["src"], g["dst"], g["priority"]) for g in guards) == sorted(
        (p["dir"], p["src"], p["dst"], p["priority"]) for p in policies
    ), [g["text"] for g in guards]
    assert all(g["action"] == "block" and g["tmpl_src"] is None for g in guards), guards


def out_pol_blocks(guest: Guest) -> int:
    """The kernel's count of outbound packets an XFRM policy blocked."""
    stat = guest.run(["cat", "/proc/net/xfrm_stat"], check=True).stdout
    m = re.search(r"^XfrmOutPolBlock\s+(\d+)", stat, re.M)
    assert m, stat
    return int(m.group(1))


def check_counters(site: Site, min_packets: int) -> dict[str, Any]:
    """Kernel counters read before and after ``list-sas`` bracket what the agent reports;
    returns the child entry (kernel state checked against it too)."""
    before = {st["spi"]: st for st in owned(xfrm_states(site.guest))}
    child = site.child()
    after = {st["spi"]: st for st in owned(xfrm_states(site.guest))}
    check_kernel_agrees(site, child)
    assert set(before) == set(after), (before, after)
    for way in ("in", "out"):
        spi = int(child[f"spi_{way}"], 16)
        for unit, key in (("packets", f"packets_{way}"), ("bytes", f"bytes_{way}")):
            assert before[spi][unit] <= child[key] <= after[spi][unit], (way, unit, child)
        assert child[f"packets_{way}"] >= min_packets, child
        # only pings crossed: the kernel counts inner (plaintext) bytes
        assert child[f"bytes_{way}"] == child[f"packets_{way}"] * ICMP_ECHO_BYTES, child
    assert child["last_used"] is not None
    return child


def check_dataplane(site: Site, requested: str) -> None:
    """The agent runs the xfrm data plane, says why in its log, and ``status`` shows it."""
    log = site.agent.log_text()
    reason = "configured"
    if requested == "auto":
        # the factory's probe: an AES-GCM ESP state the guest kernel accepted
        reason = "kernel accepted an ESP state with rfc4106(gcm(aes))"
    assert f"data plane xfrm: {reason}" in log, log
    assert "agent started: 1 connection(s), data plane xfrm" in log, log
    assert site.agent.status()["dataplane"] == {"name": "xfrm", "reason": reason}


# --- 1 + 2 + 5: the tunnel, and the kernel against ikectl ---------------------------------------


@pytest.mark.parametrize("version", [2, 1], ids=["ikev2", "ikev1-main"])
def test_tunnel_through_kernel_esp(
    uml_lab: UmlLab, uml_pair: tuple[Guest, Guest], version: int
) -> None:
    a, b = uml_pair
    sa, sb = start_sites(a, b, version=version)
    pcap = uml_lab.lab.workdir("pcap")
    try:
        check_dataplane(sa, "xfrm")

        # before the tunnel nothing passes (the default router does not exist)
        before = a.ping(b.protected_address, count=2, src=a.protected_address, wait=1)
        assert received(before) == 0, before.stdout
        assert sa.kernel() == ([], []) and sb.kernel() == ([], [])

        bring_up(sa, sb)
        ike = sa.agent.list_sas()
        assert [(s["version"], s["state"], s["role"]) for s in ike] == [
            (version, "ESTABLISHED", "initiator")
        ]
        # no NAT: IKE stays on port 500 and ESP is not encapsulated
        assert (ike[0]["local_port"], ike[0]["remote_port"]) == (500, 500)
        assert not ike[0]["nat_local"] and not ike[0]["nat_remote"]

        with Capture(uml_lab.ns, a.tap, pcap / "tunnel.pcap") as cap:
            there = a.ping(b.protected_address, count=5, src=a.protected_address)
            back = b.ping(a.protected_address, count=3, src=b.protected_address)
        assert received(there) == 5, there.stdout
        assert received(back) == 3, back.stdout
        summary = cap.summary()
        assert summary.cleartext_between(a.protected_net, b.protected_net) == [], summary.describe()
        assert summary.esp_only(require_udp=False), summary.describe()
        esp = summary.of("esp")
        assert len(esp) >= 16, summary.describe()  # 8 requests, 8 replies
        assert {(p.src, p.dst) for p in esp} == {(a.address, b.address), (b.address, a.address)}

        # 2: what the kernels hold is what the agents say, counters included
        ca, cb = in_parallel(lambda: check_counters(sa, 8), lambda: check_counters(sb, 8))
        assert (ca["spi_in"], ca["spi_out"]) == (cb["spi_out"], cb["spi_in"])
        wire = {(p.src, int(p.spi, 16)) for p in esp}
        assert wire == {(a.address, int(ca["spi_out"], 16)), (b.address, int(cb["spi_out"], 16))}
        assert (ca["packets_out"], ca["packets_in"]) == (cb["packets_in"], cb["packets_out"])

        # a packet carrying the owner bit (SO_MARK 0x2000) matches none of the agent's policies:
        # the guard blocks it (the kernel counts XfrmOutPolBlock) instead of letting it leave
        # in clear
        blocked = out_pol_blocks(a)
        with Capture(uml_lab.ns, a.tap, pcap / "marked.pcap") as cap:
            marked = a.run(
                ["ping", "-n", "-c", "2", "-W", "1", "-m", str(0x2000)]
                + ["-I", a.protected_address, b.protected_address]
            )
        assert received(marked) == 0, marked
        assert out_pol_blocks(a) - blocked == 2
        summary = cap.summary()
        assert summary.cleartext_between(a.protected_net, b.protected_net) == [], summary.describe()
    except BaseException:
        dump(sa, sb)
        raise
    assert in_parallel(sa.agent.stop, sb.agent.stop) == [0, 0]
    for s in (sa, sb):
        assert s.kernel() == ([], []) and s.guards() == [], s.guest


# --- 3: CHILD_SA rekey under a continuous ping ---------------------------------------------------


def test_child_rekey_under_ping_loses_nothing(uml_pair: tuple[Guest, Guest]) -> None:
    a, b = uml_pair
    sa, sb = start_sites(a, b, dataplane_a="auto")  # the probe must pick xfrm in the guest
    try:
        check_dataplane(sa, "auto")
        bring_up(sa, sb)
        old = sa.child()
        old_spis = {int(old["spi_in"], 16), int(old["spi_out"], 16)}
        ping = GuestPing(b, a.protected_address, src=b.protected_address)
        ping.wait_replies(10)

        sa.agent.ikectl("rekey", "--child", sa.conn, json_output=False)

        def settled() -> bool:
            """Both agents on one new pair, mirrored, and only that pair in both kernels."""
            ca, cb = in_parallel(sa.agent.children, sb.agent.children)
            if [c["state"] for c in ca + cb] != ["INSTALLED", "INSTALLED"]:
                return False
            new = {int(ca[0]["spi_in"], 16), int(ca[0]["spi_out"], 16)}
            mirrored = (ca[0]["spi_in"], ca[0]["spi_out"]) == (cb[0]["spi_out"], cb[0]["spi_in"])
            if new & old_spis or not mirrored:
                return False
            return all({st["spi"] for st in s.kernel()[0]} == new for s in (sa, sb))

        wait_for(settled, 60, "the rekeyed pair alone in both agents and kernels")
        ping.wait_replies(ping.replies() + 20)  # a while on the new SAs
        sent, got, out = ping.stop()
        assert sent >= 30, out
        assert got == sent, f"lost {sent - got} echo replies during the rekey\n{out[-3000:]}"

        # the new pair carried the ping both ways, and is what the kernel holds
        ca, cb = in_parallel(lambda: check_counters(sa, 1), lambda: check_counters(sb, 1))
        assert ca["reqid"] == old["reqid"]  # same policies, new SAs
        assert {int(ca["spi_in"], 16), int(ca["spi_out"], 16)}.isdisjoint(old_spis)
        assert (ca["spi_in"], ca["spi_out"]) == (cb["spi_out"], cb["spi_in"])
    except BaseException:
        dump(sa, sb)
        raise


# --- 3b: the kernel's own soft byte limit starts the rekey ----------------------------------------


def test_kernel_byte_limit_expire_rekeys_the_child(uml_pair: tuple[Guest, Guest]) -> None:
    """``rekey_bytes`` becomes the SAs' soft byte limit in the kernel: the kernel counts the
    traffic and sends a soft EXPIRE when it is reached, the agent reads it from XFRM netlink
    and rekeys the CHILD_SA; the hard limit (``life_bytes``) is never reached, and the ping
    crossing all along loses nothing."""
    a, b = uml_pair
    limits = {"rekey_bytes": 60000, "life_bytes": 600000}
    sa, sb = start_sites(a, b, child=limits)
    try:
        bring_up(sa, sb)
        old = sa.child()
        old_spis = {int(old["spi_in"], 16), int(old["spi_out"], 16)}
        state = a.run(["ip", "-s", "xfrm", "state", "list"], check=True).stdout
        # the soft limit is the configured one (strongSwan lowers it by up to rand_bytes:
        # the agent too, so it is at most the configured value), the hard limit is life_bytes
        soft = [int(x) for x in re.findall(r"soft (\d+)\(bytes\)", state)]
        hard = [int(x) for x in re.findall(r"hard (\d+)\(bytes\)", state)]
        assert soft and all(0 < x <= 60000 for x in soft), state
        assert hard and all(x == 600000 for x in hard), state

        # 1000-byte echoes: the soft limit is crossed after some 60 of them each way
        ping = GuestPing(b, a.protected_address, src=b.protected_address, size=1000)

        def rekeyed() -> bool:
            ca, cb = in_parallel(sa.agent.children, sb.agent.children)
            if [c["state"] for c in ca + cb] != ["INSTALLED", "INSTALLED"]:
                return False
            new = {int(ca[0]["spi_in"], 16), int(ca[0]["spi_out"], 16)}
            return not new & old_spis and all(
                {st["spi"] for st in s.kernel()[0]} == new for s in (sa, sb)
            )

        wait_for(rekeyed, 60, "a rekey started by the kernel's soft byte limit")
        ping.wait_replies(ping.replies() + 10)
        sent, got, out = ping.stop()
        assert got == sent, f"lost {sent - got} echo replies during the rekey\n{out[-3000:]}"
        expires = [s.agent.status()["stats"]["dataplane"].get("expires", 0) for s in (sa, sb)]
        assert sum(expires) >= 1, expires  # the kernel's notification, not a timer
        assert all(
            s.agent.status()["stats"]["dataplane"].get("sas_deleted", 0) >= 2 for s in (sa, sb)
        )
    except BaseException:
        dump(sa, sb)
        raise


# --- 4: restarts ---------------------------------------------------------------------------------


def test_restart_cleans_up_and_recovers(uml_pair: tuple[Guest, Guest]) -> None:
    a, b = uml_pair
    sa, sb = start_sites(a, b)
    try:
        bring_up(sa, sb)
        assert received(a.ping(b.protected_address, count=2, src=a.protected_address)) == 2

        # someone else flushes a's SAs: list-sas still answers (no counters for them), and
        # the SIGTERM below still removes the policies
        a.run(["ip", "xfrm", "state", "flush"], check=True)
        child = sa.child()
        assert (child["packets_in"], child["packets_out"], child["last_used"]) == (0, 0, None)
        assert len(sa.kernel()[1]) == 3

        # SIGTERM: a deletes its SAs with the peer (b removes its own) and from its kernel
        assert sa.agent.stop() == 0
        assert sa.kernel() == ([], [])
        wait_for(lambda: sb.kernel() == ([], []), 30, "b to remove the SAs a deleted")
        assert sb.agent.list_sas() == []

        sa.agent.start()
        bring_up(sa, sb)
        assert received(a.ping(b.protected_address, count=2, src=a.protected_address)) == 2

        # SIGKILL: b's SAs and policies stay in its kernel
        assert sb.agent.kill() is not None
        states, policies = sb.kernel()
        assert (len(states), len(policies), len(sb.guards())) == (2, 3, 3), (states, policies)

        # someone else's state and policy (no mark; another owner mask) must survive b's start
        key = "0x" + secrets.token_hex(36)
        b.sh(
            "ip xfrm state add src 192.0.2.2 dst 192.0.2.250 proto esp spi 0x99 mode tunnel "
            f"aead 'rfc4106(gcm(aes))' {key} 128 && "
            "ip xfrm policy add src 198.18.1.0/24 dst 198.18.2.0/24 dir out mark 0 mask 0x4000 "
            "tmpl src 192.0.2.2 dst 192.0.2.250 proto esp mode tunnel"
        )

        def others() -> tuple[list[int], list[tuple[str, Any]]]:
            """Spis of the states and (selector, mark) of the policies not marked as ours."""
            spis = [st["spi"] for st in xfrm_states(b) if st["mark"] != OWNER]
            pols = [(p["src"], p["mark"]) for p in xfrm_policies(b) if not p["socket"]]
            return spis, [p for p in pols if p[1] not in (OWNER, GUARD)]

        assert others() == ([0x99], [("198.18.1.0/24", (0, 0x4000))])

        # restarted, b removes exactly its leftovers before anything else
        sb.agent.start()
        log = sb.agent.wait_log("removed 3 policies and 2 SAs left by an earlier run", 30)
        assert "agent started" in log.split("left by an earlier run", 1)[1]
        assert sb.kernel() == ([], []) and sb.guards() == []
        assert others() == ([0x99], [("198.18.1.0/24", (0, 0x4000))])

        # b comes back (its INITIAL_CONTACT makes a drop the IKE SA b lost): one pair per side
        bring_up(sb, sa)

        def one_pair_each() -> bool:
            ike = sa.agent.list_sas()
            if len(ike) != 1 or len(ike[0]["children"]) != 1:
                return False
            return all(len(s.kernel()[0]) == 2 for s in (sa, sb))

        wait_for(one_pair_each, 60, "a single IKE SA and SA pair on both sides")
        assert received(a.ping(b.protected_address, count=3, src=a.protected_address)) == 3
        in_parallel(lambda: check_counters(sa, 3), lambda: check_counters(sb, 3))
    except BaseException:
        dump(sa, sb)
        raise
