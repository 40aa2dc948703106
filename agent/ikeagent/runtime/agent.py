"""The imperative shell around the sans-I/O engine: sockets, timer, data plane, signals.

After every input (a datagram, the timer, a data-plane event, a control command) the agent
drains the engine: events first (so a CHILD_SA is installed before the message completing it
leaves), then datagrams, then it re-arms its single timer from ``engine.get_timer()``.

The Agent holds the state, the lifecycle and the outputs; the rest lives in mixins:
``Receiver`` (receiver.py: datagrams and data plane events coming in), ``EventHandlers``
(handlers.py: the engine's events applied to the data plane) and ``Waiting`` (waiters.py).
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
from ikeagent.dataplane.base import Dataplane, DataplaneEvent, Endpoint
from ikeagent.engine import events as ev
from ikeagent.runtime import logging as agent_logging
from ikeagent.runtime.control import DEFAULT_SOCKET, ControlServer
from ikeagent.runtime.handlers import EventHandlers
from ikeagent.runtime.receiver import Receiver
from ikeagent.runtime.sockets import NON_ESP_MARKER, UdpSocket, family_of
from ikeagent.runtime.waiters import Waiter, Waiting

log = logging.getLogger(__name__)

# IKE uses port 4500 for NAT-T whatever port the agent listens on for it
STANDARD_NATT_PORT = 4500


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


class Agent(Receiver, EventHandlers, Waiting):
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

    # --- inputs (datagrams and data plane events: receiver.py) ----------------------------

    def _count(self, key: str, n: int = 1) -> None:
        self.stats[key] = self.stats.get(key, 0) + n

    def _on_timer(self) -> None:
        self._timer = None
        self._deadline = None
        self.engine_call("handle_timer", self.clock())
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

    # --- outputs (the engine's events applied: handlers.py) -------------------------------

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

    # --- commands (used by runtime.commands) ------------------------------------------------

    async def _command(self, request: dict[str, Any]) -> Any:
        from ikeagent.runtime.commands import dispatch

        return await dispatch(self, request)

    def now(self) -> float:
        return self.clock()
