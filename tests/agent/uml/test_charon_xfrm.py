"""The agent's kernel data plane (``--dataplane xfrm``) against strongSwan's charon with its
kernel-netlink backend, each in a User-mode Linux guest (whose kernel has ESP).

First charon against charon (the harness check: a tunnel of two known-good daemons, as the
kernel and the capture see it), then the agent against charon in both roles, IKEv2 with a PSK
(RFC 7296) and one IKEv1 Main Mode case (RFC 2409).  Without a NAT between the guests both
negotiate plain ESP (RFC 4303, IP protocol 50): the capture on guest a's bridge port must show
IKE and raw ESP only, and what each kernel holds (``ip xfrm state``/``ip xfrm policy``) must be
what each daemon reports (SPIs, direction, reqid, algorithms) and have counted the pings.  One
more case forces UDP encapsulation in the agent (``encap: true``): then both kernels carry ESP in
UDP 4500 (RFC 3948) and the capture shows nothing else.  When the agent stops it deletes its SAs
and tells charon, which removes its own.

Guests: a (192.0.2.1, protected 10.1.0.1/24) and b (192.0.2.2, protected 10.2.0.1/24); every
wait has a deadline, none of them a timing assertion (UML slows down under CPU contention).
"""

from __future__ import annotations

import re
import secrets
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from ikelab_testing.capture import Capture, CaptureSummary
from ikelab_testing.charon import Child, Connection, Secret
from ikelab_testing.guest_agent import GuestAgent, xfrm_policies, xfrm_states
from ikelab_testing.guest_charon import GuestCharon
from ikelab_testing.uml import Guest, UmlLab, route_protected

pytestmark = [pytest.mark.uml, pytest.mark.slow]

IKEV2 = ("aes256gcm16-prfsha256-x25519", "aes256gcm16")
IKEV1 = ("aes256-sha256-modp2048", "aes256-sha256")
CHILD = "net"
UP_TIMEOUT = 120.0  # generous: UML under CPU contention
PINGS = 3
# how the kernel shows each ESP proposal: (algorithm, key bits, ICV/truncation bits); GCM keys
# carry a 32-bit salt (RFC 4106 section 8.1), HMAC-SHA-256 is truncated to 128 bits (RFC 4868)
KERNEL_ALGS: dict[str, dict[str, tuple[str, int, int | None]]] = {
    "aes256gcm16": {"aead": ("rfc4106(gcm(aes))", 288, 128)},
    "aes256-sha256": {"enc": ("cbc(aes)", 256, None), "auth-trunc": ("hmac(sha256)", 256, 128)},
}


@dataclass(frozen=True, slots=True)
class Side:
    """One gateway's view of the tunnel between two guests."""

    me: Guest
    peer: Guest
    version: int
    ike: str
    esp: str
    psk: str = field(repr=False)

    @property
    def local_id(self) -> str:
        return f"gw-{self.me.name}.example"

    @property
    def remote_id(self) -> str:
        return f"gw-{self.peer.name}.example"

    @property
    def conn(self) -> str:
        return f"site-{self.peer.name}"


def received(result: Any) -> int:
    m = re.search(r"(\d+) received", result.stdout)
    return int(m.group(1)) if m else 0


def charon_for(side: Side, child: dict[str, Any] | None = None) -> GuestCharon:
    """charon (kernel-netlink) for ``side``; ``child``: further swanctl keys of its child."""
    charon = GuestCharon(side.me).start()
    conn = Connection(
        name=side.conn,
        version=side.version,
        local_addrs=[side.me.address],
        remote_addrs=[side.peer.address],
        local_id=side.local_id,
        remote_id=side.remote_id,
        proposals=(side.ike,),
        children=[
            Child(
                CHILD,
                [side.me.protected_net],
                [side.peer.protected_net],
                esp_proposals=(side.esp,),
                extra=child or {},
            )
        ],
    )
    charon.load([conn], [Secret("lab", sorted([side.local_id, side.remote_id]), side.psk)])
    return charon


