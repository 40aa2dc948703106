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
once (the first trap), logged, and restored only if this instance changed them. With a
``state_path`` the values it replaced are also written there (0600) until they are restored: an
agent killed with traps would leave them set (packets of other daemons' policies without SA
held rather than dropped, ACQUIREs more often), and the next one puts them back at its start
(``recover``).
"""

from __future__ import annotations

import json
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

    def __init__(
        self, netns: str | None = None, root: str = SYSCTL_ROOT, state_path: str | None = None
    ) -> None:
        self.netns = netns
        self.root = root
        self.state_path = state_path
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
        self._write_state()
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
        self._write_state()

    def recover(self) -> dict[str, str]:
        """Put back the values an earlier instance changed and never restored (it was killed):
        those ``state_path`` still holds. Returns them."""
        if self.state_path is None:
            return {}
        try:
            with open(self.state_path) as f:
                left = json.load(f)
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            log.warning("cannot read %s: %s", self.state_path, exc)
            return {}
        done: dict[str, str] = {}
        for name, old in left.items() if isinstance(left, dict) else ():
            if name not in (LARVAL_DROP, ACQ_EXPIRES) or not str(old).isdigit():
                continue  # only ours, and only numbers, go back into /proc
            path = os.path.join(self.root, name)
            try:
                self._in_netns(lambda p=path, v=str(old): _swap(p, v))  # type: ignore[misc]
            except OSError as exc:
                log.warning("cannot restore %s to %s: %s", name, old, exc)
                continue
            done[name] = str(old)
        if done:
            log.warning(
                "restored %s: an earlier agent was stopped before it put them back",
                ", ".join(f"{k} to {v}" for k, v in done.items()),
            )
        self._write_state()
        return done

    def _write_state(self) -> None:
        """Record the values to put back (none: no file)."""
        if self.state_path is None:
            return
        try:
            if not self._saved:
                if os.path.exists(self.state_path):
                    os.unlink(self.state_path)
                return
            directory = os.path.dirname(os.path.abspath(self.state_path))
            os.makedirs(directory, mode=0o700, exist_ok=True)
            tmp = f"{self.state_path}.tmp"
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as f:
                json.dump(self._saved, f)
            os.replace(tmp, self.state_path)
        except OSError as exc:
            log.warning("cannot record the sysctls to restore in %s: %s", self.state_path, exc)

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
