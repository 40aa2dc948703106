# Copyright: ikelab.ipsec developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The first packet through an on-demand tunnel, and how long its answer took (stdlib only).

A tunnel with ``start_action: trap`` negotiates its Child SA when the first packet hits the
trap: that packet (and those behind it) is held or dropped meanwhile. So instead of one probe
at a time, each waiting seconds for its answer, a ``FIRST_SENDERS`` sender sends a probe every
``interval`` seconds from the first one on, until the first answer comes back or ``wait``
seconds have passed, and reports which probe was answered and the time from the first probe
sent to that answer (``FirstPacket.elapsed``): the time to first packet of the tunnel.

- ``icmp``: echo requests with one identifier and rising sequence numbers on one raw socket;
  the first echo reply names the probe it answers;
- ``tcp``: a non-blocking connect per probe (each its own SYN); the first handshake that
  completes or is refused (RST) answers, and every socket is closed with a RST;
- ``udp``: datagrams on one connected socket; a reply or an ICMP port unreachable answers
  (which datagram it answers is not known).
"""

from __future__ import annotations

import errno
import ipaddress
import os
import select
import socket
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass

from ansible_collections.ikelab.ipsec.plugins.module_utils.probes import (
    PAYLOAD,
    FlowError,
    _bind,
    echo_request,
    family,
    parse_icmp,
)

INTERVAL = 0.02  # seconds between probes while no answer came back
_TCP_ANSWERS = {0: "connected", errno.ECONNREFUSED: "refused (RST)"}
ARRIVED = frozenset({"echo reply", "connected", "refused (RST)", "reply", "port unreachable"})


@dataclass(frozen=True, slots=True)
class FirstPacket:
    sent: int  # probes sent until the first answer (or until ``wait`` ran out)
    outcome: str  # what the first answer was ("echo reply", ...), or "timeout"
    elapsed: float | None = None  # seconds from the first probe sent to the first answer
    answered: int | None = None  # which probe (1-based) was answered, when that is known

    @property
    def arrived(self) -> bool:
        return self.outcome in ARRIVED

    def as_dict(self) -> dict[str, object]:
        return {
            "sent": self.sent,
            "outcome": self.outcome,
            "answered": self.answered,
            "elapsed_ms": None if self.elapsed is None else round(self.elapsed * 1000, 1),
        }


FirstSender = Callable[[str, str, int, float, float], FirstPacket]
Clock = Callable[[], float]


class _Schedule:
    """Probe times: now, then every ``interval`` until ``wait`` after the first one."""

    def __init__(self, wait: float, interval: float, clock: Clock) -> None:
        self.clock = clock
        self.interval = interval
        self.start = clock()
        self.deadline = self.start + wait
        self.next = self.start

    def due(self) -> bool:
        now = self.clock()
        if now >= self.next and now < self.deadline:
            self.next = now + self.interval  # late or not: no burst of probes
            return True
        return False

    def over(self) -> bool:
        return self.clock() >= self.deadline

    def pause(self) -> float:
        """Seconds to wait for an answer before the next probe is due."""
        return max(0.0, min(self.next, self.deadline) - self.clock())

    def elapsed(self) -> float:
        return self.clock() - self.start


def first_icmp(
    source: str,
    destination: str,
    port: int,
    wait: float,
    interval: float = INTERVAL,
    clock: Clock = time.monotonic,
) -> FirstPacket:
    v6 = family(destination) == socket.AF_INET6
    proto = socket.IPPROTO_ICMPV6 if v6 else socket.IPPROTO_ICMP
    try:
        sock = socket.socket(family(destination), socket.SOCK_RAW, proto)
    except PermissionError:
        raise FlowError("ICMP probes need raw sockets: run as root (CAP_NET_RAW)")
    _bind(sock, source)
    ident = int.from_bytes(os.urandom(2), "big")
    want = ipaddress.ip_address(destination)
    seq, failed = 0, ""
    try:
        schedule = _Schedule(wait, interval, clock)
        while not schedule.over():
            if schedule.due():
                seq += 1
                try:
                    sock.sendto(echo_request(ident, seq & 0xFFFF, v6), (destination, 0))
                except OSError as e:
                    failed = f"send failed: {e.strerror or e}"
            if not select.select([sock], [], [], schedule.pause())[0]:
                continue
            data, addr = sock.recvfrom(65535)
            parsed = parse_icmp(data, v6)
            if parsed is None or parsed[1] != ident or not 0 < parsed[2] <= seq:
                continue
            kind, _ident, answered = parsed
            if kind == "reply" and ipaddress.ip_address(addr[0].split("%", 1)[0]) != want:
                continue
            outcome = "echo reply" if kind == "reply" else f"{kind} (from {addr[0]})"
            return FirstPacket(seq, outcome, schedule.elapsed(), answered)
    finally:
        sock.close()
    return FirstPacket(seq, failed or "timeout")


def first_tcp(
    source: str,
    destination: str,
    port: int,
    wait: float,
    interval: float = INTERVAL,
    clock: Clock = time.monotonic,
) -> FirstPacket:
    pending: dict[socket.socket, int] = {}
    done: list[socket.socket] = []
    try:
        schedule = _Schedule(wait, interval, clock)
        while not schedule.over():
            if schedule.due():
                sock = socket.socket(family(destination), socket.SOCK_STREAM)
                _bind(sock, source)
                sock.setblocking(False)
                pending[sock] = len(pending) + len(done) + 1
                code = sock.connect_ex((destination, port))
                if code not in (0, errno.EINPROGRESS):
                    pending.pop(sock)
                    done.append(sock)
            if not pending:  # every attempt so far failed at once: wait for the next
                time.sleep(schedule.pause())
                continue
            for sock in select.select([], list(pending), [], schedule.pause())[1]:
                code = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                number = pending.pop(sock)
                done.append(sock)
                outcome = _TCP_ANSWERS.get(code)
                if outcome is not None:  # else an error (unreachable): the next SYN may pass
                    sent = len(pending) + len(done)
                    return FirstPacket(sent, outcome, schedule.elapsed(), number)
        return FirstPacket(len(pending) + len(done), "timeout")
    finally:
        for sock in [*pending, *done]:
            # close with a RST: no TIME_WAIT, no half-open session left at the peer
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            sock.close()


def first_udp(
    source: str,
    destination: str,
    port: int,
    wait: float,
    interval: float = INTERVAL,
    clock: Clock = time.monotonic,
) -> FirstPacket:
    sock = socket.socket(family(destination), socket.SOCK_DGRAM)
    _bind(sock, source)
    sent = 0
    try:
        sock.connect((destination, port))
        sock.setblocking(False)
        schedule = _Schedule(wait, interval, clock)
        while not schedule.over():
            try:
                if schedule.due():
                    sent += 1
                    sock.send(PAYLOAD + str(sent).encode())
                if not select.select([sock], [], [], schedule.pause())[0]:
                    continue
                sock.recv(65535)
            except ConnectionRefusedError:  # an ICMP port unreachable: it crossed both ways
                return FirstPacket(sent, "port unreachable", schedule.elapsed())
            except BlockingIOError:
                continue
            except OSError as e:
                if e.errno in (errno.EHOSTUNREACH, errno.ENETUNREACH):
                    continue  # no route yet: keep trying until the deadline
                raise FlowError(f"udp probe to {destination}:{port} failed: {e.strerror or e}")
            return FirstPacket(sent, "reply", schedule.elapsed())
    finally:
        sock.close()
    return FirstPacket(sent, "timeout")


FIRST_SENDERS: dict[str, FirstSender] = {"icmp": first_icmp, "tcp": first_tcp, "udp": first_udp}
