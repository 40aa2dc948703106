"""The userspace ESP data plane: a TUN device plus UDP-encapsulated ESP (RFC 4303, RFC 3948).

By default one data-plane thread (not asyncio) serves both directions, alternating batches and
blocking in ``poll`` only when both sources are drained (``threads=2`` runs one thread per
direction instead; measured slower, as the two then keep handing the GIL to each other):

- outbound: read a packet from the TUN device, find the policy (reqid) whose selectors cover
  it, seal it with the newest outbound SA of that reqid; sealed packets of one SA queue back to
  back and leave in one ``UDP_SEGMENT`` send to the peer's encap port (``udp``);
- inbound: read datagrams from the encap socket(s), several per read with ``UDP_GRO``. Four
  zero bytes (the non-ESP marker) mean IKE: the marker is stripped and the rest handed to
  ``ike_sink`` *from the data-plane thread* (the runtime's sink is thread-safe, e.g. it uses
  ``loop.call_soon_threadsafe``); a single 0xFF byte is a NAT-keepalive and is dropped;
  anything else is ESP: SA by SPI, anti-replay check, ICV, decryption, selector check of the
  inner packet, write to the TUN device. With ``coalesce`` (``IFF_VNET_HDR``) in-order TCP
  segments of one flow are merged into one GSO write (``gro``).

Packets are read into and sealed or opened in preallocated buffers (``os.readv``,
``socket.recvmsg_into``, in-place AEAD), so the per-packet path allocates little.

The two directions live in mixins: ``outbound`` (TUN -> ESP), whose packets without a usable
SA take ``trap_path``, and ``inbound`` (UDP -> TUN); this module holds the lifecycle, the
``Dataplane`` methods, events and the thread loops that drive both.

Every method of the ``Dataplane`` protocol is called from the runtime's thread; changes to the
SA database replace whole dicts and tuples (see ``sad``), and events are queued under a lock
and announced through the wakeup callback.

Trap policies (``install_trap``): a packet whose policy has no outbound SA leaves the hot path
(as it always did, to be dropped) and, when the policy is a trap, is held and may raise an
``Acquire``; an SA installed under a trap is published by the outbound thread after it sealed
the held packets with it (see ``trap``). Packets of policies with an SA pay nothing for this.
"""

from __future__ import annotations

import logging
import os
import select
import socket
import threading
from collections import deque
from collections.abc import Callable
from typing import Any

from ..base import (
    ChildSa,
    DataplaneEvent,
    Endpoint,
    IkeSink,
    SaCounters,
    SaExpired,
    TrapPolicy,
)
from .buffers import _Buffers
from .inbound import InboundPath
from .link_worker import LinkWorker
from .outbound import OutboundPath
from .sad import Policy, Sad, _Metered
from .tun import open_tun
from .udp import enable_gro, widen_buffers

log = logging.getLogger(__name__)

BATCH_FOREVER = -1  # a pump limit that never reaches zero
_POLLIN = select.POLLIN

DROP_REASONS = (
    "unknown_spi",
    "replay",
    "auth",
    "pad",
    "truncated",
    "selector",
    "next_header",
    "expired",
    "tun_write",
    "no_sa",
    "seq_overflow",
    "no_socket",
    "send_failed",
    "not_ip",
    "error",
)


