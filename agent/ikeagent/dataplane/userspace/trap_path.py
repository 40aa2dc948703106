"""The outbound path of packets whose policy has no usable SA (``UserspaceDataplane`` mixin).

The outbound hot path (``_pump_tun``) hands such a packet to ``_without_sa``: dropped as before
("no_sa", "expired") unless the policy is a trap, which holds it and may raise an ``Acquire``.
When the runtime gave a trap an SA (``Trap.release``), the outbound thread seals the held
packets with it, in order, and only then publishes it (see ``trap``). Policies with such a
release queue up in ``_releases``, which the outbound thread empties at the start of every
turn (it is woken through its wake pipe); a packet of the trap read before that releases the
held ones first.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from ..base import Acquire, ExpireKind, SaExpired
from .buffers import PAYLOAD_POS, _Buffers
from .trap import HOLD_TIMEOUT, Held, packet_addresses
from .udp import send_one

if TYPE_CHECKING:
    import socket
    from collections import deque

    from ..base import DataplaneEvent
    from .sad import OutboundSa, Policy, Sad, _Metered


class TrapPath:
    """Held packets and Acquires of trapped policies; state lives in the data plane."""

    _sad: Sad
    _out_stats: dict[str, int]
    _socks: dict[int, socket.socket]
    _releases: deque[Policy]

    if TYPE_CHECKING:

        def _raise(self, event: DataplaneEvent) -> None: ...

        def _lifetime(self, sa: _Metered) -> None: ...

    def _without_sa(
        self, policy: Policy, sa: OutboundSa | None, buffers: _Buffers, pos: int, n: int
    ) -> OutboundSa | None:
        """The packet at ``buffers.out[pos:pos+n]`` matched ``policy``, which has no usable
        outbound SA (``sa`` is None or hard-expired). Returns the SA to seal it with when a
        trap's held packets were just released, else None: the packet was held or dropped."""
        stats = self._out_stats
        trap = policy.trap
        if sa is not None or trap is None:
            stats["expired" if sa is not None else "no_sa"] += 1
            return None
        if trap.release is not None:  # an SA came: the held packets go first, then this one
            self._release_held(policy, buffers)
            sa = policy.out
            if sa is not None and not sa.hard_done:
                return sa
        now = time.monotonic()
        queued, stale = trap.hold(bytes(buffers.out_mv[pos : pos + n]), now)
        stats["held" if queued else "trap_queue_full"] += 1
        stats["held_expired"] += stale
        if trap.acquire_due(now):
            stats["acquires"] += 1
            src, dst = packet_addresses(buffers.out, pos)
            self._raise(Acquire(policy.reqid, src, dst))
        return None

    def _release_traps(self, buffers: _Buffers) -> None:
        """Publish the SAs the runtime gave trapped policies, after their held packets."""
        releases = self._releases
        while releases:
            policy = releases.popleft()
            trap = policy.trap
            if trap is not None and trap.release is not None:
                self._release_held(policy, buffers)

    def _release_held(self, policy: Policy, buffers: _Buffers) -> None:
        trap = policy.trap
        while trap is not None:
            sa, held = trap.take()
            if sa is None:
                return
            self._seal_held(sa, held, buffers)
            if trap.publish(policy, sa):
                return

    def _seal_held(self, sa: OutboundSa, held: Held, buffers: _Buffers) -> None:
        """Seal and send held packets one by one, in order, in a buffer of their own (a batch
        of other SAs may be pending in ``buffers.out``)."""
        stats = self._out_stats
        mv = buffers.scratch()
        cipher = sa.cipher
        now = time.monotonic()
        for stamp, packet in held:
            sock = self._socks.get(sa.family)
            if now - stamp > HOLD_TIMEOUT:
                stats["held_expired"] += 1
                continue
            if sa.hard_done or sock is None:
                stats["expired" if sa.hard_done else "no_socket"] += 1
                continue
            seq = sa.seq + 1
            if seq > sa.seq_max:
                stats["seq_overflow"] += 1
                sa.hard_done = True
                self._raise(SaExpired(sa.reqid, sa.spi, ExpireKind.HARD))
                continue
            n = len(packet)
            mv[PAYLOAD_POS : PAYLOAD_POS + n] = packet
            sa.seq = seq
            end = cipher.seal_inplace(
                mv, PAYLOAD_POS, sa.spi, seq, n, 41 if packet[0] >> 4 == 6 else 4
            )
            if not send_one(sock, mv[PAYLOAD_POS - cipher.prefix_len : end], sa.remote):
                stats["send_failed"] += 1
                continue
            stats["esp_out"] += 1
            stats["held_sent"] += 1
            sa.packets += 1
            sa.bytes += n
            sa.last_used = now
            if sa.bytes >= sa.check_bytes or sa.packets >= sa.check_packets:
                self._lifetime(sa)