def agent_for(
    side: Side, *, encap: bool = False, child: dict[str, Any] | None = None
) -> GuestAgent:
    """The agent (xfrm data plane) for ``side``; ``encap`` forces UDP encapsulation (the
    agent's NAT-D then claims a NAT, so the peer encapsulates too, RFC 7296 section 2.23);
    ``child``: further keys of its child."""
    config = {
        "connections": {
            side.conn: {
                "version": side.version,
                "encap": encap,
                "local_addrs": [side.me.address],
                "remote_addrs": [side.peer.address],
                "proposals": [side.ike],
                "local": {"auth": "psk", "id": side.local_id},
                "remote": {"auth": "psk", "id": side.remote_id},
                "children": {
                    CHILD: {
                        "local_ts": [side.me.protected_net],
                        "remote_ts": [side.peer.protected_net],
                        "esp_proposals": [side.esp],
                        "start_action": "none",
                        **(child or {}),
                    }
                },
            }
        },
        "secrets": {"ike-lab": {"id": sorted([side.local_id, side.remote_id]), "secret": side.psk}},
    }
    return GuestAgent(side.me, config, dataplane="xfrm").start()


def sides(a: Guest, b: Guest, version: int, ike: str, esp: str) -> tuple[Side, Side]:
    psk = "k" + secrets.token_urlsafe(32)  # fresh per run, never printed; never "0x"/"0s"
    return Side(a, b, version, ike, esp, psk), Side(b, a, version, ike, esp, psk)


def esp_states(guest: Guest) -> dict[int, dict[str, Any]]:
    """The guest kernel's ESP SAs by SPI."""
    return {st["spi"]: st for st in xfrm_states(guest) if st["proto"] == "esp"}


def assert_kernel_matches(
    guest: Guest,
    peer: Guest,
    spi_in: int,
    spi_out: int,
    reqid: int | None,
    esp: str,
    *,
    udp: bool = False,
) -> dict[int, dict[str, Any]]:
    """``guest`` holds exactly the pair: inbound (peer -> guest) and outbound (guest -> peer),
    tunnel mode, plain ESP (or with ``udp`` ESP in UDP 4500, RFC 3948), the ``esp`` proposal's
    algorithms, the daemon's reqid, and the policies for it."""
    states = esp_states(guest)
    assert set(states) == {spi_in, spi_out}, [st["text"] for st in states.values()]
    inbound, outbound = states[spi_in], states[spi_out]
    assert (inbound["src"], inbound["dst"]) == (peer.address, guest.address), inbound["text"]
    assert (outbound["src"], outbound["dst"]) == (guest.address, peer.address), outbound["text"]
    for st in (inbound, outbound):
        assert st["mode"] == "tunnel", st["text"]
        assert st["encap"] == (("espinudp", 4500, 4500) if udp else None), st["text"]
        algs = {k: st[k] for k in ("aead", "enc", "auth-trunc", "auth") if k in st}
        assert algs == KERNEL_ALGS[esp], st["text"]
        if reqid is not None:
            assert st["reqid"] == reqid, st["text"]
    # the policies of the pair; charon's outbound template also names the SPI ("proto esp spi
    # 0x... reqid N"), so the template is read from the text here
    found = {}
    for p in xfrm_policies(guest):
        m = re.search(r"proto esp (?:spi 0x[0-9a-f]+ )?reqid (\d+) mode tunnel", p["text"])
        if m and {p["src"], p["dst"]} == {guest.protected_net, peer.protected_net}:
            found[p["dir"]] = (p["src"], p["dst"], p["tmpl_src"], p["tmpl_dst"], int(m.group(1)))
    out_sel = (guest.protected_net, peer.protected_net, guest.address, peer.address)
    in_sel = (peer.protected_net, guest.protected_net, peer.address, guest.address)
    want_reqid = reqid if reqid is not None else found.get("out", (0,) * 5)[4]
    assert found == {
        "out": (*out_sel, want_reqid),
        "in": (*in_sel, want_reqid),
        "fwd": (*in_sel, want_reqid),
    }, found
    return states


