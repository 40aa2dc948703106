# Copyright: ikelab.ipsec developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Probes for ``flow_check``: interesting traffic and what came back (standard library only).

Each sender takes (source, destination, port, count, wait) and returns a ``ProbeResult``:

- ``icmp``: raw ICMP (ICMPv6) echo requests built here (needs CAP_NET_RAW); an echo reply with
  our identifier and sequence number counts as arrived;
- ``tcp``: a connect; the handshake completing or a RST (connection refused) counts as arrived;
- ``udp``: a datagram on a connected socket; a reply or an ICMP port unreachable (connection
  refused on the next receive) counts as arrived.
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

ICMPV6 = 58
PAYLOAD = b"ikelab.ipsec flow_check "


class FlowError(Exception):
    """The flow could not be checked, or it failed; the message says which and why."""


@dataclass(frozen=True, slots=True)
class ProbeResult:
    sent: int
    received: int
    outcomes: tuple[str, ...] = ()

    @property
    def arrived(self) -> bool:
        return self.received > 0


Sender = Callable[[str, str, int, int, float], ProbeResult]


# --- ICMP ---------------------------------------------------------------------------------------


def checksum(data: bytes) -> int:
    """The Internet checksum (RFC 1071, section 4.1)."""
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def echo_request(ident: int, seq: int, v6: bool, payload: bytes = PAYLOAD) -> bytes:
    """An ICMP echo request (type 8, RFC 792) or ICMPv6 echo request (type 128, RFC 4443;
    the kernel fills in the ICMPv6 checksum, which covers a pseudo-header)."""
    kind = 128 if v6 else 8
    header = struct.pack("!BBHHH", kind, 0, 0, ident, seq)
    if v6:
        return header + payload
    return struct.pack("!BBHHH", kind, 0, checksum(header + payload), ident, seq) + payload


def parse_icmp(data: bytes, v6: bool) -> tuple[str, int, int] | None:
    """What an ICMP message received on a raw socket says about our echo requests:
    ``("reply", ident, seq)``, ``("unreachable", ident, seq)``, ``("expired", ident, seq)``,
    or None for anything else. IPv4 raw sockets deliver the IP header first; IPv6 ones do not."""
    if not v6:
        if len(data) < 20 or data[0] >> 4 != 4:
            return None
        data = data[(data[0] & 0x0F) * 4 :]
    if len(data) < 8:
        return None
    kind = data[0]
    reply, unreachable, expired = (129, 1, 3) if v6 else (0, 3, 11)
    if kind == reply:
        ident, seq = struct.unpack("!HH", data[4:8])
        return "reply", ident, seq
    if kind in (unreachable, expired):
        inner = data[8:]
        if v6:
            if len(inner) < 48 or inner[6] != ICMPV6:
                return None
            quoted = inner[40:]
        else:
            if len(inner) < 28 or inner[9] != 1:
                return None
            quoted = inner[(inner[0] & 0x0F) * 4 :]
        if len(quoted) < 8 or quoted[0] != (128 if v6 else 8):
            return None
        ident, seq = struct.unpack("!HH", quoted[4:8])
        return ("unreachable" if kind == unreachable else "expired"), ident, seq
    return None


def family(address: str) -> int:
    return socket.AF_INET6 if ipaddress.ip_address(address).version == 6 else socket.AF_INET


def _bind(sock: socket.socket, source: str) -> None:
    try:
        sock.bind((source, 0))
    except OSError as e:
        sock.close()
        if e.errno == errno.EADDRNOTAVAIL:
            raise FlowError(f"source {source} is not an address of this host")
        raise FlowError(f"cannot bind to {source}: {e.strerror or e}")


def send_icmp(source: str, destination: str, port: int, count: int, wait: float) -> ProbeResult:
    v6 = family(destination) == socket.AF_INET6
    proto = socket.IPPROTO_ICMPV6 if v6 else socket.IPPROTO_ICMP
    try:
        sock = socket.socket(family(destination), socket.SOCK_RAW, proto)
    except PermissionError:
        raise FlowError("ICMP probes need raw sockets: run as root (CAP_NET_RAW)")
    _bind(sock, source)
    ident = int.from_bytes(os.urandom(2), "big")
    received, outcomes = 0, []
    try:
        for seq in range(1, count + 1):
            try:
                sock.sendto(echo_request(ident, seq, v6), (destination, 0))
            except OSError as e:
                outcomes.append(f"send failed: {e.strerror or e}")
                continue
            outcome = _await_echo(sock, ident, seq, v6, destination, wait)
            received += outcome == "echo reply"
            outcomes.append(outcome)
    finally:
        sock.close()
    return ProbeResult(count, received, tuple(outcomes))


def _await_echo(
    sock: socket.socket, ident: int, seq: int, v6: bool, destination: str, wait: float
) -> str:
    deadline = time.monotonic() + wait
    want = ipaddress.ip_address(destination)
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return "timeout"
        readable = select.select([sock], [], [], left)[0]
        if not readable:
            return "timeout"
        data, addr = sock.recvfrom(65535)
        parsed = parse_icmp(data, v6)
        if parsed is None or parsed[1:] != (ident, seq):
            continue
        kind = parsed[0]
        if kind == "reply" and ipaddress.ip_address(addr[0].split("%", maxsplit=1)[0]) == want:
            return "echo reply"
        if kind != "reply":
            return f"{kind} (from {addr[0]})"


# --- TCP and UDP ----------------------------------------------------------------------------------


def send_tcp(source: str, destination: str, port: int, count: int, wait: float) -> ProbeResult:
    received, outcomes = 0, []
    for _attempt in range(count):
        sock = socket.socket(family(destination), socket.SOCK_STREAM)
        _bind(sock, source)
        sock.settimeout(wait)
        try:
            sock.connect((destination, port))
        except ConnectionRefusedError:
            outcome = "refused (RST)"
        except TimeoutError:
            outcome = "timeout"
        except OSError as e:
            outcome = f"error: {e.strerror or e}"
        else:
            outcome = "connected"
            # close with a RST: no TIME_WAIT, no half-open session left at the peer
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        finally:
            sock.close()
        received += outcome in ("connected", "refused (RST)")
        outcomes.append(outcome)
    return ProbeResult(count, received, tuple(outcomes))


def send_udp(source: str, destination: str, port: int, count: int, wait: float) -> ProbeResult:
    received, outcomes = 0, []
    for seq in range(1, count + 1):
        sock = socket.socket(family(destination), socket.SOCK_DGRAM)
        _bind(sock, source)
        sock.settimeout(wait)
        try:
            sock.connect((destination, port))
            sock.send(PAYLOAD + str(seq).encode())
            sock.recv(65535)
        except ConnectionRefusedError:
            outcome = "port unreachable"
        except TimeoutError:
            outcome = "timeout"
        except OSError as e:
            outcome = f"error: {e.strerror or e}"
        else:
            outcome = "reply"
        finally:
            sock.close()
        received += outcome in ("reply", "port unreachable")
        outcomes.append(outcome)
    return ProbeResult(count, received, tuple(outcomes))


SENDERS: dict[str, Sender] = {"icmp": send_icmp, "tcp": send_tcp, "udp": send_udp}


def route_source(destination: str) -> str:
    """The address the kernel would send from to reach ``destination``."""
    sock = socket.socket(family(destination), socket.SOCK_DGRAM)
    try:
        sock.connect((destination, 9))
        return str(sock.getsockname()[0]).split("%", maxsplit=1)[0]
    except OSError as e:
        raise FlowError(f"no route to {destination}: {e.strerror or e}")
    finally:
        sock.close()
