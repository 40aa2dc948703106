"""The userspace data plane's packet paths without root: the TUN device is replaced by one end
of a UNIX datagram socket pair (same packet boundaries), ESP goes over UDP on 127.0.0.1, and the
tests pump each direction by hand, so every step is deterministic."""

from __future__ import annotations

import errno
import ipaddress
import os
import socket
import struct
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from ikeagent.dataplane.base import (
    ChildSa,
    Dataplane,
    ExpireKind,
    Lifetime,
    SaExpired,
    SaKeys,
    TrafficSelector,
)
from ikeagent.dataplane.userspace import UserspaceDataplane
from ikeagent.dataplane.userspace.plane import _Buffers
from ikeagent.dataplane.userspace.udp import GRO_ANC_SIZE, gro_size, segment_cmsg, send_segmented


def ts(text: str, protocol: int = 0, ports: tuple[int, int] = (0, 65535)) -> TrafficSelector:
    return TrafficSelector(ipaddress.ip_network(text), protocol, *ports)


def ipv4(src: str, dst: str, proto: int = 1, payload: bytes = b"\x08\x00" + bytes(30)) -> bytes:
    total = 20 + len(payload)
    header = struct.pack(
        ">BBHHHBBH4s4s",
        0x45,
        0,
        total,
        1,
        0,
        64,
        proto,
        0,
        ipaddress.ip_address(src).packed,
        ipaddress.ip_address(dst).packed,
    )
    return header + payload


def udp(src: str, dst: str, sport: int, dport: int) -> bytes:
    return ipv4(src, dst, 17, struct.pack(">HHHH", sport, dport, 8, 0))


@dataclass
class Side:
    plane: UserspaceDataplane
    kernel: socket.socket  # the "kernel" end of the fake TUN
    tun: socket.socket
    encap: socket.socket
    port: int
    sunk: list
    buffers: _Buffers

    def send_inner(self, packet: bytes) -> None:
        self.kernel.send(packet)
        assert self.plane._pump_tun(self.buffers, 1) is False

    def pump_in(self) -> None:
        self.plane._pump_sock(self.encap, ("127.0.0.1", self.port), self.sink, self.buffers, 8)

    def sink(self, data: bytes, local: tuple, remote: tuple) -> None:
        self.sunk.append((data, local, remote))

    def delivered(self) -> list[bytes]:
        out = []
        while True:
            try:
                out.append(self.kernel.recv(65536))
            except BlockingIOError:
                return out


def make_side() -> Side:
    plane = UserspaceDataplane(manage_routes=False)
    kernel, tun = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    kernel.setblocking(False)
    tun.setblocking(False)
    plane._tun_fd = tun.fileno()
    plane._running = True
    encap = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    encap.bind(("127.0.0.1", 0))
    port = encap.getsockname()[1]
    side = Side(plane, kernel, tun, encap, port, [], _Buffers())
    plane.attach_encap_socket(encap, ("127.0.0.1", port), side.sink)
    return side


GCM = (20, bytes(range(20)), None, b"")
CBC = (12, bytes(range(16)), 12, bytes(range(32)))


def keys(spi: int, suite: tuple = GCM, esn: bool = False) -> SaKeys:
    encr, key, integ, ikey = suite
    return SaKeys(spi, encr, bytes((b + spi) & 0xFF for b in key), integ, ikey, esn)


def child(
    a: Side,
    b: Side,
    spi_in: int,
    spi_out: int,
    *,
    reqid: int = 1,
    local: tuple = (ts("10.1.0.0/24"),),
    remote: tuple = (ts("10.2.0.0/24"),),
    suite: tuple = GCM,
    lifetime: Lifetime | None = None,
    esn: bool = False,
    window: int = 64,
) -> ChildSa:
    return ChildSa(
        reqid=reqid,
        name="net",
        local_addr="127.0.0.1",
        remote_addr="127.0.0.1",
        inbound=keys(spi_in, suite, esn),
        outbound=keys(spi_out, suite, esn),
        local_ts=local,
        remote_ts=remote,
        encap=(a.port, b.port),
        replay_window=window,
        lifetime=lifetime or Lifetime(),
    )


