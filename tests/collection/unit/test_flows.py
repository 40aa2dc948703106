"""flow_check's logic: ICMP packets (probes), selectors, the child that carries a flow, and
the counter comparison that calls traffic encrypted (with fake probes and a fake agent)."""

from __future__ import annotations

import struct
from typing import Any

import pytest

from ansible_collections.ikelab.ipsec.plugins.module_utils import first_packet, flows, probes
from ansible_collections.ikelab.ipsec.plugins.module_utils.agent_client import (
    AgentCommandError,
    AgentUnreachable,
)

# --- ICMP -------------------------------------------------------------------------------------------


def test_checksum_rfc1071_example() -> None:
    # RFC 1071, section 3: 00 01 f2 03 f4 f5 f6 f7 sums to ddf2; the checksum is its complement
    assert probes.checksum(bytes.fromhex("0001f203f4f5f6f7")) == 0x220D
    assert probes.checksum(b"\x01") == (~0x0100 & 0xFFFF)  # odd length: padded with a zero byte


def test_echo_request_v4_carries_a_valid_checksum() -> None:
    packet = probes.echo_request(0x1234, 7, v6=False)
    kind, code, _, ident, seq = struct.unpack("!BBHHH", packet[:8])
    assert (kind, code, ident, seq) == (8, 0, 0x1234, 7)
    assert probes.checksum(packet) == 0  # a correct checksum sums to all ones
    assert packet[8:] == probes.PAYLOAD


def test_echo_request_v6_leaves_the_checksum_to_the_kernel() -> None:
    packet = probes.echo_request(1, 2, v6=True)
    assert struct.unpack("!BBHHH", packet[:8]) == (128, 0, 0, 1, 2)


def ipv4(proto: int, payload: bytes, ihl: int = 5) -> bytes:
    header = bytes([0x40 | ihl, 0]) + struct.pack("!H", 20 + len(payload)) + bytes(5)
    header += bytes([proto]) + bytes(2) + bytes([10, 2, 0, 2]) + bytes([10, 1, 0, 1])
    return header + bytes(4 * ihl - 20) + payload


def test_parse_an_echo_reply_behind_an_ip_header_with_options() -> None:
    reply = struct.pack("!BBHHH", 0, 0, 0, 0xBEEF, 3) + b"data"
    assert probes.parse_icmp(ipv4(1, reply, ihl=6), v6=False) == ("reply", 0xBEEF, 3)


def test_parse_an_unreachable_quoting_our_request() -> None:
    quoted = ipv4(1, probes.echo_request(0xBEEF, 4, v6=False))
    message = struct.pack("!BBHI", 3, 1, 0, 0) + quoted
    assert probes.parse_icmp(ipv4(1, message), v6=False) == ("unreachable", 0xBEEF, 4)
    expired = struct.pack("!BBHI", 11, 0, 0, 0) + quoted
    assert probes.parse_icmp(ipv4(1, expired), v6=False) == ("expired", 0xBEEF, 4)


def test_parse_ignores_other_messages_and_garbage() -> None:
    request = probes.echo_request(1, 1, v6=False)  # our own request, seen on the raw socket
    assert probes.parse_icmp(ipv4(1, request), v6=False) is None
    assert probes.parse_icmp(b"\x45" + bytes(10), v6=False) is None
    assert probes.parse_icmp(b"", v6=True) is None
    udp_quoted = struct.pack("!BBHI", 3, 3, 0, 0) + ipv4(17, bytes(8))
    assert probes.parse_icmp(ipv4(1, udp_quoted), v6=False) is None


def test_parse_icmpv6_reply_and_unreachable() -> None:
    reply = struct.pack("!BBHHH", 129, 0, 0, 9, 1)
    assert probes.parse_icmp(reply, v6=True) == ("reply", 9, 1)
    inner = bytes(6) + bytes([58]) + bytes(33) + probes.echo_request(9, 2, v6=True)
    unreachable = struct.pack("!BBHI", 1, 0, 0, 0) + inner
    assert probes.parse_icmp(unreachable, v6=True) == ("unreachable", 9, 2)


