"""A layer-3 TUN device (Linux ``/dev/net/tun``) configured over netlink with pyroute2."""

from __future__ import annotations

import fcntl
import os
import struct

TUNSETIFF = 0x400454CA
IFF_TUN = 0x0001
IFF_NO_PI = 0x1000
IFF_VNET_HDR = 0x4000
IFNAMSIZ = 16
# packets the kernel may queue for the data plane; the default (500) overflows while a data-plane
# thread is busy with the other direction and a TCP sender's whole TSO burst arrives at once
TX_QUEUE_LEN = 2048


def open_tun(name: str, vnet_hdr: bool = False) -> tuple[int, str]:
    """Create (or attach to) the TUN device ``name``; returns (non-blocking fd, kernel name).

    The device exists as long as the fd is open (it is not made persistent), so a crashed
    agent leaves nothing behind. With ``vnet_hdr`` every packet read or written starts with a
    ``virtio_net_hdr`` (see ``gro``); no offloads are turned on, so packets read are never
    larger than the MTU and carry finished checksums.
    """
    if not name or len(name.encode()) >= IFNAMSIZ:
        raise ValueError(f"bad interface name {name!r}")
    fd = os.open("/dev/net/tun", os.O_RDWR | os.O_CLOEXEC | os.O_NONBLOCK)
    try:
        flags = IFF_TUN | IFF_NO_PI | (IFF_VNET_HDR if vnet_hdr else 0)
        ifr = struct.pack("16sH22x", name.encode(), flags)
        result = fcntl.ioctl(fd, TUNSETIFF, ifr)
    except BaseException:
        os.close(fd)
        raise
    return fd, result[:IFNAMSIZ].rstrip(b"\0").decode()


def configure_link(ipr: object, name: str, mtu: int, txqlen: int = TX_QUEUE_LEN) -> int:
    """Set the MTU and the transmit queue length and bring the device up; returns its
    ifindex."""
    index = ipr.link_lookup(ifname=name)[0]
    ipr.link("set", index=index, mtu=mtu, txqlen=txqlen, state="up")
    return index