@pytest.fixture
def pair() -> Iterator[tuple[Side, Side]]:
    a, b = make_side(), make_side()
    yield a, b
    for side in (a, b):
        side.plane._running = False
        for s in (side.kernel, side.tun, side.encap):
            s.close()


def wire(a: Side, b: Side, **kw: object) -> tuple[ChildSa, ChildSa]:
    ca = child(a, b, 0x1001, 0x2001, **kw)
    rev = {**kw}
    if "local" in kw or "remote" in kw:
        rev["local"], rev["remote"] = (
            kw.get("remote", (ts("10.2.0.0/24"),)),
            kw.get("local", (ts("10.1.0.0/24"),)),
        )
    else:
        rev["local"], rev["remote"] = (ts("10.2.0.0/24"),), (ts("10.1.0.0/24"),)
    cb = child(b, a, 0x2001, 0x1001, **rev)
    a.plane.install_child(ca)
    b.plane.install_child(cb)
    return ca, cb


def esp_on_wire(a: Side, b: Side, inner: bytes) -> bytes:
    """Seal ``inner`` at A and capture the datagram B's socket would read."""
    a.send_inner(inner)
    return b.encap.recv(65536)


def test_satisfies_the_protocol() -> None:
    assert isinstance(UserspaceDataplane(), Dataplane)


@pytest.mark.parametrize("suite", [GCM, CBC], ids=["gcm", "cbc"])
@pytest.mark.parametrize("esn", [False, True])
def test_packet_crosses_both_ways_and_counts(
    pair: tuple[Side, Side], suite: tuple, esn: bool
) -> None:
    a, b = pair
    ca, cb = wire(a, b, suite=suite, esn=esn)
    ping = ipv4("10.1.0.1", "10.2.0.1")
    a.send_inner(ping)
    b.pump_in()
    assert b.delivered() == [ping]
    pong = ipv4("10.2.0.1", "10.1.0.1")
    b.send_inner(pong)
    a.pump_in()
    assert a.delivered() == [pong]
    counters = a.plane.counters(1, 0x1001, 0x2001)
    assert (counters.packets_out, counters.bytes_out) == (1, len(ping))
    assert (counters.packets_in, counters.bytes_in) == (1, len(pong))
    assert counters.last_used is not None


def test_wire_format_is_esp_in_udp(pair: tuple[Side, Side]) -> None:
    a, b = pair
    wire(a, b)
    inner = ipv4("10.1.0.1", "10.2.0.1")
    datagram = esp_on_wire(a, b, inner)
    spi, seq = struct.unpack(">II", datagram[:8])
    assert (spi, seq) == (0x2001, 1)
    assert inner not in datagram
    assert len(datagram) == 8 + 8 + len(inner) + 2 + (-(len(inner) + 2)) % 4 + 16


def test_replayed_datagram_is_dropped(pair: tuple[Side, Side]) -> None:
    a, b = pair
    wire(a, b)
    datagram = esp_on_wire(a, b, ipv4("10.1.0.1", "10.2.0.1"))
    for _ in range(2):
        a.encap.sendto(datagram, ("127.0.0.1", b.port))
    b.pump_in()
    assert len(b.delivered()) == 1
    assert b.plane.stats()["replay"] == 1
    assert b.plane.counters(1, 0x2001, 0x1001).replay_drops == 1


def test_tampered_unknown_and_short_datagrams(pair: tuple[Side, Side]) -> None:
    a, b = pair
    wire(a, b)
    datagram = bytearray(esp_on_wire(a, b, ipv4("10.1.0.1", "10.2.0.1")))
    datagram[-1] ^= 1
    a.encap.sendto(bytes(datagram), ("127.0.0.1", b.port))
    a.encap.sendto(b"\x00\x00\x99\x99" + bytes(datagram[4:]), ("127.0.0.1", b.port))
    a.encap.sendto(b"\x12\x34\x56", ("127.0.0.1", b.port))
    short = b"\x00\x00\x20\x01\x00\x00\x00\x05" + bytes(8)  # known SPI, no room for an ICV
    a.encap.sendto(short, ("127.0.0.1", b.port))
    b.pump_in()
    assert b.delivered() == []
    stats = b.plane.stats()
    assert (stats["auth"], stats["unknown_spi"], stats["truncated"]) == (1, 1, 2)
    assert b.plane.counters(1, 0x2001, 0x1001).auth_failures == 1


