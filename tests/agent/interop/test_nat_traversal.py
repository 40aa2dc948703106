"""NAT traversal through a real NAT (nftables masquerade in a router namespace): NAT detection,
floating to UDP 4500 and UDP-encapsulated ESP, with the gateway behind the NAT initiating; in
IKEv2 (RFC 7296 2.23) and IKEv1 (RFC 3947, RFC 3948).

    hostA -- gwA (198.18.1.2) -- nat (198.18.1.1 | 192.0.2.1) -- gwB (192.0.2.2) -- hostB
"""

from __future__ import annotations

import dataclasses
import shutil
import time

import pytest
from tunnels import print_logs

from ikelab_testing.agent import Agent
from ikelab_testing.checks import assert_blocked, assert_encrypted, assert_passes
from ikelab_testing.netns import HOST_IF, LAN, WAN, Lab, Site, TopologySpec
from ikelab_testing.peers import AgentPeer, End, TunnelSpec, agent_config, charon_peer

pytestmark = [pytest.mark.netns, pytest.mark.interop]

PRIVATE = "198.18.1.0/24"
KEEP_ALIVE = 1.0


def agent_peer(end: End) -> AgentPeer:
    """The lab's agent peer, with NAT-T keepalives every second so the test sees them."""
    peer = AgentPeer.__new__(AgentPeer)
    peer.end = end
    cfg = agent_config(end)
    cfg["agent"] = {"keep_alive": f"{KEEP_ALIVE:g}s"}
    peer.agent = Agent(end.site.gw, cfg, end.topology.lab).start()
    return peer


class NatTopology:
    """The standard picture with gwA behind a masquerading router (same attributes as
    ``Topology``, so the lab's checks and peers work with it)."""

    def __init__(self, lab: Lab) -> None:
        self.lab = lab
        self.spec = TopologySpec()
        s = self.spec
        self.host_a = lab.namespace("ha")
        self.gw_a = lab.namespace("ga")
        self.nat = lab.namespace("nat")
        self.gw_b = lab.namespace("gb")
        self.host_b = lab.namespace("hb")
        for ns in (self.gw_a, self.gw_b, self.nat):
            ns.sysctl("net.ipv4.ip_forward", 1)
        lab.veth(self.gw_a, WAN, self.nat, "in0")
        lab.veth(self.nat, "out0", self.gw_b, WAN)
        lab.veth(self.gw_a, LAN, self.host_a, HOST_IF)
        lab.veth(self.gw_b, LAN, self.host_b, HOST_IF)
        self.gw_a.add_address(WAN, "198.18.1.2/24")
        self.nat.add_address("in0", "198.18.1.1/24")
        self.nat.add_address("out0", f"{s.gw_a_outer}/24")  # the NAT's public address
        self.gw_b.add_address(WAN, f"{s.gw_b_outer}/24")
        self.gw_a.add_route("0.0.0.0/0", gateway="198.18.1.1")
        self.gw_a.add_address(LAN, f"{s.gw_a_inner}/24")
        self.gw_b.add_address(LAN, f"{s.gw_b_inner}/24")
        self.host_a.add_address(HOST_IF, f"{s.host_a_addr}/24")
        self.host_b.add_address(HOST_IF, f"{s.host_b_addr}/24")
        self.host_a.add_route("0.0.0.0/0", gateway=s.gw_a_inner)
        self.host_b.add_route("0.0.0.0/0", gateway=s.gw_b_inner)
        ruleset = (
            "table ip ikelabnat {\n"
            ' chain post { type nat hook postrouting priority 100; oifname "out0" meta l4proto udp masquerade to :20000-60000 random; oifname "out0" masquerade; }\n'
            "}\n"
        )
        self.nat.run(["nft", "-f", "-"], input=ruleset)
        self.site_a = Site(
            "a", self.gw_a, self.host_a, "198.18.1.2", s.gw_a_inner, s.host_a_addr, s.subnet_a
        )
        self.site_b = Site(
            "b", self.gw_b, self.host_b, s.gw_b_outer, s.gw_b_inner, s.host_b_addr, s.subnet_b
        )
        # how gwB sees gwA: at the NAT's public address
        self.site_a_public = dataclasses.replace(self.site_a, outer=s.gw_a_outer)

    def sites(self) -> tuple[Site, Site]:
        return self.site_a, self.site_b


@pytest.fixture
def nat_topology(lab: Lab) -> NatTopology:
    if shutil.which("nft") is None:
        pytest.skip("nftables (nft) is not installed (run: sudo ./scripts/setup)")
    return NatTopology(lab)


SPECS = {
    2: TunnelSpec(),
    1: TunnelSpec(
        version=1, proposals=("aes256-sha256-modp2048",), esp_proposals=("aes256-sha256",)
    ),
}


@pytest.mark.parametrize("version", [2, 1], ids=["ikev2", "ikev1"])
@pytest.mark.parametrize(
    "behind_nat,other",
    [("agent", "charon"), ("charon", "agent"), ("agent", "agent")],
    ids=["agent-behind-nat-vs-charon", "charon-behind-nat-vs-agent", "agent-vs-agent"],
)
def test_tunnel_through_a_real_nat(
    nat_topology: NatTopology, capture_factory, behind_nat: str, other: str, version: int
) -> None:
    topo = nat_topology
    factories = {"agent": agent_peer, "charon": charon_peer}
    spec = SPECS[version]
    cap = capture_factory(topo.gw_b, WAN)
    peer_b = factories[other](End(topo, topo.site_b, topo.site_a_public, spec, initiator=False))  # type: ignore[arg-type]
    peer_a = factories[behind_nat](End(topo, topo.site_a, topo.site_b, spec, initiator=True))  # type: ignore[arg-type]
    try:
        assert_blocked(topo)  # type: ignore[arg-type]
        peer_a.initiate()
        peer_a.wait_up(20)
        peer_b.wait_up(20)
        passed = assert_passes(topo, count=3)  # type: ignore[arg-type]
        assert passed.received == 3, passed
        back = topo.host_b.ping(topo.spec.host_a_addr, count=3)
        assert back.received == 3, back
        for peer, inside in ((peer_a, True), (peer_b, False)):
            if hasattr(peer, "agent"):
                [sa] = peer.agent.list_sas()
                # the side behind the NAT sees its own address translated, the other side sees
                # the peer's translated (both may also report NAT for forced encapsulation)
                assert sa["nat_local" if inside else "nat_remote"] is True, sa
                assert sa["local_port"] == 4500
                # the outside side talks to whatever port the NAT mapped the peer's 4500 to
                assert sa["remote_port"] == 4500 if inside else sa["remote_port"] not in (500,)
                [child] = sa["children"]
                assert child["encap"] and child["packets_in"] >= 3
            else:
                [ike] = peer.charon.list_sas().values()
                assert ike["state"] == "ESTABLISHED"
                assert ike.get("nat-local" if inside else "nat-remote") == "yes", ike
        if behind_nat == "agent":
            # behind the NAT the agent keeps the mapping alive (RFC 3948 2.3)
            time.sleep(2.5 * KEEP_ALIVE)
            stats = peer_a.agent.status()["stats"]["engine"]
            sent = stats.get("keepalives_sent", 0) + stats.get("ikev1_keepalives_sent", 0)
            assert sent >= 2, stats
        summary = cap.summary()
        assert_encrypted(summary, topo, udp=True)  # type: ignore[arg-type]
        if behind_nat == "agent":
            assert summary.of("keepalive"), summary.describe()
    except BaseException:
        print_logs(peer_a, peer_b)
        raise
    finally:
        peer_a.stop()
        peer_b.stop()