# --- selectors ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "address", "proto", "ports", "expected"),
    [
        ("10.2.0.0/24", "10.2.0.2", 1, (0x800, 0), True),
        ("10.2.0.0/24", "10.3.0.2", 1, (0x800, 0), False),
        ("10.2.0.0/24", "2001:db8::1", 58, None, False),
        ("10.2.0.0/24[6/443]", "10.2.0.2", 6, (443,), True),
        ("10.2.0.0/24[6/443]", "10.2.0.2", 6, (80,), False),
        ("10.2.0.0/24[6/443]", "10.2.0.2", 17, (443,), False),
        ("10.2.0.0/24[17/1000-2000]", "10.2.0.2", 17, (1500,), True),
        ("10.1.0.0/24[6/443]", "10.1.0.1", 6, None, False),  # an ephemeral port is not 443
        ("10.1.0.0/24[6/0-65535]", "10.1.0.1", 6, None, True),
        ("10.2.0.0/24[1/2048-2303]", "10.2.0.9", 1, (0x800, 0), True),  # [icmp/8]
        ("10.2.0.0/24[1/768-1023]", "10.2.0.9", 1, (0x800, 0), False),  # [icmp/3]
        ("2001:db8:2::/64", "2001:db8:2::5", 58, (128 << 8, 129 << 8), True),
    ],
)
def test_selector_covers(text: str, address: str, proto: int, ports, expected: bool) -> None:
    assert flows.Selector.parse(text).covers(address, proto, ports) is expected


def test_selector_parse_errors() -> None:
    for bad in ("", "10.0.0.0/24[tcp/443]", "[6/1]", "nonsense"):
        with pytest.raises(ValueError):
            flows.Selector.parse(bad)


# --- finding the child ------------------------------------------------------------------------------


def child(name: str = "net", state: str = "INSTALLED", spis=("c1", "d1"), installed=10, **kw):
    out = {
        "name": name,
        "state": state,
        "spi_in": spis[0],
        "spi_out": spis[1],
        "local_ts": ["10.1.0.0/24"],
        "remote_ts": ["10.2.0.0/24"],
        "installed": installed,
        "packets_out": 0,
        "packets_in": 0,
        "bytes_out": 0,
        "bytes_in": 0,
    }
    out.update(kw)
    return out


def ike(name: str = "site-b", *children: dict[str, Any]) -> dict[str, Any]:
    return {"name": name, "state": "ESTABLISHED", "children": list(children) or [child()]}


FLOW = flows.Flow("icmp", "10.1.0.1", "10.2.0.2")


def test_find_child_by_selectors() -> None:
    other = ike("site-c", child(remote_ts=["10.3.0.0/24"]))
    sa, ch = flows.find_child([other, ike()], FLOW)
    assert (sa["name"], ch["name"]) == ("site-b", "net")


def test_find_child_prefers_the_newest_of_a_rekeyed_pair() -> None:
    old = child(spis=("a", "b"), installed=300)
    new = child(spis=("c", "d"), installed=2)
    gone = child(spis=("e", "f"), state="REKEYED", installed=1)
    _, ch = flows.find_child([ike("site-b", old, new, gone)], FLOW)
    assert ch["spi_in"] == "c"


def test_find_child_honours_connection_and_child_names() -> None:
    sas = [ike("site-b", child("net"), child("voice", spis=("x", "y")))]
    _, ch = flows.find_child(sas, FLOW, child="voice")
    assert ch["spi_in"] == "x"
    with pytest.raises(flows.FlowError) as info:
        flows.find_child(sas, FLOW, connection="site-c")
    assert "connection site-c" in str(info.value)


def test_no_child_means_the_tunnel_is_down() -> None:
    with pytest.raises(flows.FlowError) as info:
        flows.find_child([], FLOW)
    assert "the tunnel is down" in str(info.value) and "no Child SAs at all" in str(info.value)
    with pytest.raises(flows.FlowError) as info:
        flows.find_child([ike("site-b", child(state="DELETING"))], FLOW)
    assert "site-b/net DELETING" in str(info.value)


def test_a_port_outside_the_selectors_is_not_covered() -> None:
    sas = [ike("site-b", child(remote_ts=["10.2.0.0/24[6/443]"]))]
    flows.find_child(sas, flows.Flow("tcp", "10.1.0.1", "10.2.0.2", 443))
    with pytest.raises(flows.FlowError):
        flows.find_child(sas, flows.Flow("tcp", "10.1.0.1", "10.2.0.2", 22))
    with pytest.raises(flows.FlowError):
        flows.find_child(sas, flows.Flow("icmp", "10.1.0.1", "10.2.0.2"))


# --- the check with a fake agent and fake probes ------------------------------------------------------


