"""Trap policies in the userspace data plane: the SA database's bookkeeping, the bounded hold
queue, the Acquire rate limit, and held packets leaving through the SA installed for them, in
order. The packet paths run as in test_userspace_paths (a socket pair stands in for the TUN
device, ESP goes over UDP on 127.0.0.1); the last tests run the plane's own threads on it."""

from __future__ import annotations

import ipaddress
import os
import struct
import threading
import time
from collections.abc import Iterator

import pytest
from test_userspace_paths import Side, child, ipv4, make_side, ts, wire

from ikeagent.dataplane.base import (
    ACQUIRE_RETRY,
    TRAP_QUEUE_LIMIT,
    Acquire,
    ChildSa,
    SaKeys,
    TrafficSelector,
    TrapPolicy,
)
from ikeagent.dataplane.userspace import UserspaceDataplane, trap_path
from ikeagent.dataplane.userspace.plane import _pipe
from ikeagent.dataplane.userspace.sad import Sad
from ikeagent.dataplane.userspace.trap import HOLD_TIMEOUT, Trap

A_NET, B_NET = "10.1.0.0/24", "10.2.0.0/24"


def trap(reqid: int = 1, local: str = A_NET, remote: str = B_NET) -> TrapPolicy:
    return TrapPolicy(reqid, "net", "127.0.0.1", "127.0.0.1", (ts(local),), (ts(remote),))


def ping(seq: int, src: str = "10.1.0.1", dst: str = "10.2.0.1") -> bytes:
    """An ICMP echo request whose payload tells the packets apart."""
    return ipv4(src, dst, payload=b"\x08\x00\x00\x00\x00\x01" + struct.pack(">H", seq) + bytes(24))


def esp_heads(side: Side) -> list[tuple[int, int]]:
    """(SPI, sequence number) of every datagram waiting on the side's encap socket."""
    heads = []
    while True:
        try:
            heads.append(struct.unpack(">II", side.encap.recv(65536)[:8]))
        except BlockingIOError:
            return heads


class Clock:
    """Stands in for ``time`` in the trap path, so the Acquire and hold timers are exact."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def monotonic(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    fake = Clock()
    monkeypatch.setattr(trap_path, "time", fake)
    return fake


@pytest.fixture
def sides() -> Iterator[tuple[Side, Side]]:
    a, b = make_side(), make_side()
    yield a, b
    for side in (a, b):
        side.plane._running = False
        for s in (side.kernel, side.tun, side.encap):
            s.close()


def armed(a: Side) -> list[int]:
    """Install the trap on A and count the wakeups its events cause."""
    woken: list[int] = []
    a.plane.set_event_callback(lambda: woken.append(1))
    a.plane.install_trap(trap())
    return woken


def install_pairs(a: Side, b: Side, spi_a: int = 0x1001, spi_b: int = 0x2001) -> None:
    """The SA pair the negotiation would bring: on A under the trap's reqid, on B plainly."""
    a.plane.install_child(child(a, b, spi_a, spi_b))
    b.plane.install_child(child(b, a, spi_b, spi_a, local=(ts(B_NET),), remote=(ts(A_NET),)))


# -- the SA database --------------------------------------------------------------------------


def test_trap_is_a_policy_without_sa() -> None:
    sad = Sad()
    policy, new = sad.install_trap(trap())
    assert new and policy.trap is not None and policy.out is None and policy.pairs == ()
    packet = ping(1)
    assert sad.lookup_outbound(packet, 0, len(packet)) is policy
    outside = ping(1, dst="10.3.0.1")
    assert sad.lookup_outbound(outside, 0, len(outside)) is None
    assert sad.traps == (policy,) and sad.inbound == {}


def test_a_second_trap_changes_nothing() -> None:
    sad = Sad()
    policy, _ = sad.install_trap(trap())
    first = policy.trap
    again, new = sad.install_trap(trap(local="10.0.0.0/8"))
    assert again is policy and not new and policy.trap is first
    assert policy.selectors.local[0].low == int(ipaddress.ip_address("10.1.0.0"))


