"""Coalescing decrypted TCP segments into one write to the TUN device (a userspace GRO).

With ``IFF_VNET_HDR`` every packet written to the TUN device starts with a ``virtio_net_hdr``.
A run of in-order IPv4 TCP segments of one flow (same addresses, ports, ack, window and
options; ACK or ACK+PSH only; equal payload sizes but the last) is written as one large packet
whose header asks the kernel for TCP segmentation (``VIRTIO_NET_HDR_GSO_TCPV4``, gso_size =
the segments' payload size) and for the TCP checksum (``VIRTIO_NET_HDR_F_NEEDS_CSUM``): the
kernel forwards it as one GSO packet and re-segments it only where a device needs that, as if
its own GRO had merged the segments. Everything else is written alone with an all-zero header.

The segments were authenticated by ESP; their TCP checksums are not verified again here (the
kernel computes the merged packet's checksum from the data).
"""

from __future__ import annotations

import os
import struct

VNET_HDR_LEN = 10  # struct virtio_net_hdr (no mergeable buffers)
VIRTIO_NET_HDR_F_NEEDS_CSUM = 1
VIRTIO_NET_HDR_GSO_TCPV4 = 1
PLAIN_HDR = bytes(VNET_HDR_LEN)
MAX_SEGMENTS = 64
MAX_PAYLOAD = 60000  # the merged IPv4 packet stays below 65535 bytes
_VNET = struct.Struct("=BBHHHH")  # flags, gso_type, hdr_len, gso_size, csum_start, csum_offset
_U16 = struct.Struct(">H")
# IPv4 header without options, then TCP: version/IHL, TOS, total length, (identification),
# fragment field, TTL, protocol, (checksum), addresses and ports, seq, ack, offset, flags, window
_HEAD = struct.Struct(">BBH2xHBB2x12sIIBBH")
_ZERO2 = bytes(2)
TCP_ACK = 0x10
TCP_PSH = 0x08


def _fold(total: int) -> int:
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return total


def ipv4_header_checksum(header: bytes | bytearray | memoryview) -> int:
    """RFC 791 header checksum of ``header`` (its checksum field must be zero): the ones'
    complement sum of 16-bit words is the value modulo 0xFFFF (2**16 = 1 there)."""
    return ~(int.from_bytes(header, "big") % 0xFFFF or 0xFFFF) & 0xFFFF


class Coalescer:
    """Pending TCP segments of one flow in ``buf[0:end]`` (the first one's headers, then the
    payloads of all), written to ``fd`` by ``flush``."""

    __slots__ = ("fd", "buf", "mv", "key", "end", "hlen", "mss", "count", "next_seq", "sa")

    def __init__(self, fd: int, size: int = 65536 + 4096) -> None:
        self.fd = fd
        self.buf = bytearray(size)
        self.mv = memoryview(self.buf)
        self.key: tuple = ()
        self.end = self.hlen = self.mss = self.count = self.next_seq = 0
        self.sa = None

    def add(self, sa: object, buf: bytearray, mv: memoryview, start: int, length: int) -> int:
        """Take the decrypted packet ``buf[start:start+length]`` (``mv`` views ``buf``) of ``sa``.

        Returns 0 when the packet was queued (it is written by a later ``flush``), or -1 when
        it cannot be merged (not a plain in-order IPv4 TCP data segment): the caller flushes and
        writes it alone. A packet of another flow flushes what is pending first; the number of
        pending packets a failed write lost is returned as a positive number then.
        """
        if length < 40:
            return -1
        (verihl, tos, total, frag, ttl, proto, ends, seq, ack, doff, flags, win) = (
            _HEAD.unpack_from(buf, start)
        )
        hlen = 20 + (doff >> 4) * 4
        if (
            verihl != 0x45
            or proto != 6
            or frag & 0xBFFF  # fragments (DF alone is fine)
            or (flags & ~TCP_PSH) != TCP_ACK
            or total != length
            or hlen < 40
            or length <= hlen
        ):
            return -1
        payload = length - hlen
        options = mv[start + 40 : start + hlen].tobytes() if hlen > 40 else b""
        key = (tos, frag, ttl, ends, ack, doff, win, options)
        lost = 0
        if self.count:
            if (
                seq == self.next_seq
                and sa is self.sa
                and payload <= self.mss
                and key == self.key
                and self.end - self.hlen + payload <= MAX_PAYLOAD
            ):
                end = self.end
                self.mv[end : end + payload] = mv[start + hlen : start + length]
                self.end = end + payload
                self.count += 1
                self.next_seq = (seq + payload) & 0xFFFFFFFF
                if flags & TCP_PSH:
                    self.buf[33] |= TCP_PSH  # the merged packet ends with this segment
                    lost = self.flush()
                elif payload < self.mss or self.count >= MAX_SEGMENTS:
                    lost = self.flush()
                return lost
            lost = self.flush()
        self.mv[0:length] = mv[start : start + length]
        self.key = key
        self.sa = sa
        self.end = length
        self.hlen = hlen
        self.mss = payload
        self.count = 1
        self.next_seq = (seq + payload) & 0xFFFFFFFF
        if flags & TCP_PSH:
            lost += self.flush()
        return lost

    def flush(self) -> int:
        """Write what is pending; returns the number of packets lost to a failed write."""
        count = self.count
        if not count:
            return 0
        self.count = 0
        buf = self.buf
        end = self.end
        if count == 1:
            header = PLAIN_HDR
        else:
            buf[2:4] = _U16.pack(end)
            buf[10:12] = _ZERO2
            buf[10:12] = _U16.pack(ipv4_header_checksum(self.mv[0:20]))
            # CHECKSUM_PARTIAL: the field holds the folded pseudo-header sum (RFC 793 3.1)
            pseudo = int.from_bytes(buf[12:20], "big") % 0xFFFF + 6 + end - 20
            buf[36:38] = _U16.pack(_fold(pseudo))
            header = _VNET.pack(
                VIRTIO_NET_HDR_F_NEEDS_CSUM,
                VIRTIO_NET_HDR_GSO_TCPV4,
                self.hlen,
                self.mss,
                20,
                16,
            )
        try:
            os.writev(self.fd, [header, self.mv[0:end]])
        except OSError:
            return count
        return 0