def test_ike_and_keepalives_on_the_encap_socket(pair: tuple[Side, Side]) -> None:
    a, b = pair
    a.encap.sendto(b"\0\0\0\0IKE-MESSAGE", ("127.0.0.1", b.port))
    a.encap.sendto(b"\xff", ("127.0.0.1", b.port))
    b.pump_in()
    assert b.sunk == [(b"IKE-MESSAGE", ("127.0.0.1", b.port), ("127.0.0.1", a.port))]
    assert b.plane.stats()["keepalive_in"] == 1
    assert b.delivered() == []


def test_outbound_without_matching_policy_is_dropped(pair: tuple[Side, Side]) -> None:
    a, b = pair
    wire(a, b)
    a.send_inner(ipv4("10.1.0.1", "10.9.0.1"))  # destination outside the remote selector
    a.send_inner(ipv4("10.7.0.1", "10.2.0.1"))  # source outside the local selector
    a.send_inner(b"\x00garbage")
    stats = a.plane.stats()
    assert (stats["no_sa"], stats["not_ip"], stats["esp_out"]) == (2, 1, 0)


def test_inbound_selector_violation_is_dropped(pair: tuple[Side, Side]) -> None:
    """B's peer A may only send from 10.1.0.0/24: a packet A's policy lets out from a wider
    selector than B agreed to is dropped after decryption."""
    a, b = pair
    a.plane.install_child(
        child(a, b, 0x1001, 0x2001, local=(ts("10.0.0.0/8"),), remote=(ts("10.2.0.0/24"),))
    )
    b.plane.install_child(
        child(b, a, 0x2001, 0x1001, local=(ts("10.2.0.0/24"),), remote=(ts("10.1.0.0/24"),))
    )
    a.send_inner(ipv4("10.5.0.1", "10.2.0.1"))
    a.send_inner(ipv4("10.1.0.7", "10.2.0.1"))
    b.pump_in()
    assert b.delivered() == [ipv4("10.1.0.7", "10.2.0.1")]
    assert b.plane.stats()["selector"] == 1


def test_port_selectors_narrow_the_policy(pair: tuple[Side, Side]) -> None:
    a, b = pair
    narrow = dict(local=(ts("10.1.0.0/24", 17),), remote=(ts("10.2.0.0/24", 17, (53, 53)),))
    wire(a, b, **narrow)
    a.send_inner(udp("10.1.0.1", "10.2.0.1", 4000, 53))
    a.send_inner(udp("10.1.0.1", "10.2.0.1", 4000, 54))
    a.send_inner(ipv4("10.1.0.1", "10.2.0.1"))  # ICMP
    b.pump_in()
    assert b.delivered() == [udp("10.1.0.1", "10.2.0.1", 4000, 53)]
    assert a.plane.stats()["no_sa"] == 2


def test_make_before_break(pair: tuple[Side, Side]) -> None:
    a, b = pair
    wire(a, b)
    old_datagram = esp_on_wire(a, b, ipv4("10.1.0.1", "10.2.0.1"))
    # rekey: a second pair under the same reqid, installed on both sides
    a.plane.install_child(child(a, b, 0x1002, 0x2002))
    b.plane.install_child(
        child(b, a, 0x2002, 0x1002, local=(ts("10.2.0.0/24"),), remote=(ts("10.1.0.0/24"),))
    )
    new_datagram = esp_on_wire(a, b, ipv4("10.1.0.1", "10.2.0.1"))
    assert struct.unpack(">I", new_datagram[:4])[0] == 0x2002  # newest outbound SA
    for d in (old_datagram, new_datagram):  # both inbound SAs still accepted
        a.encap.sendto(d, ("127.0.0.1", b.port))
    b.pump_in()
    assert len(b.delivered()) == 2
    b.plane.delete_child_sas(1, 0x2001, 0x1001)
    a.encap.sendto(old_datagram, ("127.0.0.1", b.port))
    b.pump_in()
    assert b.delivered() == [] and b.plane.stats()["unknown_spi"] == 1
    with pytest.raises(KeyError):
        b.plane.counters(1, 0x2001, 0x1001)
    assert b.plane.counters(1, 0x2002, 0x1002).packets_in == 1
    # deleting the newest pair leaves the policy without an outbound SA
    a.plane.delete_child_sas(1, 0x1002, 0x2002)
    a.plane.delete_child_sas(1, 0x1001, 0x2001)
    a.send_inner(ipv4("10.1.0.1", "10.2.0.1"))
    assert a.plane.stats()["no_sa"] == 1