class FakeAgent:
    """list-sas answers in turn; ``carry(out, in, ...)`` makes the child's counters rise."""

    def __init__(self, sas: list[dict[str, Any]], traps: list[dict[str, Any]] | None = None):
        self.sas = sas
        self.traps = traps or []
        self.calls = 0

    def list_sas(self, name: str | None = None) -> list[dict[str, Any]]:
        self.calls += 1
        return [s for s in self.sas if name is None or s["name"] == name]

    def list_traps(self, name: str | None = None) -> list[dict[str, Any]]:
        return [t for t in self.traps if name is None or t["name"] == name]

    def carry(self, packets_out: int, packets_in: int, size: int = 84) -> None:
        ch = self.sas[0]["children"][0]
        ch["packets_out"] += packets_out
        ch["packets_in"] += packets_in
        ch["bytes_out"] += packets_out * size
        ch["bytes_in"] += packets_in * size


def sender(agent: FakeAgent, answered: int, tunnel_out: int | None = None, tunnel_in=None):
    """A probe that gets ``answered`` answers and moves the counters as a tunnel would."""
    calls: list[tuple] = []

    def send(source: str, destination: str, port: int, count: int, wait: float):
        calls.append((source, destination, port, count, wait))
        agent.carry(
            count if tunnel_out is None else tunnel_out,
            answered if tunnel_in is None else tunnel_in,
        )
        return flows.ProbeResult(count, answered, ("reply",) * answered)

    send.calls = calls  # type: ignore[attr-defined]
    return send


def check(agent, proto="icmp", senders=None, first_senders=None, **over):
    params = {"source": "10.1.0.1", "destination": "10.2.0.2", "protocol": proto, "count": 3}
    params.update(over)
    return flows.FlowCheck(
        params, agent, senders, sleep=lambda s: None, first_senders=first_senders
    )


def test_traffic_through_the_child_is_encrypted() -> None:
    agent = FakeAgent([ike()])
    send = sender(agent, answered=3)
    c = check(agent, senders={"icmp": send})
    assert not c.needs_change()
    c.apply()
    out = c.dump()
    assert c.failure() is None
    assert out["arrived"] and out["encrypted"] and out["changed"] is False
    assert out["delta"] == {"packets_out": 3, "packets_in": 3, "bytes_out": 252, "bytes_in": 252}
    assert out["counters_after"]["packets_out"] == out["counters_before"]["packets_out"] + 3
    assert out["sa"]["name"] == "site-b" and out["sa"]["child"] == "net"
    assert out["sa"]["spi_in"] == "c1" and out["sa"]["spi_out"] == "d1"
    assert send.calls == [("10.1.0.1", "10.2.0.2", 0, 3, 2.0)]


def test_answers_that_bypassed_the_tunnel_fail() -> None:
    agent = FakeAgent([ike()])
    c = check(agent, senders={"icmp": sender(agent, answered=3, tunnel_out=0, tunnel_in=0)})
    c.apply()
    assert c.dump()["arrived"] and not c.dump()["encrypted"]
    assert "did not go through the tunnel" in c.failure()


def test_nothing_back_fails_with_the_counters() -> None:
    agent = FakeAgent([ike()])
    c = check(agent, "udp", senders={"udp": sender(agent, answered=0)}, port=53)
    c.apply()
    out = c.dump()
    assert not out["arrived"] and out["port"] == 53
    assert "nothing came back" in c.failure() and "packets out +3" in c.failure()


def test_counters_that_lag_are_read_again() -> None:
    agent = FakeAgent([ike()])

    def send(source, destination, port, count, wait):
        return flows.ProbeResult(count, count, ())

    class Lagging(FakeAgent):
        def list_sas(self, name=None):
            if self.calls == 2:  # the first read after the probes: not counted yet
                self.carry(3, 3)
            return super().list_sas(name)

    lagging = Lagging(agent.sas)
    c = check(lagging, senders={"icmp": send})
    c.apply()
    assert c.dump()["encrypted"] and lagging.calls >= 3


def test_a_rekey_during_the_check_retries_once() -> None:
    agent = FakeAgent([ike()])
    attempts = []

    def send(source, destination, port, count, wait):
        attempts.append(1)
        if len(attempts) == 1:  # the child is replaced while the probes fly
            agent.sas = [ike("site-b", child(spis=("c2", "d2"), installed=0))]
        agent.carry(count, count)
        return flows.ProbeResult(count, count, ())

    c = check(agent, senders={"icmp": send})
    c.apply()
    assert len(attempts) == 2 and c.dump()["sa"]["spi_in"] == "c2" and c.failure() is None


