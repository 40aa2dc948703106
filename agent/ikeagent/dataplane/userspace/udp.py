"""UDP segmentation offload for the encap socket (Linux ``UDP_SEGMENT`` / ``UDP_GRO``).

Sending: several ESP datagrams of one SA, laid out back to back in one buffer, all of one size
but the last (which may be shorter), leave in one ``sendmsg`` with a ``UDP_SEGMENT`` control
message; the kernel cuts them into separate datagrams (in software if the device cannot), so
routing, netfilter and the veth hop run once per batch instead of once per packet.

Receiving: with ``UDP_GRO`` on, the kernel may hand over several datagrams of one flow in one
read, with their size in a ``UDP_GRO`` control message; ``segments`` cuts them apart again.
"""

from __future__ import annotations

import errno
import select
import socket
import struct

SOL_UDP = 17
UDP_SEGMENT = 103
UDP_GRO = 104
GSO_MAX_SEGMENTS = 64  # the kernel allows 64 (older) or 128 (newer) segments per send
GSO_MAX_BYTES = 60000  # below the 65507-byte UDP payload limit of IPv4, with headroom
SEND_WAIT_MS = 50
GRO_ANC_SIZE = socket.CMSG_SPACE(4)
_SEGMENT = struct.Struct("=H")
_GRO = struct.Struct("=i")
# the kernel refuses a segmented send with these when the route or device cannot take it
_NO_GSO = frozenset((errno.EIO, errno.EINVAL, errno.EMSGSIZE, errno.ENOPROTOOPT, errno.EOPNOTSUPP))


SOCKET_BUFFER = 4 << 20  # room for bursts of coalesced datagrams while a thread is busy
SO_RCVBUFFORCE = getattr(socket, "SO_RCVBUFFORCE", 33)
SO_SNDBUFFORCE = getattr(socket, "SO_SNDBUFFORCE", 32)


def widen_buffers(sock: socket.socket, size: int = SOCKET_BUFFER) -> None:
    """Raise the socket's receive and send buffers to ``size`` (past ``rmem_max`` when the
    process may, otherwise as far as the sysctl allows); never shrinks them."""
    for force, plain in ((SO_RCVBUFFORCE, socket.SO_RCVBUF), (SO_SNDBUFFORCE, socket.SO_SNDBUF)):
        try:
            if sock.getsockopt(socket.SOL_SOCKET, plain) >= size:
                continue
        except OSError:
            continue
        for option in (force, plain):
            try:
                sock.setsockopt(socket.SOL_SOCKET, option, size)
                break
            except OSError:
                continue


def enable_gro(sock: socket.socket) -> bool:
    """Ask for coalesced receives on ``sock``; False when the kernel or socket cannot."""
    try:
        sock.setsockopt(SOL_UDP, UDP_GRO, 1)
    except OSError:
        return False
    return True


def gro_size(ancdata: list) -> int:
    """The segment size of a coalesced read (0: a single datagram)."""
    for level, kind, data in ancdata:
        if level == SOL_UDP and kind == UDP_GRO and len(data) >= 4:
            return _GRO.unpack_from(data)[0]
    return 0


def segment_cmsg(size: int) -> list[tuple[int, int, bytes]]:
    return [(SOL_UDP, UDP_SEGMENT, _SEGMENT.pack(size))]


def send_segmented(
    sock: socket.socket, data: memoryview, size: int, remote: tuple, gso: bool
) -> tuple[int, bool]:
    """Send ``data`` as datagrams of ``size`` bytes (the last may be shorter).

    Returns (datagrams sent, whether ``UDP_SEGMENT`` still works on this socket). Falls back to
    one ``sendto`` per datagram when the kernel refuses the segmented send.
    """
    total = len(data)
    if gso and total > size:
        cmsg = segment_cmsg(size)
        try:
            sock.sendmsg([data], cmsg, 0, remote)
            return -(-total // size), True
        except BlockingIOError:
            if _wait_writable(sock):
                try:
                    sock.sendmsg([data], cmsg, 0, remote)
                    return -(-total // size), True
                except OSError as exc:
                    if exc.errno not in _NO_GSO:
                        return 0, True
            else:
                return 0, True
        except OSError as exc:
            if exc.errno not in _NO_GSO:
                return 0, True
        gso = False
    sent = 0
    for off in range(0, total, size):
        packet = data[off : off + size]
        try:
            sock.sendto(packet, remote)
        except BlockingIOError:
            if not _wait_writable(sock):
                continue
            try:
                sock.sendto(packet, remote)
            except OSError:
                continue
        except OSError:
            continue
        sent += 1
    return sent, gso


def _wait_writable(sock: socket.socket) -> bool:
    """The socket buffer is full: wait briefly for room."""
    poller = select.poll()
    poller.register(sock, select.POLLOUT)
    return bool(poller.poll(SEND_WAIT_MS))


def send_one(sock: socket.socket, data: memoryview, remote: tuple) -> bool:
    """Send one datagram, waiting briefly once when the socket buffer is full."""
    try:
        sock.sendto(data, remote)
        return True
    except BlockingIOError:
        if not _wait_writable(sock):
            return False
    except OSError:
        return False
    try:
        sock.sendto(data, remote)
    except OSError:
        return False
    return True
