"""The inbound path of the userspace data plane, UDP -> TUN (``UserspaceDataplane`` mixin).

Datagrams read from an encap socket are IKE (handed to the socket's sink), NAT-keepalives or
ESP, which is checked, opened and written to the TUN device (see ``plane`` for the whole
picture). Runs on the thread that reads the encap sockets; state lives in the data plane.
"""

from __future__ import annotations

import logging
import os
import socket
import struct
import time
from typing import TYPE_CHECKING, Any

from ikeagent.crypto.esp import EspAuthError, EspError, EspPadError, EspTruncated

from ..base import Endpoint, IkeSink
from .buffers import _Buffers
from .gro import PLAIN_HDR, Coalescer
from .udp import GRO_ANC_SIZE, gro_size

if TYPE_CHECKING:
    from .sad import Sad, _Metered

log = logging.getLogger(__name__)

NON_ESP_MARKER = b"\0\0\0\0"
IKE_ORDER_WAIT = 0.05  # s an unknown SPI waits for the IKE message read before it (see _pump_sock)
_HEADER = struct.Struct(">II")


class InboundPath:
    """Opening ESP datagrams and handing IKE messages on; state lives in the data plane."""

    _sad: Sad
    _in_stats: dict[str, int]
    _tun_fd: int
    _running: bool
    _vnet: bool
    _ike_handled: Any

    if TYPE_CHECKING:

        def _lifetime(self, sa: _Metered) -> None: ...

    def _pump_sock(
        self,
        sock: socket.socket,
        local: Endpoint,
        sink: IkeSink,
        buffers: _Buffers,
        limit: int,
    ) -> bool:
        """Process up to ``limit`` reads from ``sock``; True when it ran dry. A read may hold
        several datagrams of one size (``UDP_GRO``), processed one by one."""
        rbuf = buffers.rx
        rmv = buffers.rx_mv
        target = buffers.rx_target
        obuf = buffers.plain
        omv = buffers.plain_mv
        recv = sock.recvmsg_into
        tun = self._tun_fd
        write = os.write
        writev = os.writev
        unpack = _HEADER.unpack_from
        monotonic = time.monotonic
        stats = self._in_stats
        gro = None
        if self._vnet:
            gro = buffers.gro
            if gro is None or gro.fd != tun:
                gro = buffers.gro = Coalescer(tun)
        while limit and self._running:
            limit -= 1
            try:
                total, anc, _, addr = recv(target, GRO_ANC_SIZE)
            except BlockingIOError:
                if gro is not None:
                    self._tun_lost(gro.flush())
                return True
            except OSError as exc:
                log.warning("encap socket read failed: %s", exc)
                stats["error"] += 1
                if gro is not None:
                    self._tun_lost(gro.flush())
                return True
            size = gro_size(anc) if anc else 0
            if size <= 0 or size >= total:
                size = total
            sas = self._sad.inbound
            for off in range(0, total, size) if total else (0,):
                n = min(size, total - off)
                try:
                    if n < 8:
                        if n == 1 and rbuf[off] == 0xFF:
                            stats["keepalive_in"] += 1
                        elif n > 4 and rbuf[off : off + 4] == NON_ESP_MARKER:
                            stats["ike_in"] += 1
                            self._ike_handled = sink(bytes(rmv[off + 4 : off + n]), local, addr)
                        else:
                            stats["truncated"] += 1
                        continue
                    spi, seq = unpack(rbuf, off)
                    if spi == 0:
                        stats["ike_in"] += 1
                        self._ike_handled = sink(bytes(rmv[off + 4 : off + n]), local, addr)
                        continue
                    sa = sas.get(spi)
                    if sa is None:
                        # an IKE message read before this packet may install its SA (the
                        # peer sends on a new pair once it has answered): wait for it, so the
                        # socket's order holds
                        handled = self._ike_handled
                        if handled is not None:
                            self._ike_handled = None
                            if handled.wait(IKE_ORDER_WAIT):
                                stats["waited_for_ike"] += 1
                                sas = self._sad.inbound
                                sa = sas.get(spi)
                    if sa is None:
                        stats["unknown_spi"] += 1
                        continue
                    if sa.hard_done:
                        stats["expired"] += 1
                        continue
                    window = sa.window
                    if sa.esn:
                        seq = window.infer(seq)
                    if not window.check(seq):
                        stats["replay"] += 1
                        sa.replay_drops += 1
                        continue
                    try:
                        nh, start, length = sa.cipher.open_into(rmv[off : off + n], omv, seq >> 32)
                    except EspAuthError:
                        stats["auth"] += 1
                        sa.auth_failures += 1
                        continue
                    except EspPadError:
                        stats["pad"] += 1
                        continue
                    except EspTruncated:
                        stats["truncated"] += 1
                        continue
                    window.update(seq)
                    if nh != 4 and nh != 41:
                        stats["dummy_in" if nh == 59 else "next_header"] += 1
                        continue
                    if not length or (obuf[start] >> 4 == 6) != (nh == 41):
                        stats["next_header"] += 1
                        continue
                    if not sa.policy.allows_inbound(obuf, start, length):
                        stats["selector"] += 1
                        continue
                    if gro is None:
                        try:
                            write(tun, omv[start : start + length])
                        except OSError:
                            stats["tun_write"] += 1
                            continue
                    else:
                        lost = gro.add(sa, obuf, omv, start, length)
                        if lost < 0:  # not mergeable: after what is pending, alone
                            self._tun_lost(gro.flush())
                            try:
                                writev(tun, [PLAIN_HDR, omv[start : start + length]])
                            except OSError:
                                stats["tun_write"] += 1
                                continue
                        elif lost:
                            self._tun_lost(lost)
                    stats["esp_in"] += 1
                    sa.packets += 1
                    sa.bytes += length
                    sa.last_used = monotonic()
                    if sa.activates is not None:
                        sa.activate()
                    if sa.bytes >= sa.check_bytes or sa.packets >= sa.check_packets:
                        self._lifetime(sa)
                except EspError:
                    stats["truncated"] += 1
                except Exception:
                    stats["error"] += 1
                    log.exception("inbound datagram failed")
        if gro is not None:
            self._tun_lost(gro.flush())
        return False

    def _tun_lost(self, count: int) -> None:
        """``count`` inbound packets, counted as delivered, failed to reach the TUN device."""
        if count:
            self._in_stats["tun_write"] += count
            self._in_stats["esp_in"] -= count