def test_tunnel_down_fails_before_sending_anything() -> None:
    agent = FakeAgent([])
    send = sender(agent, answered=3)
    c = check(agent, senders={"icmp": send})
    with pytest.raises(flows.FlowError) as info:
        c.apply()
    assert "tunnel is down" in str(info.value) and send.calls == []


def test_agent_unreachable_is_a_flow_error() -> None:
    class Down:
        def list_sas(self, name=None):
            raise AgentUnreachable("cannot reach ikeagent at /x (is the agent running?)")

    with pytest.raises(flows.FlowError) as info:
        check(Down()).apply()
    assert "is the agent running?" in str(info.value)


def test_source_defaults_to_the_routing_choice() -> None:
    c = flows.FlowCheck(
        {"destination": "10.2.0.2"}, FakeAgent([ike()]), source_for=lambda d: "10.1.0.1"
    )
    assert c.flow.source == "10.1.0.1"


@pytest.mark.parametrize(
    ("over", "field"),
    [
        ({"destination": "10.2.0"}, "destination"),
        ({"source": "host.example"}, "source"),
        ({"protocol": "sctp"}, "protocol"),
        ({"protocol": "tcp", "port": 0}, "port"),
        ({"count": 0}, "count"),
        ({"count": 101}, "count"),
        ({"wait": 61}, "wait"),
    ],
)
def test_bad_parameters_name_their_field(over: dict[str, Any], field: str) -> None:
    with pytest.raises(flows.FlowError) as info:
        check(FakeAgent([ike()]), **over)
    assert str(info.value).startswith(f"{field}: ")


def test_mixed_families_are_refused() -> None:
    with pytest.raises(flows.FlowError) as info:
        check(FakeAgent([]), destination="2001:db8::1")
    assert "same address family" in str(info.value)


# --- on-demand tunnels ---------------------------------------------------------------------------


def trap(name: str = "site-b", acquires: int = 0, active: bool = False, **kw: Any):
    out = {
        "name": name,
        "child": "net",
        "reqid": 4,
        "local_ts": ["10.1.0.0/24"],
        "remote_ts": ["10.2.0.0/24"],
        "reason": "start_action",
        "acquires": acquires,
        "last_acquire": None,
        "active": active,
    }
    out.update(kw)
    return out


def test_find_trap_by_selectors_and_names() -> None:
    traps = [trap("site-c", remote_ts=["10.3.0.0/24"]), trap()]
    assert flows.find_trap(traps, FLOW)["name"] == "site-b"
    assert flows.find_trap(traps, FLOW, connection="site-c") is None
    assert flows.find_trap(traps, FLOW, child="voice") is None
    assert flows.find_trap([], FLOW) is None
    tcp_only = [trap(remote_ts=["10.2.0.0/24[6/443]"])]
    assert flows.find_trap(tcp_only, flows.Flow("tcp", "10.1.0.1", "10.2.0.2", 443))
    assert flows.find_trap(tcp_only, FLOW) is None


def first_sender(agent: FakeAgent, result: first_packet.FirstPacket, bring_up: bool = True):
    """The first traffic of an on-demand tunnel: it hits the trap, and (``bring_up``) the
    Child SA appears as the agent negotiates it."""
    calls: list[tuple] = []

    def send(source: str, destination: str, port: int, wait: float, interval: float):
        calls.append((source, destination, port, wait, interval))
        agent.traps = [trap(acquires=1, active=bring_up)]
        if bring_up:
            agent.sas = [ike()]
        return result

    send.calls = calls  # type: ignore[attr-defined]
    return send


def test_on_demand_reports_the_time_to_first_packet_then_proves_the_traffic() -> None:
    agent = FakeAgent([], traps=[trap()])
    first = first_sender(agent, first_packet.FirstPacket(5, "echo reply", 0.0846, 1))
    c = check(agent, senders={"icmp": sender(agent, answered=3)}, first_senders={"icmp": first})
    c.apply()
    out = c.dump()
    assert c.failure() is None
    assert out["on_demand"] is True and out["time_to_first_packet_ms"] == 84.6
    assert out["first_packet"] == {
        "sent": 5, "outcome": "echo reply", "answered": 1, "elapsed_ms": 84.6,
    }  # fmt: skip
    assert out["trap"]["state"] == "active" and out["trap"]["acquires"] == 1
    assert out["trap"]["reqid"] == 4
    # the proof is the usual one, through the SA the first traffic brought up
    assert out["encrypted"] and out["delta"]["packets_out"] == 3 and out["sent"] == 3
    assert first.calls == [("10.1.0.1", "10.2.0.2", 0, 10.0, first_packet.INTERVAL)]


