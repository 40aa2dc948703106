"""IPv6 end to end: IKE and UDP-encapsulated ESP over an IPv6 underlay, protecting IPv6 subnets,
agent to agent and agent against charon, in IKEv2 and IKEv1."""

from __future__ import annotations

import pytest
from tunnels import print_logs

from ikelab_testing.checks import assert_blocked, assert_encrypted, assert_passes
from ikelab_testing.netns import HOST_IF, LAN, WAN, Lab, Site
from ikelab_testing.peers import End, TunnelSpec, agent_peer, charon_peer

pytestmark = [pytest.mark.netns, pytest.mark.interop]


class V6Spec:
    subnet_a = "2001:db8:a::/64"
    subnet_b = "2001:db8:b::/64"
    underlay = "2001:db8:1::/64"
    gw_a_outer = "2001:db8:1::1"
    gw_b_outer = "2001:db8:1::2"
    gw_a_inner = "2001:db8:a::1"
    gw_b_inner = "2001:db8:b::1"
    host_a_addr = "2001:db8:a::2"
    host_b_addr = "2001:db8:b::2"


class V6Topology:
    """The standard picture in IPv6 (same attributes as ``Topology``)."""

    def __init__(self, lab: Lab) -> None:
        self.lab = lab
        self.spec = s = V6Spec()
        self.host_a = lab.namespace("ha")
        self.gw_a = lab.namespace("ga")
        self.gw_b = lab.namespace("gb")
        self.host_b = lab.namespace("hb")
        for ns in (self.host_a, self.gw_a, self.gw_b, self.host_b):
            # addresses usable at once (no duplicate address detection in a private lab)
            ns.sysctl("net.ipv6.conf.default.accept_dad", 0)
            ns.sysctl("net.ipv6.conf.all.accept_dad", 0)
        for gw in (self.gw_a, self.gw_b):
            gw.sysctl("net.ipv6.conf.all.forwarding", 1)
        lab.veth(self.gw_a, WAN, self.gw_b, WAN)
        lab.veth(self.gw_a, LAN, self.host_a, HOST_IF)
        lab.veth(self.gw_b, LAN, self.host_b, HOST_IF)
        self.gw_a.add_address(WAN, f"{s.gw_a_outer}/64")
        self.gw_b.add_address(WAN, f"{s.gw_b_outer}/64")
        self.gw_a.add_address(LAN, f"{s.gw_a_inner}/64")
        self.gw_b.add_address(LAN, f"{s.gw_b_inner}/64")
        self.host_a.add_address(HOST_IF, f"{s.host_a_addr}/64")
        self.host_b.add_address(HOST_IF, f"{s.host_b_addr}/64")
        self.host_a.add_route("::/0", gateway=s.gw_a_inner)
        self.host_b.add_route("::/0", gateway=s.gw_b_inner)
        self.site_a = Site(
            "a", self.gw_a, self.host_a, s.gw_a_outer, s.gw_a_inner, s.host_a_addr, s.subnet_a
        )
        self.site_b = Site(
            "b", self.gw_b, self.host_b, s.gw_b_outer, s.gw_b_inner, s.host_b_addr, s.subnet_b
        )

    def sites(self) -> tuple[Site, Site]:
        return self.site_a, self.site_b


SPECS = {
    2: TunnelSpec(proposals=("aes256gcm16-prfsha256-x25519",), esp_proposals=("aes256gcm16",)),
    # IKEv1: ID_IPV6_ADDR_SUBNET client IDs, IPv6 NAT-D hashes
    1: TunnelSpec(version=1, proposals=("aes256-sha256-ecp256",), esp_proposals=("aes256gcm16",)),
}


@pytest.mark.parametrize("version", [2, 1], ids=["ikev2", "ikev1"])
@pytest.mark.parametrize("responder", ["agent", "charon"])
def test_ipv6_tunnel(lab: Lab, capture_factory, responder: str, version: int) -> None:
    topo = V6Topology(lab)
    spec = SPECS[version]
    cap = capture_factory(topo.gw_a, WAN)
    factory_b = agent_peer if responder == "agent" else charon_peer
    peer_b = factory_b(End(topo, topo.site_b, topo.site_a, spec, initiator=False))  # type: ignore[arg-type]
    peer_a = agent_peer(End(topo, topo.site_a, topo.site_b, spec, initiator=True))  # type: ignore[arg-type]
    try:
        assert_blocked(topo)  # type: ignore[arg-type]
        peer_a.initiate()
        peer_a.wait_up(20)
        peer_b.wait_up(20)
        passed = assert_passes(topo, count=3)  # type: ignore[arg-type]
        assert passed.received == 3, passed
        back = topo.host_b.ping(topo.spec.host_a_addr, count=3)
        assert back.received == 3, back
        [sa] = peer_a.agent.list_sas()
        assert (
            sa["local_addr"] == topo.spec.gw_a_outer and sa["remote_addr"] == topo.spec.gw_b_outer
        )
        [child] = sa["children"]
        assert child["local_ts"] == [topo.spec.subnet_a] and child["remote_ts"] == [
            topo.spec.subnet_b
        ]
        assert child["packets_in"] >= 3 and child["packets_out"] >= 3
        assert_encrypted(cap.summary(), topo, udp=True)  # type: ignore[arg-type]
    except BaseException:
        print_logs(peer_a, peer_b)
        raise
    finally:
        peer_a.stop()
        peer_b.stop()
