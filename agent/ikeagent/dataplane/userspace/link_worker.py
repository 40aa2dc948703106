"""The userspace data plane's netlink side on a thread of its own.

pyroute2 handles (link set-up, routes, rules) are created, used and closed on this one thread,
in the order the data plane asked for them. Installing or removing an SA pair therefore never
waits for netlink: the SA database changes at once (inbound ESP works from then on) and the
routes follow within a moment, in order. ``flush()`` waits until everything queued is done.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from typing import Any

from ..base import ChildSa, TrapPolicy
from .routes import Routes
from .tun import configure_link

log = logging.getLogger(__name__)

_STOP = object()


class LinkWorker:
    def __init__(
        self, ifname: str, mtu: int, manage_routes: bool, table: int, priority: int
    ) -> None:
        self.ifname = ifname
        self.mtu = mtu
        self.manage_routes = manage_routes
        self.table = table
        self.priority = priority
        self.ifindex = 0
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._route_keys: dict[int, list[str]] = {}

    def start(self) -> int:
        """Configure the TUN link (and the routing rule) on the worker; returns its ifindex."""
        self._thread = threading.Thread(
            target=self._run, name=f"netlink-{self.ifname}", daemon=True
        )
        self._thread.start()
        self._ready.wait()
        if self._error is not None:
            self._thread.join(timeout=5)
            raise self._error
        return self.ifindex

    def add_routes(self, reqid: int, child: ChildSa | TrapPolicy) -> None:
        self._queue.put(("add", reqid, child))

    def remove_routes(self, reqid: int) -> None:
        self._queue.put(("remove", reqid, None))

    def call(self, fn: Callable[[], Any]) -> None:
        self._queue.put(("call", 0, fn))

    def flush(self, timeout: float = 10.0) -> None:
        """Wait until everything queued is applied, lingering unused routes included."""
        done = threading.Event()
        self._queue.put(("flush", 0, done.set))
        done.wait(timeout)

    def stop(self) -> None:
        """Remove every route and the rule, close the netlink handle, end the thread."""
        if self._thread is None:
            return
        self._queue.put(_STOP)
        self._thread.join(timeout=10)
        self._thread = None

    def _run(self) -> None:
        from pyroute2 import IPRoute

        ipr = None
        routes: Routes | None = None
        try:
            ipr = IPRoute()
            self.ifindex = configure_link(ipr, self.ifname, self.mtu)
            if self.manage_routes:
                routes = Routes(ipr, self.ifindex, self.table, self.priority)
                routes.setup()
        except BaseException as exc:  # handed to start()
            self._error = exc
            if ipr is not None:
                ipr.close()
            self._ready.set()
            return
        self._ready.set()
        try:
            while True:
                timeout = None
                if routes is not None and (expiry := routes.next_expiry()) is not None:
                    timeout = max(0.0, expiry - time.monotonic())
                try:
                    item = self._queue.get(timeout=timeout)
                except queue.Empty:
                    routes.expire(time.monotonic())  # type: ignore[union-attr]
                    continue
                if item is _STOP:
                    break
                op, reqid, arg = item
                try:
                    if op == "add" and routes is not None:
                        self._route_keys[reqid] = routes.add_child(arg)
                    elif op == "remove" and routes is not None:
                        keys = self._route_keys.pop(reqid, None)
                        if keys:
                            routes.remove(keys)
                    elif op == "call":
                        arg()
                    elif op == "flush":
                        if routes is not None:
                            routes.expire()
                        arg()
                except Exception:
                    log.exception("netlink operation %s for reqid %d failed", op, reqid)
        finally:
            if routes is not None:
                for reqid in list(self._route_keys):
                    routes.remove(self._route_keys.pop(reqid))
                routes.teardown()
            ipr.close()