def test_remove_policy_drops_everything(pair: tuple[Side, Side]) -> None:
    a, b = pair
    wire(a, b)
    b.plane.remove_policy(1)
    a.send_inner(ipv4("10.1.0.1", "10.2.0.1"))
    b.pump_in()
    assert b.delivered() == [] and b.plane.stats()["unknown_spi"] == 1
    with pytest.raises(KeyError):
        b.plane.counters(1, 0x2001, 0x1001)


def test_lifetimes_raise_events_once_and_hard_stops(pair: tuple[Side, Side]) -> None:
    a, b = pair
    woken = []
    a.plane.set_event_callback(lambda: woken.append(1))
    wire(a, b, lifetime=Lifetime(soft_packets=2, hard_packets=4))
    for _ in range(6):
        a.send_inner(ipv4("10.1.0.1", "10.2.0.1"))
    events = a.plane.poll_events()
    assert events == [
        SaExpired(1, 0x2001, ExpireKind.SOFT),
        SaExpired(1, 0x2001, ExpireKind.HARD),
    ]
    assert a.plane.poll_events() == [] and len(woken) == 2
    assert a.plane.stats()["esp_out"] == 4 and a.plane.stats()["expired"] == 2
    b.pump_in()
    assert b.plane.poll_events() == [
        SaExpired(1, 0x2001, ExpireKind.SOFT),
        SaExpired(1, 0x2001, ExpireKind.HARD),
    ]


def test_byte_lifetime(pair: tuple[Side, Side]) -> None:
    a, b = pair
    wire(a, b, lifetime=Lifetime(soft_bytes=100, hard_bytes=10_000))
    packet = ipv4("10.1.0.1", "10.2.0.1")  # 52 bytes
    a.send_inner(packet)
    assert a.plane.poll_events() == []
    a.send_inner(packet)
    assert a.plane.poll_events() == [SaExpired(1, 0x2001, ExpireKind.SOFT)]


def test_sequence_number_never_wraps(pair: tuple[Side, Side]) -> None:
    a, b = pair
    wire(a, b)
    sa = a.plane._sad.policies[1].out
    sa.seq = sa.seq_max - 1
    a.send_inner(ipv4("10.1.0.1", "10.2.0.1"))  # uses seq_max, the last number
    a.send_inner(ipv4("10.1.0.1", "10.2.0.1"))
    assert struct.unpack(">II", b.encap.recv(100)[:8]) == (0x2001, 0xFFFFFFFF)
    assert a.plane.stats()["seq_overflow"] == 1
    assert a.plane.poll_events() == [SaExpired(1, 0x2001, ExpireKind.HARD)]


def test_duplicate_inbound_spi_is_refused(pair: tuple[Side, Side]) -> None:
    a, b = pair
    wire(a, b)
    with pytest.raises(ValueError):
        a.plane.install_child(child(a, b, 0x1001, 0x2009, reqid=2))


def test_no_encap_socket_counts_no_socket() -> None:
    plane = UserspaceDataplane(manage_routes=False)
    kernel, tun = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    tun.setblocking(False)
    plane._tun_fd, plane._running = tun.fileno(), True
    fake = Side(plane, kernel, tun, socket.socket(), 1, [], _Buffers())
    fake.port = 9
    plane.install_child(child(fake, fake, 1, 2))
    fake.send_inner(ipv4("10.1.0.1", "10.2.0.1"))
    assert plane.stats()["no_socket"] == 1
    for s in (kernel, tun, fake.encap):
        s.close()


