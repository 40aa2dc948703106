"""Mixed into the Agent: what comes in. IKE datagrams read from the agent's sockets or handed
over by the data plane's NAT-T reader (queued on its thread, fed to the engine in batches on the
loop), and the data plane's events (its wake-up callback schedules a poll on the loop)."""

from __future__ import annotations

import contextlib
import logging
import threading
from typing import TYPE_CHECKING

from ikeagent.dataplane.base import Endpoint
from ikeagent.runtime.sockets import Kind, UdpSocket, classify_natt

if TYPE_CHECKING:
    from ikeagent.runtime.agent import Agent

# the agent's logger: the log lines keep the name they had before this module was split out
log = logging.getLogger("ikeagent.runtime.agent")

# datagrams handled per wake-up before other callbacks get a turn
RX_BATCH = 64


class Receiver:
    """Feeding the engine what the sockets and the data plane bring; state lives in the agent."""

    def _offer_encap(self: Agent, s: UdpSocket) -> None:
        loop = self._loop
        assert loop is not None  # internal invariant, not peer input
        queue = self._ike_in

        def sink(data: bytes, local: Endpoint, remote: Endpoint) -> threading.Event:
            # runs on the data plane's thread: queue, and wake the loop once per batch (the
            # loop clears the flag before it drains, so nothing queued is left behind); the
            # event is set once the message was handled (ESP behind it may wait for that)
            handled = threading.Event()
            queue.append((data, local, remote, handled))
            if not self._ike_wake:
                self._ike_wake = True
                with contextlib.suppress(RuntimeError):  # loop closed during shutdown
                    loop.call_soon_threadsafe(self._drain_ike)
            return handled

        s.read_by_dataplane = bool(self.dp("attach_encap_socket", s.sock, (s.addr, s.port), sink))
        if s.read_by_dataplane:
            log.debug("data plane reads the NAT-T socket %s:%d", s.addr, s.port)

    def _on_readable(self: Agent, s: UdpSocket) -> None:
        receive = s.receive
        port = s.port
        fed = 0
        for _ in range(RX_BATCH):  # bounded batch, then let others run
            try:
                data, local_ip, remote = receive()
            except (BlockingIOError, InterruptedError):
                break
            except OSError as e:  # e.g. ICMP port unreachable reported on the socket
                self._count("rx_errors")
                log.debug("receive on port %d: %s", port, e)
                break
            if s.natt:
                kind, data = classify_natt(data)
                if kind != Kind.IKE:
                    self._count("rx_keepalive" if kind == Kind.KEEPALIVE else "rx_esp_unhandled")
                    continue
            fed += 1
            self._feed(data, (local_ip, port), remote)
        if fed:
            self._count("rx_ike", fed)
        self.process()

    def _drain_ike(self: Agent) -> None:
        """Feed what the data plane's reader queued (marker already stripped), then drain
        the engine once for the whole batch."""
        self._ike_wake = False
        queue = self._ike_in
        if self._closed:
            while queue:
                queue.popleft()[3].set()
            return
        fed = 0
        handled = []
        while queue and fed < RX_BATCH:
            data, local, remote, done = queue.popleft()
            fed += 1
            handled.append(done)
            self._feed(data, local, remote)
        if queue and not self._ike_wake:  # more than a batch: continue on the next turn
            self._ike_wake = True
            assert self._loop is not None  # internal invariant, not peer input
            self._loop.call_soon(self._drain_ike)
        if fed:
            self._count("rx_ike", fed)
            self.process()
        for done in handled:  # the SAs these messages brought are in the data plane now
            done.set()

    def _feed(self: Agent, data: bytes, local: Endpoint, remote: Endpoint) -> None:
        engine = self.engine
        if engine is None:
            return
        try:
            engine.receive_datagram(data, local, remote, self.clock())
        except Exception:
            self._count("engine_errors")
            log.exception("engine.receive_datagram failed")

    def _dataplane_wakeup(self: Agent) -> None:
        loop = self._loop
        if loop is not None and not self._closed:
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(self._drain_dataplane)

    def _drain_dataplane(self: Agent) -> None:
        if self._closed:
            return
        for event in self.dp("poll_events"):
            log.debug("data plane event %s", event)
            self.engine_call("handle_dataplane_event", event, self.clock())
        self.process()
