"""A layer-3 TUN device (Linux ``/dev/net/tun``) configured over netlink with pyroute2."""

from __future__ import annotations

import fcntl
import os
import struct

TUNSETIFF = 0x400454CA
IFF_TUN = 0x0001
IFF_NO_PI = 0x1000
IFNAMSIZ = 16


def open_tun(name: str) -> tuple[int, str]:
    """Create (or attach to) the TUN device ``name``; returns (non-blocking fd, kernel name).

    The device exists as long as the fd is open (it is not made persistent), so a crashed
    agent leaves nothing behind.
    """
    if not name or len(name.encode()) >= IFNAMSIZ:
        raise ValueError(f"bad interface name {name!r}")
    fd = os.open("/dev/net/tun", os.O_RDWR | os.O_CLOEXEC | os.O_NONBLOCK)
    try:
        ifr = struct.pack("16sH22x", name.encode(), IFF_TUN | IFF_NO_PI)
        result = fcntl.ioctl(fd, TUNSETIFF, ifr)
    except BaseException:
        os.close(fd)
        raise
    return fd, result[:IFNAMSIZ].rstrip(b"\0").decode()


def configure_link(ipr: object, name: str, mtu: int) -> int:
    """Set the MTU and bring the device up; returns its ifindex."""
    index = ipr.link_lookup(ifname=name)[0]
    ipr.link("set", index=index, mtu=mtu, state="up")
    return index