def test_pumps_report_dry_sources(pair: tuple[Side, Side]) -> None:
    a, _ = pair
    assert a.plane._pump_tun(a.buffers, 4) is True
    assert a.plane._pump_sock(a.encap, ("127.0.0.1", a.port), a.sink, a.buffers, 4) is True
    assert os.get_blocking(a.encap.fileno()) is False


# -- batching: UDP_SEGMENT on send, UDP_GRO on receive --------------------------------------


def raw_datagrams(sock: socket.socket) -> list[bytes]:
    """Every datagram waiting on ``sock`` (a GRO-enabled socket), coalesced reads split."""
    out = []
    while True:
        try:
            n, anc, _, _ = sock.recvmsg_into([buf := bytearray(65536)], GRO_ANC_SIZE)
        except BlockingIOError:
            return out
        size = gro_size(anc) or n
        out.extend(bytes(buf[off : min(off + size, n)]) for off in range(0, n, size))


def test_burst_leaves_in_one_segmented_send_and_arrives_in_order(
    pair: tuple[Side, Side],
) -> None:
    a, b = pair
    wire(a, b)
    big = [ipv4("10.1.0.1", "10.2.0.1", payload=bytes([i]) * 1000) for i in range(10)]
    small = [ipv4("10.1.0.1", "10.2.0.1", payload=b"s" * 100)]
    tail = [ipv4("10.1.0.1", "10.2.0.1", payload=bytes([50 + i]) * 1000) for i in range(3)]
    packets = big + small + tail
    for p in packets:
        a.kernel.send(p)
    assert a.plane._pump_tun(a.buffers, 64) is True
    # the ten equal packets plus the shorter one close one segmented send: the receiving
    # socket (UDP_GRO on) gets them in one read of 11 segments
    n, anc, _, _ = b.encap.recvmsg_into([first := bytearray(65536)], GRO_ANC_SIZE)
    size = gro_size(anc)
    assert size == 8 + 8 + 1020 + 2 + 2 + 16
    assert n == 10 * size + 8 + 8 + 120 + 2 + 2 + 16
    rest = raw_datagrams(b.encap)
    assert len(rest) == 3
    datagrams = [bytes(first[off : min(off + size, n)]) for off in range(0, n, size)] + rest
    assert [struct.unpack(">II", d[:8]) for d in datagrams] == [(0x2001, s) for s in range(1, 15)]
    for d in datagrams:
        a.encap.sendto(d, ("127.0.0.1", b.port))
    b.pump_in()
    b.pump_in()
    assert b.delivered() == packets
    assert a.plane.stats()["esp_out"] == 14 and b.plane.stats()["esp_in"] == 14
    sent = a.plane.counters(1, 0x1001, 0x2001)
    assert (sent.packets_out, sent.bytes_out) == (14, sum(map(len, packets)))
    got = b.plane.counters(1, 0x2001, 0x1001)
    assert (got.packets_in, got.bytes_in) == (14, sum(map(len, packets)))


def test_coalesced_read_is_split_and_each_datagram_checked(pair: tuple[Side, Side]) -> None:
    a, b = pair
    wire(a, b)
    packets = [ipv4("10.1.0.1", "10.2.0.1", payload=bytes([i]) * 500) for i in range(6)]
    for p in packets:
        a.kernel.send(p)
    a.plane._pump_tun(a.buffers, 64)
    datagrams = raw_datagrams(b.encap)
    assert len(datagrams) == 6
    # resend them as one segmented send with a replay and a forgery inside the batch
    forged = bytearray(datagrams[3])
    forged[-1] ^= 1
    batch = datagrams[:3] + [datagrams[1], bytes(forged)] + datagrams[4:]
    a.encap.sendmsg([b"".join(batch)], segment_cmsg(len(datagrams[0])), 0, ("127.0.0.1", b.port))
    b.pump_in()
    assert b.delivered() == packets[:3] + packets[4:]
    stats = b.plane.stats()
    assert (stats["esp_in"], stats["replay"], stats["auth"]) == (5, 1, 1)