def ping_both_ways(a: Guest, b: Guest) -> None:
    for me, peer in ((a, b), (b, a)):
        r = me.ping(peer.protected_address, count=PINGS, src=me.protected_address, wait=5)
        assert received(r) == PINGS, r.stdout + r.stderr


def assert_esp_only(summary: CaptureSummary, a: Guest, b: Guest, *, udp: bool = False) -> None:
    """Everything between the guests was IKE or ESP: raw (no NAT, so nothing asks for UDP
    encapsulation) or, with ``udp``, in UDP 4500 only; the pings (each way, request and
    reply) crossed as ESP between the outer addresses."""
    assert summary.cleartext_between(a.protected_net, b.protected_net) == [], summary.describe()
    assert summary.esp_only(require_udp=udp), summary.describe()
    esp = summary.of("esp-in-udp" if udp else "esp")
    assert len(esp) >= 4 * PINGS, summary.describe()
    assert {(p.src, p.dst) for p in esp} == {(a.address, b.address), (b.address, a.address)}
    if udp:
        assert {(p.sport, p.dport) for p in esp} == {(4500, 4500)}, summary.describe()
    assert summary.ike >= 2, summary.describe()


def spi(value: str) -> int:
    return int(value, 16)


@pytest.fixture
def pair(uml_pair: tuple[Guest, Guest]) -> Iterator[tuple[Guest, Guest]]:
    a, b = uml_pair
    route_protected(a, b)
    yield a, b


def test_charon_to_charon(uml_lab: UmlLab, pair: tuple[Guest, Guest]) -> None:
    """The harness check: two charons (kernel-netlink) bring up an IKEv2 PSK tunnel."""
    a, b = pair
    side_a, side_b = sides(a, b, 2, *IKEV2)
    pcap_dir = uml_lab.lab.workdir("pcap")
    # control: with the connections loaded but no SA, a ping crosses in cleartext, and the
    # capture shows it (so the "no cleartext" check below can fail)
    charon_b = charon_for(side_b)
    charon_a = charon_for(side_a)
    with Capture(uml_lab.ns, a.tap, pcap_dir / "clear.pcap") as cap:
        r = a.ping(b.protected_address, count=2, src=a.protected_address, wait=5)
    assert received(r) == 2, r.stdout + r.stderr
    assert cap.summary().cleartext_between(a.protected_net, b.protected_net)
    try:
        with Capture(uml_lab.ns, a.tap, pcap_dir / "c2c.pcap") as cap:
            charon_a.initiate(CHILD)
            child_a = charon_a.wait_child_installed(CHILD, UP_TIMEOUT)
            child_b = charon_b.wait_child_installed(CHILD, UP_TIMEOUT)
            ping_both_ways(a, b)
        assert_esp_only(cap.summary(), a, b)

        for child in (child_a, child_b):
            assert child["protocol"] == "ESP" and child["mode"] == "TUNNEL"
            assert child.get("encap", "no") == "no" and child["encr-alg"] == "AES_GCM_16"
            assert child["ike"]["state"] == "ESTABLISHED" and child["ike"]["version"] == "2"
        assert spi(child_a["spi-in"]) == spi(child_b["spi-out"])
        assert spi(child_a["spi-out"]) == spi(child_b["spi-in"])
        for guest, peer, child in ((a, b, child_a), (b, a, child_b)):
            states = assert_kernel_matches(
                guest,
                peer,
                spi(child["spi-in"]),
                spi(child["spi-out"]),
                int(child["reqid"]),
                IKEV2[1],
            )
            assert states[spi(child["spi-out"])]["packets"] >= 2 * PINGS
            assert states[spi(child["spi-in"])]["packets"] >= 2 * PINGS
    except BaseException:
        for c in (charon_a, charon_b):
            print(f"--- {c} log ---\n{c.log_tail(80)}")
        raise
    finally:
        codes = [c.stop() for c in (charon_a, charon_b)]
    assert codes == [0, 0]
    for g in (a, b):
        assert esp_states(g) == {}, g.name


