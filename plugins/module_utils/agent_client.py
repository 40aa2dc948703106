# Copyright: ikelab.ipsec developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""A client of the agent's control socket (standard library only: runs on managed hosts).

The protocol is the agent's (``ikeagent.runtime.control``): one JSON object per line,
``{"cmd": "list-sas", "name": ...}``, answered by one line ``{"ok": true, "result": ...}`` or
``{"ok": false, "error": "..."}``. ``AgentUnreachable`` means nobody answers on the socket (the
agent is not running, or the path is wrong); ``AgentCommandError`` carries the agent's own
message for a command it refused.

Also here: reading the ``list-sas`` shape (``child_is_up``, ``connection_sas``) and the
``list-traps`` one (``child_trap``, ``trap_state``).
"""

from __future__ import annotations

import errno
import json
import socket
from typing import Any

DEFAULT_SOCKET = "/run/ikelab/ikeagent.sock"
MAX_RESPONSE = 16 << 20
IKE_UP = frozenset({"ESTABLISHED", "REKEYING"})
CHILD_UP = frozenset({"INSTALLED", "REKEYING"})
TRAP_KEYS = (
    "name",
    "child",
    "reqid",
    "local_ts",
    "remote_ts",
    "reason",
    "acquires",
    "last_acquire",
)


class AgentError(Exception):
    """Talking to the agent failed."""


class AgentUnreachable(AgentError):
    """Nobody answers on the control socket."""


class AgentCommandError(AgentError):
    """The agent answered ``ok: false``; the message is the agent's."""

    def __init__(self, cmd: str, message: str) -> None:
        super().__init__(f"{cmd}: {message}")
        self.cmd = cmd
        self.message = message


_NOT_RUNNING = {errno.ENOENT, errno.ECONNREFUSED}


class AgentClient:
    """One request per connection, blocking, each with its own deadline."""

    def __init__(self, path: str = DEFAULT_SOCKET, timeout: float = 10.0) -> None:
        self.path = path
        self.timeout = timeout

    def __repr__(self) -> str:
        return f"AgentClient({self.path!r})"

    def request(self, cmd: str, wait: float | None = None, **args: Any) -> Any:
        """Send ``cmd`` with ``args``; return the ``result`` or raise an ``AgentError``."""
        timeout = self.timeout if wait is None else wait
        line = (json.dumps(dict(args, cmd=cmd), separators=(",", ":")) + "\n").encode()
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(timeout)
        buf = bytearray()
        try:
            try:
                sock.connect(self.path)
            except OSError as e:
                hint = " (is the agent running?)" if e.errno in _NOT_RUNNING else ""
                raise AgentUnreachable(
                    f"cannot reach ikeagent at {self.path}: {e.strerror or e}{hint}"
                )
            try:
                sock.sendall(line)
                while not buf.endswith(b"\n"):
                    chunk = sock.recv(65536)
                    if not chunk:
                        raise AgentError(
                            f"{cmd}: ikeagent closed the control connection without answering"
                        )
                    buf += chunk
                    if len(buf) > MAX_RESPONSE:
                        raise AgentError(f"{cmd}: answer from ikeagent is too long")
            except TimeoutError:
                raise AgentError(f"{cmd}: no answer from ikeagent within {timeout:g}s")
            except OSError as e:
                raise AgentError(f"{cmd}: control connection failed: {e.strerror or e}")
        finally:
            sock.close()
        try:
            response = json.loads(bytes(buf).decode("utf-8"))
        except ValueError:
            response = None
        if not isinstance(response, dict) or not isinstance(response.get("ok"), bool):
            raise AgentError(f"{cmd}: malformed answer from ikeagent")
        if not response["ok"]:
            raise AgentCommandError(cmd, str(response.get("error") or "failed"))
        return response.get("result")

    # --- commands -----------------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        return self.request("status")

    def list_sas(self, name: str | None = None) -> list[dict[str, Any]]:
        result = self.request("list-sas", name=name) if name else self.request("list-sas")
        return _list(result, "list-sas")

    def list_traps(self, name: str | None = None) -> list[dict[str, Any]]:
        """The trap policies (on-demand children): name, child, reqid, local_ts, remote_ts,
        reason, acquires, last_acquire, active (a Child SA is up under the reqid)."""
        result = self.request("list-traps", name=name) if name else self.request("list-traps")
        return _list(result, "list-traps")

    def list_conns(self) -> list[dict[str, Any]]:
        return _list(self.request("list-conns"), "list-conns")

    def up(self, name: str, timeout: float = 30.0) -> list[dict[str, Any]]:
        """Initiate ``name`` and wait until its IKE SA and children are up (the agent waits
        ``timeout`` seconds; the socket a little longer)."""
        return _list(self.request("up", wait=timeout + 5.0, name=name, timeout=timeout), "up")

    def down(self, name: str, timeout: float = 5.0) -> dict[str, Any]:
        result = self.request("down", wait=timeout + 5.0, name=name, timeout=timeout)
        return result if isinstance(result, dict) else {"terminated": bool(result)}

    def reload(self) -> dict[str, Any]:
        result = self.request("reload")
        return result if isinstance(result, dict) else {}


def _list(result: Any, cmd: str) -> list[dict[str, Any]]:
    if not isinstance(result, list):
        raise AgentError(f"{cmd}: expected a list from ikeagent, got {type(result).__name__}")
    return [r for r in result if isinstance(r, dict)]


# --- reading list-sas ----------------------------------------------------------------------------


def connection_sas(sas: list[dict[str, Any]], name: str) -> list[dict[str, Any]]:
    return [sa for sa in sas if sa.get("name") == name]


def child_is_up(sas: list[dict[str, Any]], name: str, child: str) -> bool:
    """True when an IKE SA of ``name`` is established with its child ``child`` installed."""
    for sa in connection_sas(sas, name):
        if sa.get("state") not in IKE_UP:
            continue
        for c in sa.get("children") or []:
            if isinstance(c, dict) and c.get("name") == child and c.get("state") in CHILD_UP:
                return True
    return False


def child_trap(traps: list[dict[str, Any]], name: str, child: str) -> dict[str, Any] | None:
    """The trap policy of ``name``'s child ``child`` in a ``list-traps`` answer, if armed."""
    for trap in traps:
        if trap.get("name") == name and trap.get("child") == child:
            return trap
    return None


def trap_state(trap: dict[str, Any]) -> dict[str, Any]:
    """A trap as the modules report it: ``state`` is ``active`` while a Child SA is up under its
    reqid, else ``trapped`` (nothing negotiated yet: the next matching packet starts it)."""
    return {
        "state": "active" if trap.get("active") else "trapped",
        **{k: trap.get(k) for k in TRAP_KEYS if k in trap},
    }


class SaInfo:
    """Backend of ``sa_info``: read-only (``needs_change()`` is always False)."""

    def __init__(self, client: AgentClient, name: str | None = None) -> None:
        self.client = client
        self.name = name or None
        self.sas: list[dict[str, Any]] = []
        self.connections: list[dict[str, Any]] = []
        self.agent: dict[str, Any] = {}

    def needs_change(self) -> bool:
        return False

    def apply(self) -> None:
        """Read the SAs, the connections and the agent's status (raises ``AgentError``)."""
        self.sas = self.client.list_sas(self.name)
        conns = self.client.list_conns()
        self.connections = [c for c in conns if self.name is None or c.get("name") == self.name]
        status = self.client.status()
        self.agent = status if isinstance(status, dict) else {}

    def dump(self) -> dict[str, Any]:
        return {
            "changed": False,
            "sas": self.sas,
            "connections": self.connections,
            "agent": self.agent,
        }
