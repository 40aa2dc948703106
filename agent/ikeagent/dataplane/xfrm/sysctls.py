"""The per-namespace sysctls traps need (``/proc/sys/net/core/xfrm_*``), set while the data
plane has traps and put back at close.

``xfrm_larval_drop`` (default 1): what the kernel does with a packet that hits a policy whose
template has no SA yet. 1 drops it (after raising the ACQUIRE); 0 keeps it in the policy's hold
queue (``xdst_queue_output``, at most 100 packets, ``XFRM_MAX_QUEUE_LEN``) and sends it when a
retry of the queue finds the SA (what was measured: ``plane.py``). ``xfrm_acq_expires`` (default 30): seconds the larval state of an ACQUIRE
lives; while it does, the kernel raises no other ACQUIRE for that reqid and those endpoints,
so it is what spaces ACQUIREs out (the contract's ``ACQUIRE_RETRY``).

Both are per network namespace: a process sees (and writes) the values of the namespace it is
in when it opens the file, so for a named namespace the file is opened by a short-lived thread
that entered it (``setns`` changes only the calling thread's namespace). Values are changed
once (the first trap), logged, and restored only if this instance changed them (an agent
killed with traps leaves them set: packets of other daemons' policies without SA are then held
rather than dropped, and ACQUIREs come more often).
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable

log = logging.getLogger(__name__)

SYSCTL_ROOT = "/proc/sys/net/core"
LARVAL_DROP = "xfrm_larval_drop"
ACQ_EXPIRES = "xfrm_acq_expires"


class NamespaceSysctls:
    """Sets sysctls of one network namespace (``netns`` None: the current one) and restores
    them. ``root`` is the sysctl directory (a test passes a directory of its own)."""

    def __init__(self, netns: str | None = None, root: str = SYSCTL_ROOT) -> None:
        self.netns = netns
        self.root = root
        self._saved: dict[str, str] = {}  # name -> value before we changed it
        self._done: set[str] = set()

    def set(self, name: str, value: int, why: str) -> None:
        """Set ``name`` to ``value`` unless done already; a failure is logged, not raised
        (traps work without it, less well)."""
        if name in self._done:
            return
        self._done.add(name)
        path = os.path.join(self.root, name)
        try:
            old = self._in_netns(lambda: _swap(path, str(value)))
        except OSError as exc:
            log.warning("cannot set %s to %d (%s): %s", path, value, why, exc)
            return
        where = f" in netns {self.netns}" if self.netns else ""
        if old == str(value):
            log.info("%s is %s already%s (%s)", name, old, where, why)
            return
        self._saved[name] = old
        log.info("set %s from %s to %d%s: %s", name, old, value, where, why)

    def restore(self) -> None:
        """Put back every value this instance changed."""
        for name, old in self._saved.items():
            path = os.path.join(self.root, name)
            try:
                self._in_netns(lambda p=path, v=old: _swap(p, v))  # type: ignore[misc]
                log.info("restored %s to %s", name, old)
            except OSError as exc:
                log.warning("cannot restore %s to %s: %s", path, old, exc)
        self._saved.clear()
        self._done.clear()

    def changed(self) -> dict[str, str]:
        """name -> the value it had before this instance changed it."""
        return dict(self._saved)

    def _in_netns(self, work: Callable[[], str]) -> str:
        if self.netns is None:
            return work()
        result: list[str | BaseException] = []

        def run() -> None:
            try:
                from pyroute2.netns import setns

                setns(self.netns, flags=0)  # this thread only, and no namespace created
                result.append(work())
            except BaseException as exc:
                result.append(exc)

        thread = threading.Thread(target=run, name="xfrm-sysctl")
        thread.start()
        thread.join()
        got = result[0]
        if isinstance(got, BaseException):
            if isinstance(got, OSError):
                raise got
            raise OSError(f"in netns {self.netns}: {got}") from got
        return got


def _swap(path: str, value: str) -> str:
    """Write ``value`` to ``path`` unless it holds it already; returns the old value."""
    with open(path) as f:
        old = f.read().strip()
    if old != value:
        with open(path, "w") as f:
            f.write(value + "\n")
    return old