def test_batches_never_mix_sas(pair: tuple[Side, Side]) -> None:
    a, b = pair
    wire(a, b)
    a.plane.install_child(
        child(
            a, b, 0x1003, 0x2003, reqid=2, local=(ts("10.1.0.0/24"),), remote=(ts("10.3.0.0/24"),)
        )
    )
    for i in range(6):
        a.kernel.send(ipv4("10.1.0.1", "10.2.0.1" if i % 3 else "10.3.0.1", payload=bytes(64)))
    a.plane._pump_tun(a.buffers, 64)
    heads = [struct.unpack(">II", d[:8]) for d in raw_datagrams(b.encap)]
    assert heads == [(0x2003, 1), (0x2001, 1), (0x2001, 2), (0x2003, 2), (0x2001, 3), (0x2001, 4)]


class _NoGsoSocket:
    """A socket whose kernel refuses segmented sends."""

    def __init__(self) -> None:
        self.sent: list[bytes] = []

    def sendmsg(self, *args: object) -> int:
        raise OSError(errno.EIO, "no GSO")

    def sendto(self, data: memoryview, remote: tuple) -> int:
        self.sent.append(bytes(data))
        return len(data)


def test_refused_segmentation_falls_back_to_single_sends() -> None:
    sock = _NoGsoSocket()
    data = memoryview(b"a" * 100 + b"b" * 100 + b"c" * 30)
    sent, gso = send_segmented(sock, data, 100, ("127.0.0.1", 4500), True)  # type: ignore[arg-type]
    assert (sent, gso) == (3, False)
    assert sock.sent == [b"a" * 100, b"b" * 100, b"c" * 30]


# -- coalescing TCP segments into one GSO write (IFF_VNET_HDR) --------------------------------


def tcp(seq: int, data: bytes, flags: int = 0x10, dst: str = "10.1.0.1") -> bytes:
    header = struct.pack(">HHIIBBHHH", 5201, 40000, seq, 7, 5 << 4, flags, 512, 0xBEEF, 0)
    return ipv4("10.2.0.1", dst, 6, header + data)


def checksum(data: bytes) -> int:
    """RFC 1071 Internet checksum, word by word."""
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f">{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def vnet_side(pair: tuple[Side, Side]) -> tuple[Side, Side]:
    a, b = pair
    wire(a, b)
    a.plane._vnet = True  # A's fake TUN now carries virtio_net_hdr
    return a, b


def deliver(b: Side, a: Side, packets: list[bytes]) -> list[bytes]:
    for p in packets:
        b.kernel.send(p)
    b.plane._pump_tun(b.buffers, 64)
    a.pump_in()
    return a.delivered()


def test_tcp_segments_merge_into_one_gso_write(pair: tuple[Side, Side]) -> None:
    a, b = vnet_side(pair)
    data = [bytes([i]) * 1000 for i in range(4)] + [b"z" * 300]
    segments = [tcp(1000 + 1000 * i, d) for i, d in enumerate(data)]
    segments[-1] = tcp(5000, data[-1], flags=0x18)  # ACK+PSH ends the run
    writes = deliver(b, a, segments)
    assert len(writes) == 1
    flags, gso_type, hdr_len, gso_size, csum_start, csum_offset = struct.unpack(
        "=BBHHHH", writes[0][:10]
    )
    assert (flags, gso_type, hdr_len, gso_size, csum_start, csum_offset) == (1, 1, 40, 1000, 20, 16)
    merged = writes[0][10:]
    assert len(merged) == 40 + 4300
    assert struct.unpack(">H", merged[2:4])[0] == len(merged)
    assert checksum(merged[:20]) == 0  # the IP header checksum verifies
    assert merged[40:] == b"".join(data)
    assert struct.unpack(">I", merged[24:28])[0] == 1000 and merged[33] == 0x18
    # finishing the partial checksum as the kernel will gives the merged segment's checksum
    pseudo = merged[12:20] + struct.pack(">BBH", 0, 6, len(merged) - 20)
    tcp_part = bytearray(merged[20:])
    partial = struct.unpack(">H", tcp_part[16:18])[0]
    tcp_part[16:18] = b"\0\0"
    expected = checksum(pseudo + bytes(tcp_part))
    tcp_part[16:18] = struct.pack(">H", partial)
    assert checksum(bytes(tcp_part)) == expected
    assert a.plane.stats()["esp_in"] == 5
    assert a.plane.counters(1, 0x1001, 0x2001).packets_in == 5


