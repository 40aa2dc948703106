"""Per-thread packet buffers of the userspace data plane, allocated once, and the outbound
batch of sealed datagrams waiting for one segmented send."""

from __future__ import annotations

import socket

from .gro import VNET_HDR_LEN, Coalescer
from .udp import GSO_MAX_BYTES, GSO_MAX_SEGMENTS

BUFFER_SIZE = 65536 + 1024
PAYLOAD_POS = 64  # where a TUN packet is read, leaving room for the largest ESP prefix
MAX_PACKET = 65535  # the largest packet read from the TUN device
# a batch ends before GSO_MAX_BYTES; the next packet is read after it, with room to seal it
OUT_BUFFER_SIZE = GSO_MAX_BYTES + PAYLOAD_POS + MAX_PACKET + 1024


class _Batch:
    """Sealed datagrams of one SA waiting in ``mv[begin:end]`` for one segmented send."""

    __slots__ = ("mv", "sa", "sock", "begin", "end", "size", "count", "inner")

    def __init__(self, mv: memoryview) -> None:
        self.mv = mv
        self.reset()

    def reset(self) -> None:
        self.sa = None
        self.sock = None
        self.begin = self.end = self.size = self.count = self.inner = 0

    def start(self, sa: object, sock: socket.socket, begin: int, size: int, inner: int) -> None:
        self.sa = sa
        self.sock = sock
        self.begin = begin
        self.end = begin + size
        self.size = size
        self.count = 1
        self.inner = inner

    def add(self, size: int, inner: int) -> None:
        self.end += size
        self.count += 1
        self.inner += inner

    def full(self, end: int) -> bool:
        return (
            self.count >= GSO_MAX_SEGMENTS
            or end - self.begin + self.size > GSO_MAX_BYTES
            or end > GSO_MAX_BYTES
        )


class _Buffers:
    """Per-thread packet buffers, allocated once."""

    __slots__ = (
        "out",
        "out_mv",
        "batch",
        "vnet_mv",
        "rx",
        "rx_mv",
        "rx_target",
        "plain",
        "plain_mv",
        "gro",
        "_scratch",
    )

    def __init__(self) -> None:
        self.out = bytearray(OUT_BUFFER_SIZE)
        self.out_mv = memoryview(self.out)
        self.batch = _Batch(self.out_mv)
        self.vnet_mv = memoryview(bytearray(VNET_HDR_LEN))  # headers read, ignored
        self.gro: Coalescer | None = None
        self.rx = bytearray(BUFFER_SIZE)
        self.rx_mv = memoryview(self.rx)
        self.rx_target = [self.rx_mv]
        self.plain = bytearray(BUFFER_SIZE)
        self.plain_mv = memoryview(self.plain)
        self._scratch: memoryview | None = None

    def scratch(self) -> memoryview:
        """A buffer for sealing one packet (held ones of a trap), allocated at first use."""
        if self._scratch is None:
            self._scratch = memoryview(bytearray(BUFFER_SIZE))
        return self._scratch
