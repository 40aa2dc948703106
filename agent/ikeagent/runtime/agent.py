"""The imperative shell around the sans-I/O engine: sockets, timer, data plane, signals.

After every input (a datagram, the timer, a data-plane event, a control command) the agent
drains the engine: events first (so a CHILD_SA is installed before the message completing it
leaves), then datagrams, then it re-arms its single timer from ``engine.get_timer()``.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import ipaddress
import logging
import random
import signal
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Protocol

from ikeagent.config.errors import ConfigError
from ikeagent.config.model import AgentConfig
from ikeagent.dataplane.base import Dataplane, DataplaneEvent, Endpoint, SaUsage
from ikeagent.engine import events as ev
from ikeagent.runtime import logging as agent_logging
from ikeagent.runtime.control import DEFAULT_SOCKET, ControlServer
from ikeagent.runtime.sockets import NON_ESP_MARKER, Kind, UdpSocket, classify_natt, family_of
from ikeagent.runtime.waiters import Waiter, Waiting

log = logging.getLogger(__name__)

# IKE uses port 4500 for NAT-T whatever port the agent listens on for it
STANDARD_NATT_PORT = 4500
# datagrams handled per wake-up before other callbacks get a turn
RX_BATCH = 64


class EngineLike(Protocol):
    """The subset of ``ikeagent.engine.core.Engine`` (see ``ikeagent.engine.events``) used here."""

    def load_config(self, config: AgentConfig, now: float) -> None: ...
    def initiate(self, conn_name: str, now: float, children: list[str] | None = None) -> None: ...
    def terminate(self, conn_name: str, now: float) -> None: ...
    def rekey(self, conn_name: str, now: float) -> None: ...
    def receive_datagram(
        self, data: bytes, local: Endpoint, remote: Endpoint, now: float
    ) -> None: ...
    def handle_timer(self, now: float) -> None: ...
    def handle_dataplane_event(self, event: DataplaneEvent, now: float) -> None: ...
    def datagrams_to_send(self) -> list[ev.Datagram]: ...
    def next_event(self) -> ev.Event | None: ...
    def get_timer(self) -> float | None: ...
    def list_sas(self) -> list[ev.IkeSaStatus]: ...
    def list_traps(self) -> list[ev.TrapStatus]: ...
    def stats(self) -> dict[str, int]: ...


EngineFactory = Callable[[AgentConfig, float], EngineLike]


def default_engine_factory(
    config: AgentConfig, now: float, *, force_encap: bool = False
) -> EngineLike:
    from ikeagent.engine.core import Engine

    return Engine(config, random.SystemRandom(), now, force_encap=force_encap, wall_clock=time.time)


def needs_udp_encap(dataplane: Dataplane) -> bool:
    """Whether the data plane only carries UDP-encapsulated ESP (the userspace one, like
    strongSwan's kernel-libipsec), so the engine must always negotiate UDP encapsulation."""
    return bool(getattr(dataplane, "requires_udp_encap", dataplane.name == "userspace"))


class Agent(Waiting):
    def __init__(
        self,
        config: AgentConfig,
        dataplane: Dataplane,
        *,
        config_loader: Callable[[], AgentConfig] | None = None,
        engine_factory: EngineFactory | None = None,
        socket_path: str = DEFAULT_SOCKET,
        listen: tuple[str, ...] = ("0.0.0.0", "::"),
        dataplane_reason: str = "",
        shutdown_grace: float = 2.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.config = config
        self.dataplane = dataplane
        self.dataplane_reason = dataplane_reason
        self.config_loader = config_loader
        self.engine_factory = engine_factory or functools.partial(
            default_engine_factory, force_encap=needs_udp_encap(dataplane)
        )
        self.socket_path = socket_path
        self.listen = listen
        self.shutdown_grace = shutdown_grace
        self.clock = clock
        self.engine: EngineLike | None = None
        self.sockets: list[UdpSocket] = []
        self.control = ControlServer(socket_path, self._command)
        self.started_at = clock()
        self.stats: dict[str, int] = {}
        self.waiters: list[Waiter] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._deadline: float | None = None
        self._stopping: asyncio.Event | None = None
        self._closed = False
        # IKE datagrams handed over by the data plane's thread: appended there, drained here;
        # one loop wake-up per batch (``_ike_wake`` is set while one is scheduled)
        self._ike_in: deque[tuple[bytes, Endpoint, Endpoint, threading.Event]] = deque()
        self._ike_wake = False
        # (local endpoint, remote ip, remote port is 4500) -> (socket, NAT-T framing)
        self._routes: dict[tuple[Endpoint, str, bool], tuple[UdpSocket, bool]] = {}
        # every data-plane call runs on this one thread: backends using pyroute2 (whose sync
        # API runs its own asyncio loop) cannot be called from the agent's running loop
        self._dp_thread = ThreadPoolExecutor(1, thread_name_prefix="ikeagent-dataplane")

    def dp(self, method: str, *args: Any) -> Any:
        """Call a data-plane method on the data-plane thread and wait for its result (or
        directly, for data planes whose calls never block on netlink)."""
        if method not in ("start", "close") and getattr(self.dataplane, "inline_calls", False):
            return getattr(self.dataplane, method)(*args)
        return self._dp_thread.submit(getattr(self.dataplane, method), *args).result()

    # --- lifecycle ------------------------------------------------------------------------

    @property
    def port(self) -> int:
        """The IKE port in use (the bound one once started: port 0 picks a free port)."""
        return next((s.port for s in self.sockets if not s.natt), self.config.port)

    @property
    def natt_port(self) -> int:
        return next((s.port for s in self.sockets if s.natt), self.config.natt_port)

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stopping = asyncio.Event()
        self._open_sockets()
        dataplane_started = False
        try:
            self.dataplane.set_event_callback(self._dataplane_wakeup)
            self.dp("start")
            dataplane_started = True
            for s in self.sockets:
                if s.natt:
                    self._offer_encap(s)
            for s in self.sockets:
                if not s.read_by_dataplane:
                    self._loop.add_reader(s.sock.fileno(), self._on_readable, s)
            await self.control.start()
            for warning in self.config.warnings():
                log.error("%s", warning)
            self.engine = self.engine_factory(self.config, self.clock())
        except BaseException:
            self._close_sockets()
            await self.control.close()
            if dataplane_started:
                self.dp("close")
            self._dp_thread.shutdown(wait=True)
            raise
        if hasattr(self.engine, "start"):  # start_action=start connections
            self.engine_call("start", self.clock())
        log.info(
            "agent started: %d connection(s), data plane %s, ports %d/%d",
            len(self.config.connections),
            self.dataplane.name,
            self.port,
            self.natt_port,
        )
        self.process()

    def _open_sockets(self) -> None:
        ports = {False: self.config.port, True: self.config.natt_port}
        for addr in self.listen:
            for natt, port in list(ports.items()):
                try:
                    s = UdpSocket.open(addr, port, natt)
                    self.sockets.append(s)
                    ports[natt] = s.port  # port 0: every address gets the port first chosen
                except OSError as e:
                    if (
                        ipaddress.ip_address(addr).version == 6
                        and ipaddress.ip_address(addr).is_unspecified
                    ):
                        log.warning("not listening on [%s]:%d: %s", addr, port, e.strerror)
                        continue
                    self._close_sockets()
                    raise OSError(e.errno, f"cannot bind {addr} port {port}: {e.strerror}")
        if not self.sockets:
            raise OSError("no UDP socket could be bound")

    def _offer_encap(self, s: UdpSocket) -> None:
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

    async def run(self, install_signal_handlers: bool = True) -> None:
        """Start, serve until SIGTERM/SIGINT or ``request_stop()``, then shut down."""
        await self.start()
        loop = asyncio.get_running_loop()
        if install_signal_handlers:
            loop.add_signal_handler(signal.SIGHUP, self._on_sighup)
            loop.add_signal_handler(signal.SIGTERM, self.request_stop)
            loop.add_signal_handler(signal.SIGINT, self.request_stop)
        try:
            assert self._stopping is not None
            await self._stopping.wait()
        finally:
            if install_signal_handlers:
                for sig in (signal.SIGHUP, signal.SIGTERM, signal.SIGINT):
                    loop.remove_signal_handler(sig)
            await self.shutdown()

    def request_stop(self) -> None:
        if self._stopping is not None:
            self._stopping.set()

    def _on_sighup(self) -> None:
        log.info("SIGHUP: reloading the configuration")
        try:
            self.reload()
        except ConfigError:
            pass  # logged by reload(); the running configuration stays

    async def shutdown(self) -> None:
        """Delete every IKE SA (waiting briefly for the peers), then release everything."""
        if self._closed:
            return
        if self.engine is not None:
            names = {sa.name for sa in self.engine_call("list_sas") or []}
            if hasattr(self.engine, "shutdown"):
                self.engine_call("shutdown", self.clock())
            else:
                for name in sorted(names):
                    self.engine_call("terminate", name, self.clock())
            self.process()
            deadline = self.clock() + self.shutdown_grace
            while names and self.clock() < deadline and self.engine_call("list_sas"):
                await asyncio.sleep(0.05)
        self._closed = True
        if self._timer is not None:
            self._timer.cancel()
        for w in self.waiters:
            if not w.future.done():
                w.future.set_exception(RuntimeError("the agent is shutting down"))
        await self.control.close()
        try:  # first: a data plane reading the NAT-T socket stops before the socket closes
            self.dp("close")
        except Exception:
            log.exception("closing the data plane failed")
        self._dp_thread.shutdown(wait=True)
        self._close_sockets()
        log.info("agent stopped")

    def _close_sockets(self) -> None:
        self._routes.clear()
        for s in self.sockets:
            if not s.read_by_dataplane and self._loop is not None:
                with contextlib.suppress(Exception):
                    self._loop.remove_reader(s.sock.fileno())
            s.close()
        self.sockets.clear()

    # --- configuration --------------------------------------------------------------------

    def reload(self) -> AgentConfig:
        """Re-read the configuration and apply it; a bad one is logged and raised, and the
        running configuration stays."""
        if self.config_loader is None:
            raise ConfigError([("", "the agent was started without a configuration file")])
        try:
            config = self.config_loader()
        except ConfigError as e:
            log.error("reload rejected, keeping the running configuration:\n%s", e)
            raise
        for key in ("port", "natt_port", "dataplane"):
            if getattr(config, key) != getattr(self.config, key):
                log.warning("agent.%s changes only take effect after a restart", key)
        agent_logging.set_level(config.log_level)
        for warning in config.warnings():
            log.error("%s", warning)
        self.config = config
        self.engine_call("load_config", config, self.clock())
        self.process()
        log.info("configuration reloaded: %d connection(s)", len(config.connections))
        return config

    # --- inputs ---------------------------------------------------------------------------

    def _count(self, key: str, n: int = 1) -> None:
        self.stats[key] = self.stats.get(key, 0) + n

    def _on_readable(self, s: UdpSocket) -> None:
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

    def _on_ike(self, data: bytes, local: Endpoint, remote: Endpoint) -> None:
        """An IKE datagram from the data plane's NAT-T reader (marker already stripped)."""
        if self._closed:
            return
        self._count("rx_ike")
        self._feed(data, local, remote)
        self.process()

    def _drain_ike(self) -> None:
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

    def _feed(self, data: bytes, local: Endpoint, remote: Endpoint) -> None:
        engine = self.engine
        if engine is None:
            return
        try:
            engine.receive_datagram(data, local, remote, self.clock())
        except Exception:
            self._count("engine_errors")
            log.exception("engine.receive_datagram failed")

    def _on_timer(self) -> None:
        self._timer = None
        self._deadline = None
        self.engine_call("handle_timer", self.clock())
        self.process()

    def _dataplane_wakeup(self) -> None:
        loop = self._loop
        if loop is not None and not self._closed:
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(self._drain_dataplane)

    def _drain_dataplane(self) -> None:
        if self._closed:
            return
        for event in self.dp("poll_events"):
            log.debug("data plane event %s", event)
            self.engine_call("handle_dataplane_event", event, self.clock())
        self.process()

    def engine_call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        """Call the engine; an exception is logged and counted (a bug must not stop the
        agent) and gives None."""
        if self.engine is None:
            return None
        try:
            return getattr(self.engine, method)(*args, **kwargs)
        except Exception:
            self._count("engine_errors")
            log.exception("engine.%s failed", method)
            return None

    # --- outputs --------------------------------------------------------------------------

    def process(self) -> None:
        """Drain the engine's events and datagrams, then re-arm the timer."""
        if self.engine is None or self._closed:
            return
        for _ in range(10000):  # a runaway engine must not hang the loop
            event = self.engine_call("next_event")
            if event is None:
                break
            self._apply(event)
        for dgram in self.engine_call("datagrams_to_send") or []:
            self._send(dgram)
        self._arm_timer(self.engine_call("get_timer"))

    def _arm_timer(self, deadline: float | None) -> None:
        if deadline == self._deadline and (self._timer is not None or deadline is None):
            return
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._deadline = deadline
        if deadline is not None and self._loop is not None:
            self._timer = self._loop.call_later(max(0.0, deadline - self.clock()), self._on_timer)

    def _socket_for(self, d: ev.Datagram) -> tuple[UdpSocket, bool] | None:
        """The socket to send ``d`` from and whether it is the NAT-T one (cached per local
        endpoint, remote address and remote port class); None after counting the failure."""
        key = (d.local, d.remote[0], d.remote[1] == STANDARD_NATT_PORT)
        found = self._routes.get(key)
        if found is not None:
            return found
        natt = STANDARD_NATT_PORT in (d.local[1], d.remote[1]) or d.local[1] == self.natt_port
        try:
            family = family_of(d.remote[0])
        except ValueError:
            self._count("tx_bad_address")
            log.warning("cannot send to %r: not an IP address", d.remote[0])
            return None
        sock = next(
            (s for s in self.sockets if s.natt == natt and s.serves(d.local[0] or None, family)),
            None,
        )
        if sock is None:
            self._count("tx_no_socket")
            log.warning("no socket to send from %s:%d to %s:%d", *d.local, *d.remote)
            return None
        if len(self._routes) >= 4096:
            self._routes.clear()
        self._routes[key] = found = (sock, natt)
        return found

    def _send(self, d: ev.Datagram) -> None:
        found = self._socket_for(d)
        if found is None:
            return
        sock, natt = found
        data = NON_ESP_MARKER + d.data if natt and not d.raw else d.data
        try:
            sock.send(data, d.local[0], d.remote)
            self._count("tx_keepalive" if d.raw else "tx_ike")
        except OSError as e:
            self._count("tx_errors")
            log.warning("send to %s:%d failed: %s", d.remote[0], d.remote[1], e.strerror or e)

    def _apply(self, event: ev.Event) -> None:
        handler = _EVENT_HANDLERS.get(type(event))
        if handler is None:
            log.warning("unhandled engine event %r", event)
            return
        try:
            handler(self, event)
        except Exception:
            self._count("dataplane_errors")
            log.exception("applying %s failed", type(event).__name__)
        if self.waiters:
            for w in list(self.waiters):
                w.feed(event)

    def _install_child(self, e: ev.InstallChild) -> None:
        log.info(
            "installing CHILD_SA %s reqid %d SPIs in %08x out %08x",
            e.sa.name,
            e.sa.reqid,
            e.sa.inbound.spi,
            e.sa.outbound.spi,
        )
        self.dp("install_child", e.sa)

    def _delete_child(self, e: ev.DeleteChild) -> None:
        log.info("deleting SA pair reqid %d in %08x out %08x", e.reqid, e.spi_in, e.spi_out)
        self.dp("delete_child_sas", e.reqid, e.spi_in, e.spi_out)

    def _activate_outbound(self, e: ev.ActivateOutbound) -> None:
        log.info("sending on SA pair reqid %d in %08x out %08x", e.reqid, e.spi_in, e.spi_out)
        self.dp("activate_outbound", e.reqid, e.spi_in, e.spi_out)

    def _remove_policy(self, e: ev.RemovePolicy) -> None:
        log.info("removing policy reqid %d", e.reqid)
        self.dp("remove_policy", e.reqid)

    def _install_trap(self, e: ev.InstallTrap) -> None:
        log.info(
            "installing trap policy %s reqid %d: %s === %s",
            e.trap.name,
            e.trap.reqid,
            ", ".join(map(str, e.trap.local_ts)),
            ", ".join(map(str, e.trap.remote_ts)),
        )
        self.dp("install_trap", e.trap)

    def _query_usage(self, e: ev.QueryUsage) -> None:
        """Answer the engine at once with the pair's use (it decides on ``inactivity``)."""
        try:
            c = self.dp("counters", e.reqid, e.spi_in, e.spi_out)
            usage = SaUsage(e.reqid, e.spi_in, e.spi_out, c.last_used, c.packets_in + c.packets_out)
        except KeyError:
            usage = SaUsage(e.reqid, e.spi_in, e.spi_out, None, None)
        self.engine_call("handle_dataplane_event", usage, self.clock())

    def _log_status(self, e: ev.Event) -> None:
        if log.isEnabledFor(logging.INFO):  # no text built for a level that is off
            log.info("%s", _describe(e))

    # --- commands (used by runtime.commands) ------------------------------------------------

    async def _command(self, request: dict[str, Any]) -> Any:
        from ikeagent.runtime.commands import dispatch

        return await dispatch(self, request)

    def now(self) -> float:
        return self.clock()


def _describe(e: ev.Event) -> str:
    if isinstance(e, ev.IkeSaUp):
        return f"IKE SA {e.name}[{e.uid}] established"
    if isinstance(e, ev.IkeSaDown):
        return f"IKE SA {e.name}[{e.uid}] down: {e.reason}"
    if isinstance(e, ev.ChildUp):
        return f"CHILD_SA {e.ike_name}/{e.name} reqid {e.reqid} up"
    if isinstance(e, ev.ChildDown):
        return f"CHILD_SA {e.ike_name}/{e.name} reqid {e.reqid} down: {e.reason}"
    return repr(e)


_EVENT_HANDLERS: dict[type, Callable[[Agent, Any], None]] = {
    ev.InstallChild: Agent._install_child,
    ev.DeleteChild: Agent._delete_child,
    ev.ActivateOutbound: Agent._activate_outbound,
    ev.RemovePolicy: Agent._remove_policy,
    ev.InstallTrap: Agent._install_trap,
    ev.QueryUsage: Agent._query_usage,
    ev.IkeSaUp: Agent._log_status,
    ev.IkeSaDown: Agent._log_status,
    ev.ChildUp: Agent._log_status,
    ev.ChildDown: Agent._log_status,
}
