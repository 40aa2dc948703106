"""The control socket: a UNIX stream socket speaking JSON lines.

Each request is one line ``{"cmd": "status"}`` (with arguments such as ``"name"`` and
``"timeout"``); each gets one response line ``{"ok": true, "result": ...}`` or
``{"ok": false, "error": "..."}``. A connection may carry several requests in turn.
The socket is created with mode 0600 in a directory of mode 0700 (created when missing).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import socket
import stat
from collections.abc import Awaitable, Callable
from typing import Any

DEFAULT_SOCKET = "/run/ikeagent/ikeagent.sock"
MAX_LINE = 1 << 20

log = logging.getLogger(__name__)

Handler = Callable[[dict[str, Any]], Awaitable[Any]]


class CommandError(Exception):
    """A command failed; the message goes back to the client."""


class ControlServer:
    def __init__(self, path: str, handler: Handler) -> None:
        self.path = path
        self.handler = handler
        self._server: asyncio.AbstractServer | None = None
        self._clients: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        directory = os.path.dirname(os.path.abspath(self.path))
        if not os.path.isdir(directory):
            os.makedirs(directory, mode=0o700, exist_ok=True)
            os.chmod(directory, 0o700)
        self._remove_stale()
        old_umask = os.umask(0o177)
        try:
            self._server = await asyncio.start_unix_server(self._serve, self.path, limit=MAX_LINE)
        finally:
            os.umask(old_umask)
        os.chmod(self.path, 0o600)
        log.info("control socket at %s", self.path)

    def _remove_stale(self) -> None:
        try:
            st = os.lstat(self.path)
        except FileNotFoundError:
            return
        if not stat.S_ISSOCK(st.st_mode):
            raise RuntimeError(f"{self.path} exists and is not a socket")
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            probe.connect(self.path)
        except OSError:
            os.unlink(self.path)  # stale: nobody listens
        else:
            raise RuntimeError(f"another agent is listening on {self.path}")
        finally:
            probe.close()

    async def close(self) -> None:
        if self._server is None:
            return  # never started: the path may belong to another agent
        self._server.close()
        for task in list(self._clients):
            task.cancel()
        with contextlib.suppress(Exception):
            await self._server.wait_closed()
        self._server = None
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._clients.add(task)
        try:
            while True:
                try:
                    line = await reader.readline()
                except (ValueError, asyncio.LimitOverrunError):
                    writer.write(_encode({"ok": False, "error": "request line too long"}))
                    break
                if not line:
                    break
                if not line.strip():
                    continue
                writer.write(_encode(await self.respond(line)))
                await writer.drain()
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            if task is not None:
                self._clients.discard(task)
            with contextlib.suppress(Exception):
                writer.close()

    async def respond(self, line: bytes) -> dict[str, Any]:
        try:
            request = json.loads(line)
        except ValueError:
            return {"ok": False, "error": "request is not valid JSON"}
        if not isinstance(request, dict) or not isinstance(request.get("cmd"), str):
            return {"ok": False, "error": 'request must be an object with a "cmd" string'}
        try:
            return {"ok": True, "result": await self.handler(request)}
        except CommandError as e:
            return {"ok": False, "error": str(e)}
        except Exception as e:  # a bug must not take the agent down
            log.exception("control command %r failed", request.get("cmd"))
            return {"ok": False, "error": f"internal error: {type(e).__name__}"}


def _encode(obj: Any) -> bytes:
    return (json.dumps(obj, separators=(",", ":")) + "\n").encode()


class Unreachable(Exception):
    """The agent's control socket cannot be reached."""


def request(
    path: str, cmd: str, args: dict[str, Any] | None = None, *, wait: float = 10.0
) -> dict[str, Any]:
    """Send one request (``cmd`` plus ``args``) and return the decoded response, waiting at
    most ``wait`` seconds (blocking; for ikectl)."""
    timeout = wait
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    try:
        try:
            sock.connect(path)
        except OSError as e:
            raise Unreachable(f"cannot connect to {path}: {e.strerror or e}")
        sock.sendall(_encode({**(args or {}), "cmd": cmd}))
        buf = bytearray()
        while not buf.endswith(b"\n"):
            chunk = sock.recv(65536)
            if not chunk:
                raise Unreachable("the agent closed the connection without answering")
            buf += chunk
    except TimeoutError:
        raise Unreachable(f"no answer from the agent within {timeout:g}s")
    finally:
        sock.close()
    try:
        response = json.loads(buf)
    except ValueError:
        response = None
    if not isinstance(response, dict) or "ok" not in response:
        raise Unreachable("malformed response from the agent")
    return response