class UserspaceDataplane(OutboundPath, InboundPath):
    """ESP in userspace over a TUN device; see the module docstring."""

    name = "userspace"
    # every method but start/close may be called straight from the agent's event loop: none
    # of them waits for netlink (routes are applied in order by the link worker)
    inline_calls = True

    def __init__(
        self,
        ifname: str = "ipsec0",
        mtu: int = 1400,
        route_table: int = 220,
        rule_priority: int = 220,
        manage_routes: bool = True,
        threads: int = 1,
        batch: int = 64,
        coalesce: bool = True,
    ) -> None:
        if threads not in (1, 2):
            raise ValueError("threads must be 1 or 2")
        self.threads = threads
        self.batch = batch
        self.coalesce = coalesce  # merge inbound TCP segments into GSO writes (IFF_VNET_HDR)
        self._vnet = False  # the TUN fd carries virtio_net_hdr (set when the device is opened)
        self.ifname = ifname
        self.mtu = mtu
        self.route_table = route_table
        self.rule_priority = rule_priority
        self.manage_routes = manage_routes
        self.ifindex = 0
        self._sad = Sad(on_release=self._wake_outbound)
        # trapped policies with an SA for the outbound thread to publish (appended by any
        # thread, taken by the outbound one: deque appends and pops are atomic)
        self._releases: deque[Policy] = deque()
        self._link: LinkWorker | None = None
        self._tun_fd = -1
        self._running = False
        self._threads: list[threading.Thread] = []
        self._wake_in = self._wake_out = (-1, -1)
        # (socket, local endpoint, sink) per attached encap socket; socks by address family
        self._encap: tuple[tuple[socket.socket, Endpoint, IkeSink], ...] = ()
        # what the last IKE message handed to a sink returned: set once it was handled
        self._ike_handled: Any = None
        self._socks: dict[int, socket.socket] = {}
        self._gso = True  # UDP_SEGMENT sends work (cleared at the first refusal)
        self._events: list[DataplaneEvent] = []
        self._events_lock = threading.Lock()
        self._wakeup: Callable[[], None] | None = None
        self._in_stats = dict.fromkeys(DROP_REASONS, 0)
        self._out_stats = dict.fromkeys(DROP_REASONS, 0)
        self._in_stats.update(esp_in=0, ike_in=0, keepalive_in=0, dummy_in=0, waited_for_ike=0)
        self._out_stats.update(
            esp_out=0, acquires=0, held=0, held_sent=0, held_expired=0, trap_queue_full=0
        )
        self._ctl_stats = {"held_dropped": 0}  # written by the runtime thread

    # -- lifecycle --------------------------------------------------------------------------

    def start(self) -> None:
        if self._running:
            return
        self._tun_fd, self.ifname = open_tun(self.ifname, vnet_hdr=self.coalesce)
        self._vnet = self.coalesce
        try:
            self._link = LinkWorker(
                self.ifname, self.mtu, self.manage_routes, self.route_table, self.rule_priority
            )
            self.ifindex = self._link.start()
        except BaseException:
            self._link = None
            self._release()
            raise
        self._wake_in = _pipe()
        self._wake_out = _pipe()
        self._running = True
        if self.threads == 1:
            loops = ((self._single_loop, "io"),)
        else:
            loops = ((self._split_loop_in, "in"), (self._split_loop_out, "out"))
        for target, name in loops:
            thread = threading.Thread(target=target, name=f"esp-{name}-{self.ifname}", daemon=True)
            thread.start()
            self._threads.append(thread)
        log.info("userspace data plane on %s (mtu %d)", self.ifname, self.mtu)

    def close(self) -> None:
        self._running = False
        for _, w in (self._wake_in, self._wake_out):
            if w >= 0:
                _poke(w)
        for thread in self._threads:
            thread.join(timeout=5)
        self._threads.clear()
        for reqid in list(self._sad.policies):
            self.remove_policy(reqid)
        self._release()

    def flush(self) -> None:
        """Wait until every route change asked for so far is applied (tests, shutdown)."""
        if self._link is not None:
            self._link.flush()

    def _release(self) -> None:
        if self._link is not None:
            self._link.stop()
            self._link = None
        if self._tun_fd >= 0:
            os.close(self._tun_fd)
            self._tun_fd = -1
        for pair in (self._wake_in, self._wake_out):
            for fd in pair:
                if fd >= 0:
                    os.close(fd)
        self._wake_in = self._wake_out = (-1, -1)

    def attach_encap_socket(self, sock: object, local: Endpoint, ike_sink: IkeSink) -> bool:
        """Take over reading ``sock`` (made non-blocking); IKE goes to ``ike_sink`` from the
        inbound thread, marker stripped. One socket per address family is used for sending."""
        if not isinstance(sock, socket.socket):  # e.g. an asyncio TransportSocket wrapper
            sock = socket.socket(fileno=os.dup(sock.fileno()))  # type: ignore[attr-defined]
        sock.setblocking(False)
        if sock.type == socket.SOCK_DGRAM and sock.family in (socket.AF_INET, socket.AF_INET6):
            enable_gro(sock)
            widen_buffers(sock)
        self._encap = (*self._encap, (sock, local, ike_sink))
        self._socks = {**self._socks, sock.family: sock}
        if self._wake_in[1] >= 0:
            _poke(self._wake_in[1])
        return True

    # -- SAs and policies -------------------------------------------------------------------

    def install_child(self, sa: ChildSa) -> None:
        policy, new = self._sad.install(sa)
        if new and self._link is not None:
            self._link.add_routes(sa.reqid, policy.first)
        log.info("installed %r", sa)

    def install_trap(self, trap: TrapPolicy) -> None:
        _, new = self._sad.install_trap(trap)
        if new and self._link is not None:
            self._link.add_routes(trap.reqid, trap)
        log.info("trap installed for reqid %d (%s)", trap.reqid, trap.name)

    def activate_outbound(self, reqid: int, spi_in: int, spi_out: int) -> None:
        if not self._sad.activate(reqid, spi_in, spi_out):
            log.debug("no SA pair 0x%08x/0x%08x under reqid %d", spi_in, spi_out, reqid)

    def delete_child_sas(self, reqid: int, spi_in: int, spi_out: int) -> None:
        if self._sad.delete(reqid, spi_in, spi_out) is None:
            log.debug("no SA pair 0x%08x/0x%08x under reqid %d", spi_in, spi_out, reqid)

    def remove_policy(self, reqid: int) -> None:
        policy = self._sad.policies.get(reqid)
        if policy is not None and policy.trap is not None:
            self._ctl_stats["held_dropped"] += policy.trap.clear()
        self._sad.remove(reqid)
        if self._link is not None:
            self._link.remove_routes(reqid)

    def counters(self, reqid: int, spi_in: int, spi_out: int) -> SaCounters:
        return self._sad.pair(reqid, spi_in, spi_out).counters()

    def poll_events(self) -> list[DataplaneEvent]:
        with self._events_lock:
            events, self._events = self._events, []
        return events

    def set_event_callback(self, wakeup: Callable[[], None]) -> None:
        self._wakeup = wakeup

    def stats(self) -> dict[str, int]:
        merged = dict(self._in_stats)
        for stats in (self._out_stats, self._ctl_stats):
            for key, value in stats.items():
                merged[key] = merged.get(key, 0) + value
        return merged

    # -- events -----------------------------------------------------------------------------

    def _lifetime(self, sa: _Metered) -> None:
        for kind in sa.expired_kinds():
            self._raise(SaExpired(sa.reqid, sa.spi, kind))

    def _wake_outbound(self, policy: Policy) -> None:
        """A trap got an SA to publish (any thread): wake the thread that reads the TUN."""
        self._releases.append(policy)
        fd = self._wake_in[1] if self.threads == 1 else self._wake_out[1]
        if fd >= 0:
            _poke(fd)

    def _raise(self, event: DataplaneEvent) -> None:
        with self._events_lock:
            self._events.append(event)
        wakeup = self._wakeup
        if wakeup is not None:
            try:
                wakeup()
            except Exception:
                log.exception("event wakeup failed")

    # -- threads --------------------------------------------------------------------------

    def _split_loop_out(self) -> None:
        """Outbound thread (two-thread mode): TUN -> ESP."""
        buffers = _Buffers()
        poller = select.poll()
        wake = self._wake_out[0]
        poller.register(self._tun_fd, _POLLIN)
        poller.register(wake, _POLLIN)
        while self._running:
            # bounded turns: a trap's pending release is looked at between them
            if self._pump_tun(buffers, 1024):
                for fd, _ in poller.poll():
                    if fd == wake:
                        _drain_pipe(wake)

    def _split_loop_in(self) -> None:
        """Inbound thread (two-thread mode): encap sockets -> TUN, IKE -> sink."""
        buffers = _Buffers()
        attached: tuple | None = None
        poller = select.poll()
        wake = self._wake_in[0]
        while self._running:
            if self._encap is not attached:
                attached = self._encap
                poller = select.poll()
                poller.register(wake, _POLLIN)
                for sock, _, _ in attached:
                    poller.register(sock, _POLLIN)
            drained = True
            for sock, local, sink in attached:
                drained &= self._pump_sock(sock, local, sink, buffers, BATCH_FOREVER)
            if drained and poller.poll() and self._running:
                _drain_pipe(wake)

    def _single_loop(self) -> None:
        """One thread for both directions, alternating batches (no GIL hand-offs)."""
        buffers = _Buffers()
        attached: tuple | None = None
        poller = select.poll()
        wake = self._wake_in[0]
        batch = self.batch
        reads = max(1, batch // 8)
        while self._running:
            if self._encap is not attached:
                attached = self._encap
                poller = select.poll()
                poller.register(wake, _POLLIN)
                poller.register(self._wake_out[0], _POLLIN)
                poller.register(self._tun_fd, _POLLIN)
                for sock, _, _ in attached:
                    poller.register(sock, _POLLIN)
            drained = self._pump_tun(buffers, batch)
            for sock, local, sink in attached:
                # a read may hold up to 64 datagrams (UDP_GRO): fewer reads per turn
                drained &= self._pump_sock(sock, local, sink, buffers, reads)
            if drained and poller.poll() and self._running:
                _drain_pipe(wake)


def _drain_pipe(fd: int) -> None:
    try:
        os.read(fd, 64)
    except BlockingIOError:
        pass


def _pipe() -> tuple[int, int]:
    r, w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
    return r, w


def _poke(fd: int) -> None:
    try:
        os.write(fd, b"x")
    except OSError:
        pass