def test_pair_under_a_trap_is_published_by_the_outbound_thread() -> None:
    """install_child attaches the pair to the trap's policy; its outbound SA waits in the trap
    (the hot path still sees no SA) until the outbound thread publishes it."""
    released: list[object] = []
    sad = Sad(on_release=released.append)
    policy, _ = sad.install_trap(trap())
    same, new = sad.install(pair_child())
    assert same is policy and not new and len(policy.pairs) == 1
    assert policy.out is None and released == [policy]
    assert policy.trap is not None and policy.trap.release is policy.pairs[0].outbound
    sa, held = policy.trap.take()
    assert sa is policy.pairs[0].outbound and not held
    assert policy.trap.publish(policy, sa) and policy.out is sa and policy.trap.release is None
    # a rekey of a trap that is up switches at once, nothing waits
    sad.install(pair_child(0x102, 0x202))
    assert policy.out is policy.pairs[1].outbound and released == [policy]


def test_deleting_the_last_pair_arms_the_trap_again() -> None:
    sad = Sad()
    policy, _ = sad.install_trap(trap())
    sad.install(pair_child())
    assert policy.trap is not None
    sa, _ = policy.trap.take()
    assert sa is not None
    policy.trap.publish(policy, sa)
    policy.trap.acquired_at = 5.0
    sad.delete(1, 0x101, 0x201)
    assert sad.policies[1] is policy and policy.out is None and policy.pairs == ()
    assert policy.trap.release is None and policy.trap.acquired_at is None
    assert sad.inbound == {}


def test_deleting_a_pair_before_it_was_published_withdraws_it() -> None:
    sad = Sad()
    policy, _ = sad.install_trap(trap())
    sad.install(pair_child())
    sad.delete(1, 0x101, 0x201)
    assert policy.trap is not None
    sa, held = policy.trap.take()
    assert sa is None and not held and policy.out is None


def test_trap_on_an_existing_policy_arms_it_without_changing_it() -> None:
    """dpd_action/close_action trap: the engine arms the trap while the SAs are still up."""
    sad = Sad()
    policy, _ = sad.install(pair_child())
    out = policy.out
    same, new = sad.install_trap(trap(local="10.0.0.0/8"))
    assert same is policy and not new and policy.trap is not None and policy.out is out
    assert policy.selectors.local[0].low == int(ipaddress.ip_address("10.1.0.0"))
    sad.delete(1, 0x101, 0x201)
    assert 1 in sad.policies and policy.out is None and policy.trap.release is None


def test_traps_yield_to_narrower_children_of_their_own() -> None:
    """A child the peer narrowed has a reqid and policy of its own; its traffic must take that
    policy's SA even though the wider trap was installed first."""
    sad = Sad()
    sad.install_trap(trap(reqid=1, remote="10.2.0.0/16"))
    narrow, _ = sad.install(pair_child(reqid=2))
    inside, other = ping(1, dst="10.2.0.9"), ping(1, dst="10.2.7.9")
    assert sad.lookup_outbound(inside, 0, len(inside)) is narrow
    assert sad.lookup_outbound(other, 0, len(other)) is sad.policies[1]


def test_remove_forgets_held_packets() -> None:
    sad = Sad()
    policy, _ = sad.install_trap(trap())
    assert policy.trap is not None
    policy.trap.hold(b"x", 0.0)
    sad.remove(1)
    assert sad.policies == {} and sad.traps == () and not policy.trap.held


def test_hold_queue_is_bounded_and_forgets_stale_packets() -> None:
    t = Trap(lambda policy: None)
    for i in range(TRAP_QUEUE_LIMIT):
        assert t.hold(bytes([i % 256]), 100.0 + i / 1000) == (True, 0)
    assert t.hold(b"over", 100.5) == (False, 0)
    assert len(t.held) == TRAP_QUEUE_LIMIT
    # later, the packets older than HOLD_TIMEOUT go first and make room
    queued, stale = t.hold(b"late", 100.0 + HOLD_TIMEOUT + 0.0505)
    assert (queued, stale) == (True, 51)
    assert t.held[0][1] == bytes([51]) and t.held[-1][1] == b"late"