def test_unmergeable_packets_keep_their_order(pair: tuple[Side, Side]) -> None:
    a, b = vnet_side(pair)
    ping = ipv4("10.2.0.1", "10.1.0.1")
    packets = [
        tcp(1, b"a" * 100),
        tcp(101, b"b" * 100),
        ping,
        tcp(201, b"c" * 100),
        tcp(999, b"d" * 100),  # not the next sequence number
        tcp(1099, b"e" * 100, flags=0x11),  # FIN: never merged
    ]
    writes = deliver(b, a, packets)
    headers = [w[:10] for w in writes]
    bodies = [w[10:] for w in writes]
    assert len(writes) == 5
    assert bodies[0][40:] == b"a" * 100 + b"b" * 100 and headers[0][1] == 1
    assert bodies[1:] == [ping, packets[3], packets[4], packets[5]]
    assert headers[1:] == [bytes(10)] * 4
    assert a.plane.stats()["esp_in"] == 6


def test_coalesced_write_failure_counts_every_segment(pair: tuple[Side, Side]) -> None:
    a, b = vnet_side(pair)
    for p in [tcp(1 + 100 * i, b"x" * 100) for i in range(3)]:
        b.kernel.send(p)
    b.plane._pump_tun(b.buffers, 64)
    a.kernel.close()  # the fake TUN's peer is gone: every write fails
    a.pump_in()
    stats = a.plane.stats()
    assert (stats["esp_in"], stats["tun_write"]) == (0, 3)
    a.kernel = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)  # for the fixture's close


def test_virtio_header_is_stripped_from_packets_read(pair: tuple[Side, Side]) -> None:
    a, b = vnet_side(pair)
    ping = ipv4("10.1.0.1", "10.2.0.1")
    a.kernel.send(bytes([2]) + bytes(9) + ping)  # DATA_VALID, no GSO
    assert a.plane._pump_tun(a.buffers, 4) is True
    b.pump_in()
    assert b.delivered() == [ping]


def test_esp_behind_an_ike_message_waits_for_the_sa_it_brings(pair: tuple[Side, Side]) -> None:
    """The peer answers (IKE_AUTH, CREATE_CHILD_SA) and then sends on the new pair: both come
    in that order on the encap socket, and the ESP must not overtake the IKE message that
    installs its SA (the sink hands IKE to another thread and returns an event set once it
    was handled, SAs included)."""
    a, b = pair
    a.plane.install_child(child(a, b, 0x1001, 0x2001))  # A has the pair, B not yet
    ike = b"\0\0\0\0" + b"IKE answer"
    esp = esp_on_wire(a, b, ipv4("10.1.0.1", "10.2.0.1"))

    def handled_later(data: bytes, local: tuple, remote: tuple) -> threading.Event:
        b.sunk.append((data, local, remote))
        done = threading.Event()

        def engine() -> None:  # the runtime's loop: installs what the message brought
            time.sleep(0.01)
            b.plane.install_child(
                child(b, a, 0x2001, 0x1001, local=(ts("10.2.0.0/24"),), remote=(ts("10.1.0.0/24"),))
            )
            done.set()

        threading.Thread(target=engine).start()
        return done

    b.sink = handled_later  # type: ignore[method-assign]
    for d in (ike, esp):
        a.encap.sendto(d, ("127.0.0.1", b.port))
    time.sleep(0.05)  # both queued on B's socket before it reads
    b.pump_in()
    assert [s[0] for s in b.sunk] == [b"IKE answer"]
    assert len(b.delivered()) == 1
    stats = b.plane.stats()
    assert (stats["unknown_spi"], stats["waited_for_ike"]) == (0, 1)
    # an SPI no IKE message brings waits at most IKE_ORDER_WAIT, once, and is dropped
    b.sink = lambda data, local, remote: threading.Event()  # type: ignore[method-assign]
    stranger = struct.pack(">I", 0x7777) + esp[4:]
    for d in (ike, stranger):
        a.encap.sendto(d, ("127.0.0.1", b.port))
    time.sleep(0.05)
    started = time.monotonic()
    b.pump_in()
    assert time.monotonic() - started < 0.5
    assert b.plane.stats()["unknown_spi"] == 1
