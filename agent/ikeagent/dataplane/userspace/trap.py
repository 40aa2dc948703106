"""Trap policies of the userspace data plane: packets held while their SA is negotiated.

A policy armed by ``install_trap`` carries a ``Trap``. While the policy has no outbound SA, the
outbound thread copies every packet it covers into the trap's queue (at most
``TRAP_QUEUE_LIMIT`` packets, none older than ``HOLD_TIMEOUT`` seconds) and raises an
``Acquire``, once, then again only after ``ACQUIRE_RETRY`` seconds while still no SA came.

Release. The outbound hot path reads ``Policy.out`` and nothing else, so for a trapped policy
without an outbound SA a newly usable SA is not stored there: the runtime thread parks it in
``Trap.release`` and wakes the outbound thread, which seals the held packets with it, in order,
and only then publishes it as ``Policy.out``. A packet of the policy read from the TUN device
before that sees no SA and releases the queue first, so packets never overtake the held ones,
and an SA's sequence numbers stay written by the outbound thread alone. ``Trap.lock`` orders
the runtime thread's changes of the outbound SA against that publication.

Counters in ``stats()``: "acquires" (Acquires raised), "held" (packets queued), "held_sent"
(held packets that left through their SA), "held_expired" (waited longer than HOLD_TIMEOUT),
"trap_queue_full" (not queued: the queue was full), "held_dropped" (still held when the
policy was removed). A packet of a policy that is no trap and has no SA still counts as
"no_sa".
"""

from __future__ import annotations

import ipaddress
import threading
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING

from ..base import ACQUIRE_RETRY, TRAP_QUEUE_LIMIT

if TYPE_CHECKING:
    from .sad import OutboundSa, Policy

# seconds a held packet may wait for its SA; older ones are dropped (as the kernel's hold
# queue gives up on them)
HOLD_TIMEOUT = 10.0

Held = deque[tuple[float, bytes]]  # (monotonic time it was read, packet)


class Trap:
    """The hold queue and Acquire state of one trapped policy; see the module docstring."""

    __slots__ = ("lock", "held", "release", "acquired_at", "notify")

    def __init__(self, notify: Callable[[Policy], None]) -> None:
        self.lock = threading.Lock()
        self.held: Held = deque()
        self.release: OutboundSa | None = None  # usable SA waiting to be published
        self.acquired_at: float | None = None  # when the last Acquire was raised
        self.notify = notify  # wakes the outbound thread after ``release`` was set

    # -- outbound thread ----------------------------------------------------------------------

    def hold(self, packet: bytes, now: float) -> tuple[bool, int]:
        """Queue ``packet``; returns whether it was queued and how many stale packets were
        dropped from the head first."""
        with self.lock:
            held = self.held
            stale = 0
            while held and now - held[0][0] > HOLD_TIMEOUT:
                held.popleft()
                stale += 1
            if len(held) >= TRAP_QUEUE_LIMIT:
                return False, stale
            held.append((now, packet))
            return True, stale

    def acquire_due(self, now: float) -> bool:
        """Whether a packet read now raises an Acquire (and, if so, note that it did)."""
        with self.lock:
            if self.release is not None:
                return False
            last = self.acquired_at
            if last is not None and now - last < ACQUIRE_RETRY:
                return False
            self.acquired_at = now
            return True

    def take(self) -> tuple[OutboundSa | None, Held]:
        """The SA to release and the packets held for it (the queue is emptied)."""
        with self.lock:
            sa = self.release
            if sa is None:
                return None, deque()
            held, self.held = self.held, deque()
            return sa, held

    def publish(self, policy: Policy, sa: OutboundSa) -> bool:
        """Make ``sa`` the policy's outbound SA unless the runtime changed its mind meanwhile."""
        with self.lock:
            if self.release is not sa:
                return False
            policy.out = sa
            self.release = None
            return True

    # -- runtime thread -----------------------------------------------------------------------

    def set_out(self, policy: Policy, sa: OutboundSa | None) -> None:
        """The SA the policy should send on from now on (None: it has none, armed again)."""
        with self.lock:
            if sa is None:
                policy.out = None
                self.release = None
                self.acquired_at = None  # the next packet raises an Acquire at once
                return
            if policy.out is not None:  # up already: nothing is held, switch at once
                policy.out = sa
                return
            self.release = sa
        self.notify(policy)

    def current(self, policy: Policy) -> OutboundSa | None:
        """The SA the policy sends on, or will once the outbound thread published it."""
        with self.lock:
            return policy.out if policy.out is not None else self.release

    def clear(self) -> int:
        """Forget the held packets and any pending release; returns how many were dropped."""
        with self.lock:
            dropped = len(self.held)
            self.held = deque()
            self.release = None
            return dropped


def packet_addresses(buf: bytearray | memoryview, pos: int) -> tuple[str, str]:
    """Source and destination address of the IPv4 or IPv6 packet at ``buf[pos:]`` (its
    length was checked by the outbound lookup)."""
    if buf[pos] >> 4 == 4:
        src, dst = bytes(buf[pos + 12 : pos + 16]), bytes(buf[pos + 16 : pos + 20])
    else:
        src, dst = bytes(buf[pos + 8 : pos + 24]), bytes(buf[pos + 24 : pos + 40])
    return str(ipaddress.ip_address(src)), str(ipaddress.ip_address(dst))