@pytest.mark.parametrize("agent_role", ["initiator", "responder"])
@pytest.mark.parametrize(
    "version,ike,esp,encap",
    [(2, *IKEV2, False), (1, *IKEV1, False), (2, *IKEV2, True)],
    ids=["ikev2", "ikev1-main", "ikev2-forced-udp-encap"],
)
def test_agent_with_charon(
    uml_lab: UmlLab,
    pair: tuple[Guest, Guest],
    agent_role: str,
    version: int,
    ike: str,
    esp: str,
    encap: bool,
) -> None:
    """The agent (xfrm) in guest a, charon (kernel-netlink) in guest b."""
    a, b = pair
    side_a, side_b = sides(a, b, version, ike, esp)
    charon = charon_for(side_b)
    agent = agent_for(side_a, encap=encap)
    try:
        with Capture(uml_lab.ns, a.tap, uml_lab.lab.workdir("pcap") / "agent.pcap") as cap:
            if agent_role == "initiator":
                agent.ikectl("up", side_a.conn, json_output=False, timeout=UP_TIMEOUT)
            else:
                charon.initiate(CHILD)
            theirs = charon.wait_child_installed(CHILD, UP_TIMEOUT)
            ours = wait_installed(agent, CHILD, UP_TIMEOUT)
            ping_both_ways(a, b)
        assert_esp_only(cap.summary(), a, b, udp=encap)

        [ike_sa] = agent.list_sas()
        assert ike_sa["state"] == "ESTABLISHED" and ike_sa["version"] == version
        assert ike_sa["role"] == agent_role
        if not encap:
            assert not ike_sa["nat_local"] and not ike_sa["nat_remote"]
        assert ours["protocol"] == "ESP" and ours["encap"] is encap
        assert theirs["ike"]["state"] == "ESTABLISHED"
        assert theirs["ike"]["version"] == str(version)
        assert theirs["protocol"] == "ESP"
        assert theirs.get("encap", "no") == ("yes" if encap else "no")
        # the same pair seen from both ends
        assert spi(ours["spi_in"]) == spi(theirs["spi-out"])
        assert spi(ours["spi_out"]) == spi(theirs["spi-in"])

        # each kernel holds what its daemon reports, and counted the pings
        ours_k = assert_kernel_matches(
            a, b, spi(ours["spi_in"]), spi(ours["spi_out"]), int(ours["reqid"]), esp, udp=encap
        )
        theirs_k = assert_kernel_matches(
            b,
            a,
            spi(theirs["spi-in"]),
            spi(theirs["spi-out"]),
            int(theirs["reqid"]),
            esp,
            udp=encap,
        )
        for states in (ours_k, theirs_k):
            assert all(st["packets"] >= 2 * PINGS for st in states.values()), states
        # the agent reads its counters from the kernel (GETSA)
        [child] = [c for c in agent.children() if c["state"] == "INSTALLED"]
        assert child["packets_out"] >= 2 * PINGS and child["packets_in"] >= 2 * PINGS, child
    except BaseException:
        print(f"--- agent log ---\n{agent.log_tail(80)}")
        print(f"--- charon log ---\n{charon.log_tail(80)}")
        raise
    finally:
        agent_code = agent.stop()
    assert agent_code == 0, agent.log_tail()
    assert esp_states(a) == {}, "the agent left SAs behind"
    # the agent said goodbye (a Delete, RFC 7296 section 1.4.1 / RFC 2408 section 3.15):
    # charon drops the IKE SA and its CHILD_SA from the kernel without waiting for DPD
    gone = wait_until(lambda: not charon.list_sas() and not esp_states(b), UP_TIMEOUT)
    assert gone, f"charon kept the SAs after the agent stopped:\n{charon.log_tail()}"
    assert charon.stop() == 0


def wait_until(pred: Callable[[], object], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.5)
    return True


def wait_installed(agent: GuestAgent, child: str, timeout: float) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        found = agent.installed(child)
        if found:
            return found[0]
        if time.monotonic() > deadline:
            raise AssertionError(f"{child} not INSTALLED in the agent:\n{agent.log_tail()}")
        time.sleep(0.3)
