"""UDP sockets for IKE (port 500) and NAT-T (port 4500) with the local address of every
datagram (IP_PKTINFO / IPV6_RECVPKTINFO) and source-address selection on send.

On the NAT-T port IKE messages carry a 4-byte zero non-ESP marker (RFC 3948 section 2.2) and
a lone 0xff byte is a NAT-keepalive (RFC 3948 section 2.3); everything else is ESP.
"""

from __future__ import annotations

import functools
import ipaddress
import socket
import struct
from dataclasses import dataclass

IP_PKTINFO = getattr(socket, "IP_PKTINFO", 8)  # Linux value; Python lacks the constant
IPV6_RECVPKTINFO = getattr(socket, "IPV6_RECVPKTINFO", 49)
IPV6_PKTINFO = getattr(socket, "IPV6_PKTINFO", 50)
NON_ESP_MARKER = b"\x00\x00\x00\x00"
NAT_KEEPALIVE = b"\xff"
_ANC_SIZE = socket.CMSG_SPACE(20) * 2
MAX_DATAGRAM = 65535


class Kind:
    IKE = "ike"
    ESP = "esp"
    KEEPALIVE = "keepalive"


def classify_natt(data: bytes) -> tuple[str, bytes]:
    """Split what arrived on the NAT-T port into (kind, payload): IKE with the marker
    stripped, ESP as it is, or a keepalive."""
    if data == NAT_KEEPALIVE:
        return Kind.KEEPALIVE, b""
    if data[:4] == NON_ESP_MARKER:
        return Kind.IKE, data[4:]
    return Kind.ESP, data


@functools.lru_cache(maxsize=4096)
def _ip(addr: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    """Parsed addresses, cached: the same few peers are sent to over and over."""
    return ipaddress.ip_address(addr)


@functools.lru_cache(maxsize=4096)
def _source(family: socket.AddressFamily, local_ip: str) -> tuple[tuple[int, int, bytes], ...]:
    """The ancillary data choosing ``local_ip`` as the source address (none for ``::`` or
    ``0.0.0.0``), cached: built once per local address."""
    if _ip(local_ip).is_unspecified:
        return ()
    packed = socket.inet_pton(family, local_ip)
    if family == socket.AF_INET6:
        return ((socket.IPPROTO_IPV6, IPV6_PKTINFO, struct.pack("=16sI", packed, 0)),)
    return ((socket.IPPROTO_IP, IP_PKTINFO, struct.pack("=I4s4s", 0, packed, b"\x00" * 4)),)


def family_of(addr: str) -> socket.AddressFamily:
    return socket.AF_INET6 if _ip(addr).version == 6 else socket.AF_INET


@dataclass(slots=True)
class UdpSocket:
    """One bound UDP socket of the agent."""

    sock: socket.socket
    addr: str  # bound address ("0.0.0.0", "::" or a specific one)
    port: int
    natt: bool  # the NAT-T port (non-ESP marker framing)
    read_by_dataplane: bool = False

    @property
    def family(self) -> socket.AddressFamily:
        return self.sock.family

    @property
    def wildcard(self) -> bool:
        return _ip(self.addr).is_unspecified

    @classmethod
    def open(cls, addr: str, port: int, natt: bool) -> UdpSocket:
        family = family_of(addr)
        sock = socket.socket(family, socket.SOCK_DGRAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
                sock.setsockopt(socket.IPPROTO_IPV6, IPV6_RECVPKTINFO, 1)
            else:
                sock.setsockopt(socket.IPPROTO_IP, IP_PKTINFO, 1)
            sock.bind((addr, port))
            sock.setblocking(False)
        except OSError:
            sock.close()
            raise
        return cls(sock, addr, sock.getsockname()[1], natt)

    def receive(self) -> tuple[bytes, str, tuple[str, int]]:
        """One datagram: (data, local ip, remote endpoint). Raises BlockingIOError when empty."""
        data, ancillary, _flags, src = self.sock.recvmsg(MAX_DATAGRAM, _ANC_SIZE)
        local = self.addr
        for level, kind, cdata in ancillary:
            if level == socket.IPPROTO_IP and kind == IP_PKTINFO and len(cdata) >= 12:
                # struct in_pktinfo { int ipi_ifindex; in_addr ipi_spec_dst; in_addr ipi_addr; }
                local = socket.inet_ntop(socket.AF_INET, cdata[8:12])
            elif level == socket.IPPROTO_IPV6 and kind == IPV6_PKTINFO and len(cdata) >= 16:
                # struct in6_pktinfo { in6_addr ipi6_addr; unsigned int ipi6_ifindex; }
                local = socket.inet_ntop(socket.AF_INET6, cdata[:16])
        return data, local, (src[0], src[1])

    def send(self, data: bytes, local_ip: str | None, remote: tuple[str, int]) -> None:
        """Send ``data`` (framing already applied), from ``local_ip`` when the socket is bound
        to the wildcard address."""
        if local_ip and self.wildcard:
            self.sock.sendmsg([data], _source(self.family, local_ip), 0, remote)
        else:
            self.sock.sendto(data, remote)

    def serves(self, local_ip: str | None, family: socket.AddressFamily) -> bool:
        """Whether this socket can send from ``local_ip`` (None: any source) to ``family``."""
        if family != self.family:
            return False
        if local_ip is None or _ip(local_ip).is_unspecified:
            return True
        return self.wildcard or _ip(local_ip) == _ip(self.addr)

    def close(self) -> None:
        self.sock.close()