def test_a_child_already_up_is_not_on_demand() -> None:
    agent = FakeAgent([ike()], traps=[trap(active=True)])
    first = first_sender(agent, first_packet.FirstPacket(1, "echo reply", 0.001, 1))
    c = check(agent, senders={"icmp": sender(agent, answered=3)}, first_senders={"icmp": first})
    c.apply()
    out = c.dump()
    assert out["on_demand"] is False and "time_to_first_packet_ms" not in out
    assert first.calls == [] and out["encrypted"]


def test_on_demand_without_an_answer_fails_with_the_trap() -> None:
    agent = FakeAgent([], traps=[trap()])
    first = first_sender(agent, first_packet.FirstPacket(250, "timeout"), bring_up=False)
    send = sender(agent, answered=3)
    c = check(agent, senders={"icmp": send}, first_senders={"icmp": first}, on_demand_wait=5)
    c.apply()
    out = c.dump()
    assert out["on_demand"] is True and out["time_to_first_packet_ms"] is None
    assert "arrived" not in out and send.calls == []
    reason = c.failure()
    assert "the tunnel is on demand (trap reqid 4, no Child SA yet)" in reason
    assert "nothing came back from 250 probe(s) within 5s (timeout; the trap was hit 1" in reason


def test_an_answer_without_a_child_did_not_cross_the_tunnel() -> None:
    agent = FakeAgent([], traps=[trap()])
    first = first_sender(agent, first_packet.FirstPacket(1, "echo reply", 0.01, 1), False)
    clock = iter(range(100))
    c = flows.FlowCheck(
        {"source": "10.1.0.1", "destination": "10.2.0.2"},
        agent,
        {"icmp": sender(agent, answered=3)},
        sleep=lambda s: None,
        first_senders={"icmp": first},
        clock=lambda: float(next(clock)),
    )
    with pytest.raises(flows.FlowError) as info:
        c.apply()
    assert "was answered, but no installed Child SA covers the flow" in str(info.value)
    assert "did not go through the tunnel" in str(info.value)


def test_without_a_trap_a_missing_child_is_still_a_tunnel_down() -> None:
    agent = FakeAgent([], traps=[trap(remote_ts=["10.3.0.0/24"])])
    first = first_sender(agent, first_packet.FirstPacket(1, "echo reply", 0.01, 1))
    c = check(agent, first_senders={"icmp": first})
    with pytest.raises(flows.FlowError) as info:
        c.apply()
    assert "the tunnel is down" in str(info.value) and first.calls == []


def test_an_agent_without_list_traps_is_a_tunnel_down() -> None:
    class Old(FakeAgent):
        def list_traps(self, name=None):
            raise AgentCommandError("list-traps", "unknown command 'list-traps'")

    with pytest.raises(flows.FlowError) as info:
        check(Old([])).apply()
    assert "the tunnel is down" in str(info.value)


def test_on_demand_wait_is_checked() -> None:
    for bad in (0, 121):
        with pytest.raises(flows.FlowError) as info:
            check(FakeAgent([ike()]), on_demand_wait=bad)
        assert str(info.value).startswith("on_demand_wait: ")


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_the_first_packet_schedule_sends_at_the_interval_until_the_deadline() -> None:
    clock = FakeClock()
    s = first_packet._Schedule(wait=0.1, interval=0.02, clock=clock)
    assert s.due() and not s.due()  # the first probe at once, then not before the interval
    assert s.pause() == pytest.approx(0.02)
    clock.now += 0.05  # late: one probe now, the next an interval later (no burst)
    assert s.due() and not s.due() and s.pause() == pytest.approx(0.02)
    clock.now = 100.1
    assert s.over() and not s.due() and s.elapsed() == pytest.approx(0.1)


def test_first_packet_result() -> None:
    got = first_packet.FirstPacket(3, "refused (RST)", 0.01234, 2)
    assert got.arrived and got.as_dict()["elapsed_ms"] == 12.3
    assert not first_packet.FirstPacket(9, "timeout").arrived
    assert not first_packet.FirstPacket(1, "unreachable (from 10.1.0.254)", 0.1, 1).arrived
