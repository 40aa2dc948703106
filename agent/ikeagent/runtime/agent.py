"""The imperative shell around the sans-I/O engine: sockets, timer, data plane, signals.

After every input (a datagram, the timer, a data-plane event, a control command) the agent
drains the engine: events first (so a CHILD_SA is installed before the message completing it
leaves), then datagrams, then it re-arms its single timer from ``engine.get_timer()``.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import random
import signal
import time
from collections.abc import Callable
from typing import Any, Protocol

from ikeagent.config.errors import ConfigError
from ikeagent.config.model import AgentConfig
from ikeagent.dataplane.base import Dataplane, DataplaneEvent, Endpoint
from ikeagent.engine import events as ev
from ikeagent.runtime import logging as agent_logging
from ikeagent.runtime.control import DEFAULT_SOCKET, ControlServer
from ikeagent.runtime.sockets import NON_ESP_MARKER, Kind, UdpSocket, classify_natt, family_of

log = logging.getLogger(__name__)

# IKE uses port 4500 for NAT-T whatever port the agent listens on for it
STANDARD_NATT_PORT = 4500


class EngineLike(Protocol):
    """The subset of ``ikeagent.engine.core.Engine`` (see ``ikeagent.engine.events``) used here."""

    def load_config(self, config: AgentConfig, now: float) -> None: ...
    def initiate(self, conn_name: str, now: float) -> None: ...
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
    def stats(self) -> dict[str, int]: ...


EngineFactory = Callable[[AgentConfig, float], EngineLike]


def default_engine_factory(config: AgentConfig, now: float) -> EngineLike:
    from ikeagent.engine.core import Engine

    return Engine(config, random.SystemRandom(), now)


class _Waiter:
    """Waits for an IKE SA and a set of children of one connection to come up."""

    def __init__(self, name: str, children: set[str], future: asyncio.Future[None]) -> None:
        self.name, self.children, self.future = name, set(children), future
        self.ike_up = False

    def feed(self, event: ev.Event) -> None:
        if self.future.done():
            return
        if isinstance(event, ev.IkeSaUp) and event.name == self.name:
            self.ike_up = True
        elif isinstance(event, ev.ChildUp) and event.ike_name == self.name:
            self.children.discard(event.name)
        elif isinstance(event, ev.IkeSaDown) and event.name == self.name:
            self.future.set_exception(RuntimeError(f"IKE SA {self.name} failed: {event.reason}"))
            return
        elif (
            isinstance(event, ev.ChildDown)
            and event.ike_name == self.name
            and event.name in self.children
        ):
            self.future.set_exception(RuntimeError(f"CHILD_SA {event.name} failed: {event.reason}"))
            return
        if self.ike_up and not self.children:
            self.future.set_result(None)


class Agent:
    def __init__(
        self,
        config: AgentConfig,
        dataplane: Dataplane,
        *,
        config_loader: Callable[[], AgentConfig] | None = None,
        engine_factory: EngineFactory = default_engine_factory,
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
        self.engine_factory = engine_factory
        self.socket_path = socket_path
        self.listen = listen
        self.shutdown_grace = shutdown_grace
        self.clock = clock
        self.engine: EngineLike | None = None
        self.sockets: list[UdpSocket] = []
        self.control = ControlServer(socket_path, self._command)
        self.started_at = clock()
        self.stats: dict[str, int] = {}
        self.waiters: list[_Waiter] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._deadline: float | None = None
        self._stopping: asyncio.Event | None = None
        self._closed = False

    # --- lifecycle ------------------------------------------------------------------------

    @property
    def port(self) -> int:
        """The IKE port in use (the bound one once started: port 0 picks a free port)."""
        return next((s.port for s in self.sockets if not s.natt), self.config.port)

    @property
    def natt_port(self) -> int:
        return next((s.port for s in self.sockets if s.natt), self.config.natt_port)

    async def start(self) -> None:
        from ikeagent.runtime.commands import COMMANDS  # noqa: F401  (fail early if broken)

        self._loop = asyncio.get_running_loop()
        self._stopping = asyncio.Event()
        self._open_sockets()
        dataplane_started = False
        try:
            self.dataplane.set_event_callback(self._dataplane_wakeup)
            self.dataplane.start()
            dataplane_started = True
            for s in self.sockets:
                if s.natt:
                    self._offer_encap(s)
            for s in self.sockets:
                if not s.read_by_dataplane:
                    self._loop.add_reader(s.sock.fileno(), self._on_readable, s)
            await self.control.start()
            self.engine = self.engine_factory(self.config, self.clock())
        except BaseException:
            self._close_sockets()
            await self.control.close()
            if dataplane_started:
                self.dataplane.close()
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

        def sink(data: bytes, local: Endpoint, remote: Endpoint) -> None:
            with contextlib.suppress(RuntimeError):  # loop closed during shutdown
                loop.call_soon_threadsafe(self._on_ike, data, local, remote)

        s.read_by_dataplane = bool(
            self.dataplane.attach_encap_socket(s.sock, (s.addr, s.port), sink)
        )
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
        self._close_sockets()
        try:
            self.dataplane.close()
        except Exception:
            log.exception("closing the data plane failed")
        log.info("agent stopped")

    def _close_sockets(self) -> None:
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
        self.config = config
        self.engine_call("load_config", config, self.clock())
        self.process()
        log.info("configuration reloaded: %d connection(s)", len(config.connections))
        return config

    # --- inputs ---------------------------------------------------------------------------

    def _count(self, key: str, n: int = 1) -> None:
        self.stats[key] = self.stats.get(key, 0) + n

    def _on_readable(self, s: UdpSocket) -> None:
        for _ in range(64):  # bounded batch, then let others run
            try:
                data, local_ip, remote = s.receive()
            except (BlockingIOError, InterruptedError):
                break
            except OSError as e:  # e.g. ICMP port unreachable reported on the socket
                self._count("rx_errors")
                log.debug("receive on port %d: %s", s.port, e)
                break
            if s.natt:
                kind, data = classify_natt(data)
                if kind != Kind.IKE:
                    self._count("rx_keepalive" if kind == Kind.KEEPALIVE else "rx_esp_unhandled")
                    continue
            self._count("rx_ike")
            self._feed(data, (local_ip, s.port), remote)
        self.process()

    def _on_ike(self, data: bytes, local: Endpoint, remote: Endpoint) -> None:
        """An IKE datagram from the data plane's NAT-T reader (marker already stripped)."""
        if self._closed:
            return
        self._count("rx_ike")
        self._feed(data, local, remote)
        self.process()

    def _feed(self, data: bytes, local: Endpoint, remote: Endpoint) -> None:
        self.engine_call("receive_datagram", data, local, remote, self.clock())

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
        for event in self.dataplane.poll_events():
            log.debug("data plane event %s", event)
            self.engine_call("handle_dataplane_event", event, self.clock())
        self.process()

    def engine_call(self, method: str, *args: Any) -> Any:
        if self.engine is None:
            return None
        try:
            return getattr(self.engine, method)(*args)
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

    def _send(self, d: ev.Datagram) -> None:
        natt = STANDARD_NATT_PORT in (d.local[1], d.remote[1]) or d.local[1] == self.natt_port
        try:
            family = family_of(d.remote[0])
        except ValueError:
            self._count("tx_bad_address")
            log.warning("cannot send to %r: not an IP address", d.remote[0])
            return
        sock = next(
            (s for s in self.sockets if s.natt == natt and s.serves(d.local[0] or None, family)),
            None,
        )
        if sock is None:
            self._count("tx_no_socket")
            log.warning("no socket to send from %s:%d to %s:%d", *d.local, *d.remote)
            return
        data = NON_ESP_MARKER + d.data if natt else d.data
        try:
            sock.send(data, d.local[0], d.remote)
            self._count("tx_ike")
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
        for w in list(self.waiters):
            w.feed(event)

    def _install_child(self, e: ev.InstallChild) -> None:
        log.info("installing CHILD_SA %s reqid %d %r", e.sa.name, e.sa.reqid, e.sa)
        self.dataplane.install_child(e.sa)

    def _delete_child(self, e: ev.DeleteChild) -> None:
        log.info("deleting SA pair reqid %d in %08x out %08x", e.reqid, e.spi_in, e.spi_out)
        self.dataplane.delete_child_sas(e.reqid, e.spi_in, e.spi_out)

    def _remove_policy(self, e: ev.RemovePolicy) -> None:
        log.info("removing policy reqid %d", e.reqid)
        self.dataplane.remove_policy(e.reqid)

    def _log_status(self, e: ev.Event) -> None:
        log.info("%s", _describe(e))

    # --- commands (used by runtime.commands) ------------------------------------------------

    async def _command(self, request: dict[str, Any]) -> Any:
        from ikeagent.runtime.commands import dispatch

        return await dispatch(self, request)

    def now(self) -> float:
        return self.clock()

    async def wait_up(self, name: str, children: set[str], timeout: float) -> None:
        assert self._loop is not None
        waiter = _Waiter(name, children, self._loop.create_future())
        self.waiters.append(waiter)
        try:
            try:
                self.engine.initiate(name, self.clock())  # type: ignore[union-attr]
            except Exception as e:  # unknown connection, unsupported version, ...
                raise RuntimeError(f"{name}: {e.args[0] if e.args else type(e).__name__}")
            finally:
                self.process()
            await asyncio.wait_for(asyncio.shield(waiter.future), timeout)
        finally:
            self.waiters.remove(waiter)

    async def wait_down(self, name: str, timeout: float) -> bool:
        self.engine_call("terminate", name, self.clock())
        self.process()
        deadline = self.clock() + timeout
        while self.clock() < deadline:
            if not any(sa.name == name for sa in self.engine_call("list_sas") or []):
                return True
            await asyncio.sleep(0.05)
        return False


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
    ev.RemovePolicy: Agent._remove_policy,
    ev.IkeSaUp: Agent._log_status,
    ev.IkeSaDown: Agent._log_status,
    ev.ChildUp: Agent._log_status,
    ev.ChildDown: Agent._log_status,
}
