"""The host side of the command channel to a UML guest's server (``uml_guest.py``): a TCP
connection opened from inside the lab namespace, and the results and processes it hands back.
"""

from __future__ import annotations

import ctypes
import os
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ikelab_testing.uml import Guest

PORT = 7000  # the guest server's port (uml_guest.PORT)
CLONE_NEWNET = 0x40000000


@dataclass(frozen=True, slots=True)
class RunResult:
    """What ``Guest.run`` returns; unpacks as ``rc, out, err``."""

    args: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str

    def __iter__(self) -> Iterator[int | str]:
        return iter((self.returncode, self.stdout, self.stderr))

    def check_returncode(self) -> None:
        if self.returncode != 0:
            raise subprocess.CalledProcessError(
                self.returncode, list(self.args), self.stdout, self.stderr
            )


class GuestError(RuntimeError):
    """The guest did not boot, died, or its server refused a request."""


def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(None, use_errno=True)


def connect_in(netns_name: str, address: str, timeout: float) -> socket.socket:
    """A TCP connection made from inside ``netns_name`` (the caller's namespace is untouched:
    the socket is created by a short-lived thread that entered the namespace)."""
    result: list[socket.socket | BaseException] = []

    def work() -> None:
        try:
            fd = os.open(f"/run/netns/{netns_name}", os.O_RDONLY)
            try:
                if _libc().setns(fd, CLONE_NEWNET) != 0:
                    err = ctypes.get_errno()
                    raise OSError(err, os.strerror(err), netns_name)
            finally:
                os.close(fd)
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            result.append(sock)
        except BaseException as exc:
            result.append(exc)

    t = threading.Thread(target=work, name=f"connect-{netns_name}")
    t.start()
    t.join()
    got = result[0]
    if isinstance(got, BaseException):
        raise got
    try:
        got.settimeout(timeout)
        got.connect((address, PORT))
    except BaseException:
        got.close()
        raise
    return got


class GuestProcess:
    """A long-running process started with ``Guest.spawn``."""

    def __init__(self, guest: Guest, pid: int, argv: Sequence[str], log_path: Path) -> None:
        self.guest = guest
        self.pid = pid
        self.argv = tuple(argv)
        self.log_path = log_path

    def __repr__(self) -> str:
        return f"GuestProcess({self.guest.name!r}, pid={self.pid}, {self.argv[0]!r})"

    def poll(self) -> int | None:
        return self.guest._request({"op": "poll", "pid": self.pid})["returncode"]

    def signal(self, sig: int = signal.SIGTERM, group: bool = True) -> None:
        self.guest._request({"op": "signal", "pid": self.pid, "sig": int(sig), "group": group})

    def wait(self, timeout: float) -> int | None:
        deadline = time.monotonic() + timeout
        while True:
            rc = self.poll()
            if rc is not None or time.monotonic() > deadline:
                return rc
            time.sleep(0.1)

    def stop(self, timeout: float = 10.0) -> int | None:
        """SIGTERM to its process group, SIGKILL after ``timeout``; returns the exit code."""
        if not self.guest.alive():
            return None
        self.signal(signal.SIGTERM)
        rc = self.wait(timeout)
        if rc is None:
            self.signal(signal.SIGKILL)
            rc = self.wait(10)
        return rc

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def wait_log(self, text: str, timeout: float = 120.0) -> str:
        """The log once it holds ``text``; AssertionError if the process exits first or the
        deadline passes."""
        deadline = time.monotonic() + timeout
        while text not in self.log_text():
            assert self.poll() is None, f"{self} exited: {self.log_text()}"
            assert time.monotonic() < deadline, f"{self}: no {text!r} in {self.log_text()!r}"
            time.sleep(0.2)
        return self.log_text()