def test_acquire_is_rate_limited() -> None:
    t = Trap(lambda policy: None)
    assert t.acquire_due(10.0)
    assert not t.acquire_due(10.0 + ACQUIRE_RETRY - 0.01)
    assert t.acquire_due(10.0 + ACQUIRE_RETRY)
    t.release = object()  # type: ignore[assignment]  # an SA came: it is being published
    assert not t.acquire_due(100.0)


def pair_child(spi_in: int = 0x101, spi_out: int = 0x201, reqid: int = 1) -> ChildSa:
    key = bytes(range(20))
    return ChildSa(
        reqid=reqid,
        name="net",
        local_addr="127.0.0.1",
        remote_addr="127.0.0.2",
        inbound=SaKeys(spi_in, 20, key, None),
        outbound=SaKeys(spi_out, 20, key, None),
        local_ts=(ts(A_NET),),
        remote_ts=(ts(B_NET),),
        encap=(4500, 4500),
    )


# -- the packet path (pumped by hand) ---------------------------------------------------------


def test_packets_are_held_and_raise_one_acquire(sides: tuple[Side, Side], clock: Clock) -> None:
    a, b = sides
    woken = armed(a)
    for seq in range(1, 4):
        a.send_inner(ping(seq))
    assert esp_heads(b) == []
    assert a.plane.poll_events() == [Acquire(1, "10.1.0.1", "10.2.0.1")] and woken == [1]
    stats = a.plane.stats()
    assert (stats["held"], stats["acquires"], stats["no_sa"], stats["esp_out"]) == (3, 1, 0, 0)


def test_held_packets_leave_first_and_in_order(sides: tuple[Side, Side], clock: Clock) -> None:
    a, b = sides
    armed(a)
    held = [ping(seq) for seq in range(1, 4)]
    for packet in held:
        a.send_inner(packet)
    install_pairs(a, b)
    assert list(a.plane._releases) == [a.plane._sad.policies[1]]  # the outbound thread's work
    newer = ping(4)
    a.send_inner(newer)  # the turn that reads it releases the held packets first
    assert esp_heads(b) == [(0x2001, seq) for seq in range(1, 5)]
    stats = a.plane.stats()
    assert (stats["held_sent"], stats["esp_out"]) == (3, 4)
    counters = a.plane.counters(1, 0x1001, 0x2001)
    assert (counters.packets_out, counters.bytes_out) == (4, 4 * len(newer))


def test_held_packets_arrive_decrypted_in_order(sides: tuple[Side, Side], clock: Clock) -> None:
    a, b = sides
    armed(a)
    held = [ping(seq) for seq in range(1, 6)]
    for packet in held:
        a.send_inner(packet)
    install_pairs(a, b)
    a.send_inner(ping(6))
    b.pump_in()
    assert b.delivered() == [*held, ping(6)]


def test_packet_read_before_the_wakeup_releases_the_queue(
    sides: tuple[Side, Side], clock: Clock
) -> None:
    """The outbound thread may read a packet of the trap before it noticed the wakeup: that
    packet still leaves after the held ones."""
    a, b = sides
    armed(a)
    for seq in (1, 2):
        a.send_inner(ping(seq))
    install_pairs(a, b)
    a.plane._releases.clear()  # not noticed yet
    a.send_inner(ping(3))
    b.pump_in()
    assert b.delivered() == [ping(1), ping(2), ping(3)]
    assert a.plane._sad.policies[1].out is not None


def test_release_without_new_traffic(sides: tuple[Side, Side], clock: Clock) -> None:
    a, b = sides
    armed(a)
    a.send_inner(ping(1))
    install_pairs(a, b)
    assert a.plane._pump_tun(a.buffers, 4) is True  # the TUN device has nothing more
    b.pump_in()
    assert b.delivered() == [ping(1)]


