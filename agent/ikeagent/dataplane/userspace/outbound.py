"""The outbound path of the userspace data plane, TUN -> ESP (``UserspaceDataplane`` mixin).

Packets read from the TUN device are sealed in place and leave in ``UDP_SEGMENT`` batches, one
per SA (see ``plane`` for the whole picture); a packet whose policy has no usable SA leaves this
hot path for ``trap_path``. Runs on the thread that reads the TUN device; state lives in the
data plane.
"""

from __future__ import annotations

import logging
import os
import select
import socket
import time

from ..base import ExpireKind, SaExpired
from .buffers import MAX_PACKET, PAYLOAD_POS, _Batch, _Buffers
from .gro import VNET_HDR_LEN
from .trap_path import TrapPath
from .udp import send_segmented

log = logging.getLogger(__name__)

SEND_WAIT_MS = 50


class OutboundPath(TrapPath):
    """Sealing and sending of TUN packets; the trap path handles those without an SA."""

    _tun_fd: int
    _running: bool
    _vnet: bool
    _gso: bool

    def _pump_tun(self, buffers: _Buffers, limit: int) -> bool:
        """Move up to ``limit`` packets from the TUN device; True when it ran dry.

        Sealed packets of one SA are laid out back to back in ``buffers.out`` and leave
        together (one ``UDP_SEGMENT`` send) when the batch is full, the SA or the packet size
        changes, or the TUN device runs dry; nothing is held back when this returns."""
        if self._releases:
            self._release_traps(buffers)
        tun = self._tun_fd
        buf = buffers.out
        mv = buffers.out_mv
        readv = os.readv
        monotonic = time.monotonic
        stats = self._out_stats
        lookup = self._sad.lookup_outbound
        socks = self._socks
        batch = buffers.batch
        batch.reset()
        pos = PAYLOAD_POS
        dry = False
        vhl = VNET_HDR_LEN if self._vnet else 0
        head = buffers.vnet_mv[:vhl]
        while limit and self._running:
            limit -= 1
            try:
                n = readv(tun, [head, mv[pos : pos + MAX_PACKET]]) - vhl
            except BlockingIOError:
                dry = True
                break
            except OSError as exc:
                if self._running:
                    log.warning("TUN read failed: %s", exc)
                    stats["error"] += 1
                dry = True
                break
            try:
                policy = lookup(buf, pos, n)
                if policy is None:
                    stats["no_sa" if n and buf[pos] >> 4 in (4, 6) else "not_ip"] += 1
                    continue
                sa = policy.out
                if sa is None or sa.hard_done:
                    sa = self._without_sa(policy, sa, buffers, pos, n)
                    if sa is None:
                        continue
                seq = sa.seq + 1
                if seq > sa.seq_max:
                    stats["seq_overflow"] += 1
                    sa.hard_done = True
                    self._raise(SaExpired(sa.reqid, sa.spi, ExpireKind.HARD))
                    continue
                cipher = sa.cipher
                if sa is not batch.sa and batch.count:
                    # another SA: send what is pending before this header may overwrite it
                    pos = self._flush(batch, pos, n)
                sock = socks.get(sa.family)
                if sock is None:
                    socks = self._socks
                    sock = socks.get(sa.family)
                    if sock is None:
                        stats["no_socket"] += 1
                        continue
                sa.seq = seq
                end = cipher.seal_inplace(mv, pos, sa.spi, seq, n, 41 if buf[pos] >> 4 == 6 else 4)
                size = end - pos + cipher.prefix_len
                sa.packets += 1
                sa.bytes += n
                sa.last_used = monotonic()
                if batch.count:
                    if size > batch.size:  # cannot follow the batch's segments
                        self._send(batch)
                        batch.start(sa, sock, end - size, size, n)
                    else:
                        batch.add(size, n)
                else:
                    batch.start(sa, sock, end - size, size, n)
                if size < batch.size or batch.full(end):
                    self._send(batch)
                    pos = PAYLOAD_POS
                else:
                    pos = end + cipher.prefix_len
                if sa.bytes >= sa.check_bytes or sa.packets >= sa.check_packets:
                    self._lifetime(sa)
            except Exception:
                stats["error"] += 1
                log.exception("outbound packet failed")
        if batch.count:
            self._send(batch)
        return dry

    def _flush(self, batch: _Batch, pos: int, n: int) -> int:
        """Send the pending batch and move the packet just read (``n`` bytes at ``pos``) to
        the start of the buffer; returns its new position."""
        self._send(batch)
        mv = batch.mv
        mv[PAYLOAD_POS : PAYLOAD_POS + n] = bytes(mv[pos : pos + n])
        return PAYLOAD_POS

    def _send(self, batch: _Batch) -> None:
        """Send the batch's datagrams (one segmented send when there are several)."""
        stats = self._out_stats
        sa = batch.sa
        count = batch.count
        data = batch.mv[batch.begin : batch.end]
        if count == 1:
            try:
                batch.sock.sendto(data, sa.remote)
                sent = 1
            except BlockingIOError:
                sent = 1 if _send_later(batch.sock, data, sa.remote) else 0
            except OSError:
                sent = 0
        else:
            sent, self._gso = send_segmented(batch.sock, data, batch.size, sa.remote, self._gso)
        stats["esp_out"] += sent
        if sent < count:
            failed = count - sent
            stats["send_failed"] += failed
            sa.packets -= failed
            sa.bytes -= batch.inner if not sent else failed * (batch.inner // count)
        batch.reset()


def _send_later(sock: socket.socket, packet: memoryview, remote: tuple) -> bool:
    """The socket buffer is full: wait briefly for room, then try once more."""
    poller = select.poll()
    poller.register(sock, select.POLLOUT)
    if not poller.poll(SEND_WAIT_MS):
        return False
    try:
        sock.sendto(packet, remote)
    except OSError:
        return False
    return True