def test_queue_bound_counts_the_overflow(sides: tuple[Side, Side], clock: Clock) -> None:
    a, b = sides
    armed(a)
    packets = [ping(seq) for seq in range(1, TRAP_QUEUE_LIMIT + 6)]
    for packet in packets:
        a.send_inner(packet)
    stats = a.plane.stats()
    assert (stats["held"], stats["trap_queue_full"], stats["acquires"]) == (TRAP_QUEUE_LIMIT, 5, 1)
    install_pairs(a, b)
    a.plane._pump_tun(a.buffers, 1)
    for _ in range(TRAP_QUEUE_LIMIT // 8 + 1):  # a pump takes at most 8 reads
        b.pump_in()
    assert b.delivered() == packets[:TRAP_QUEUE_LIMIT]
    assert a.plane.stats()["held_sent"] == TRAP_QUEUE_LIMIT


def test_acquire_again_after_retry_and_after_rearming(
    sides: tuple[Side, Side], clock: Clock
) -> None:
    a, b = sides
    armed(a)
    a.send_inner(ping(1))
    clock.now += ACQUIRE_RETRY - 0.5
    a.send_inner(ping(2, src="10.1.0.2"))
    assert len(a.plane.poll_events()) == 1
    clock.now += 0.5
    a.send_inner(ping(3, src="10.1.0.3"))
    assert a.plane.poll_events() == [Acquire(1, "10.1.0.3", "10.2.0.1")]
    install_pairs(a, b)
    a.send_inner(ping(4))
    assert a.plane.poll_events() == []
    # the pair goes (idle, dead peer): the trap is armed again at once
    a.plane.delete_child_sas(1, 0x1001, 0x2001)
    clock.now += 0.1
    a.send_inner(ping(5))
    assert a.plane.poll_events() == [Acquire(1, "10.1.0.1", "10.2.0.1")]
    assert a.plane._sad.policies[1].trap is not None
    assert len(a.plane._sad.policies[1].trap.held) == 1
    assert a.plane.stats()["acquires"] == 3


def test_stale_held_packets_are_dropped_not_sent(sides: tuple[Side, Side], clock: Clock) -> None:
    a, b = sides
    armed(a)
    a.send_inner(ping(1))
    clock.now += HOLD_TIMEOUT / 2
    a.send_inner(ping(2))
    clock.now += HOLD_TIMEOUT / 2 + 0.1
    install_pairs(a, b)
    a.plane._pump_tun(a.buffers, 1)
    b.pump_in()
    assert b.delivered() == [ping(2)]
    assert a.plane.stats()["held_expired"] == 1


def test_remove_policy_drops_held_packets(sides: tuple[Side, Side], clock: Clock) -> None:
    a, b = sides
    armed(a)
    for seq in (1, 2):
        a.send_inner(ping(seq))
    a.plane.remove_policy(1)
    assert a.plane.stats()["held_dropped"] == 2 and a.plane._sad.policies == {}
    a.send_inner(ping(3))
    assert a.plane.stats()["no_sa"] == 1 and esp_heads(b) == []


def test_untrapped_policy_and_unmatched_packets_stay_no_sa(
    sides: tuple[Side, Side], clock: Clock
) -> None:
    a, b = sides
    armed(a)
    a.plane.install_child(
        child(a, b, 0x1003, 0x2003, reqid=2, local=(ts(A_NET),), remote=(ts("10.3.0.0/24"),))
    )
    a.plane.delete_child_sas(2, 0x1003, 0x2003)  # reqid 2 is no trap: its policy just drops
    a.send_inner(ping(1, dst="10.9.0.1"))
    a.send_inner(ping(2, dst="10.3.0.1"))
    stats = a.plane.stats()
    assert (stats["no_sa"], stats["held"]) == (2, 0) and a.plane.poll_events() == []
    assert esp_heads(b) == []


def test_existing_policy_traps_once_its_pairs_are_gone(
    sides: tuple[Side, Side], clock: Clock
) -> None:
    a, b = sides
    wire(a, b)  # the child is up, as before ``dpd_action: trap`` arms it
    a.plane.install_trap(trap())
    a.send_inner(ping(1))
    assert esp_heads(b) == [(0x2001, 1)]
    a.plane.delete_child_sas(1, 0x1001, 0x2001)
    a.send_inner(ping(2))
    assert a.plane.poll_events() == [Acquire(1, "10.1.0.1", "10.2.0.1")]
    assert a.plane.stats()["held"] == 1


def test_ipv6_acquire_carries_the_packet_addresses(sides: tuple[Side, Side], clock: Clock) -> None:
    a, _ = sides
    a.plane.install_trap(
        TrapPolicy(
            9,
            "v6",
            "",
            "2001:db8::2",
            (TrafficSelector(ipaddress.ip_network("2001:db8:1::/64")),),
            (TrafficSelector(ipaddress.ip_network("2001:db8:2::/64")),),
        )
    )
    src, dst = ipaddress.ip_address("2001:db8:1::5"), ipaddress.ip_address("2001:db8:2::7")
    header = struct.pack(">IHBB16s16s", 6 << 28, 8, 58, 64, src.packed, dst.packed)
    a.send_inner(header + b"\x80\x00\x00\x00\x00\x01\x00\x01")
    assert a.plane.poll_events() == [Acquire(9, "2001:db8:1::5", "2001:db8:2::7")]


def test_close_forgets_traps_and_held_packets(clock: Clock) -> None:
    a = make_side()
    a.plane._tun_fd = os.dup(a.tun.fileno())  # close() closes the device's fd
    armed(a)
    a.plane.install_trap(trap(reqid=2, remote="10.3.0.0/24"))
    for seq in (1, 2):
        a.send_inner(ping(seq))
    a.plane.close()
    assert a.plane._sad.policies == {} and a.plane._sad.traps == ()
    assert a.plane.stats()["held_dropped"] == 2
    for s in (a.kernel, a.tun, a.encap):
        s.close()


# -- the plane's own threads --------------------------------------------------------------------


@pytest.mark.parametrize("threads", [1, 2])
def test_threads_release_when_the_runtime_installs(threads: int) -> None:
    """The runtime thread installs the pair; the data-plane thread, woken through its pipe,
    sends the held packets without any new traffic."""
    a, b = make_side(), make_side()
    plane: UserspaceDataplane = a.plane
    plane.threads = threads
    plane._wake_in, plane._wake_out = _pipe(), _pipe()
    acquired = threading.Event()
    plane.set_event_callback(acquired.set)
    loop = plane._single_loop if threads == 1 else plane._split_loop_out
    worker = threading.Thread(target=loop, daemon=True)
    worker.start()
    try:
        plane.install_trap(trap())
        packets = [ping(seq) for seq in range(1, 4)]
        for packet in packets:
            a.kernel.send(packet)
        assert acquired.wait(5)
        deadline = time.monotonic() + 5
        while plane.stats()["held"] < 3 and time.monotonic() < deadline:
            time.sleep(0.005)
        install_pairs(a, b)
        b.encap.settimeout(5)
        datagrams = [b.encap.recv(65536) for _ in packets]
        got = [struct.unpack(">II", d[:8]) for d in datagrams]
        b.encap.setblocking(False)
        for datagram in datagrams:  # once more, for B's plane to open
            a.encap.sendto(datagram, ("127.0.0.1", b.port))
        b.pump_in()
        assert got == [(0x2001, 1), (0x2001, 2), (0x2001, 3)]
        assert b.delivered() == packets
    finally:
        plane._running = False
        for _, w in (plane._wake_in, plane._wake_out):
            os.write(w, b"x")
        worker.join(5)
        for fd in (*plane._wake_in, *plane._wake_out):
            os.close(fd)
        for side in (a, b):
            side.plane._running = False
            for s in (side.kernel, side.tun, side.encap):
                s.close()
    assert not worker.is_alive()
