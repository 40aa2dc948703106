"""Control commands, dispatched by name from the control socket.

Requests and results (``ok: true``):

- ``{"cmd": "status"}`` -> version, pid, uptime, config path, dataplane {name, reason},
  ike_sas, child_sas, connections, stats {agent, engine, dataplane}.
- ``{"cmd": "list-sas"}`` -> list of IKE SAs (``ikeagent.runtime.views.ike_sa_view``).
- ``{"cmd": "list-traps"}`` -> list of trap policies (``ikeagent.runtime.views.trap_view``).
- ``{"cmd": "list-conns"}`` -> list of configured connections (no secrets).
- ``{"cmd": "up", "name": N, "timeout": 30}`` -> the connection's IKE SAs once the IKE SA and
  all its children are up; fails on a failure or the timeout.
- ``{"cmd": "down", "name": N, "timeout": 5}`` -> {"terminated": bool}.
- ``{"cmd": "rekey", "name": N, "ike": true, "children": true}`` -> {"rekeying": N, "what": [...]}
  (``ike``/``children`` default true; ``false`` leaves that part alone).
- ``{"cmd": "reload"}`` -> {"connections": [names]}; a bad file fails with its errors.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import ikeagent
from ikeagent.config.errors import ConfigError
from ikeagent.runtime.control import CommandError
from ikeagent.runtime.views import connection_view, ike_sa_view, trap_view

if TYPE_CHECKING:
    from ikeagent.runtime.agent import Agent

Command = Callable[["Agent", dict[str, Any]], Awaitable[Any]]
MAX_TIMEOUT = 600.0
log = logging.getLogger(__name__)


def _ask(agent: Agent, method: str) -> Any:
    """The engine's answer to a query; if the engine fails, the command fails (an empty answer
    would read as "no SAs")."""
    if agent.engine is None:
        return None
    try:
        return getattr(agent.engine, method)()
    except Exception as e:
        log.exception("engine.%s failed", method)
        raise CommandError(f"the engine failed to answer ({method}): {type(e).__name__}") from e


def _name(agent: Agent, request: dict[str, Any]) -> str:
    name = request.get("name")
    if not isinstance(name, str) or not name:
        raise CommandError('missing "name" of a connection')
    if name not in agent.config.connections:
        raise CommandError(f"no connection named {name!r}")
    return name


def _timeout(request: dict[str, Any], default: float) -> float:
    value = request.get("timeout", default)
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not 0 < value <= MAX_TIMEOUT
    ):
        raise CommandError(f'"timeout" must be a number of seconds in (0, {MAX_TIMEOUT:g}]')
    return float(value)


def _counters(agent: Agent) -> Callable[[int, int, int], Any]:
    def lookup(reqid: int, spi_in: int, spi_out: int) -> Any:
        try:
            return agent.dp("counters", reqid, spi_in, spi_out)
        except KeyError:
            return None

    return lookup


def _sas(agent: Agent, name: str | None = None) -> list[dict[str, Any]]:
    now = agent.now()
    lookup = _counters(agent)
    sas = _ask(agent, "list_sas") or []
    return [ike_sa_view(sa, lookup, now) for sa in sas if name is None or sa.name == name]


async def status(agent: Agent, request: dict[str, Any]) -> Any:
    sas = _ask(agent, "list_sas") or []
    return {
        "version": ikeagent.__version__,
        "pid": os.getpid(),
        "uptime": int(agent.now() - agent.started_at),
        "dataplane": {"name": agent.dataplane.name, "reason": agent.dataplane_reason},
        "ports": {"ike": agent.port, "natt": agent.natt_port},
        "connections": len(agent.config.connections),
        "ike_sas": len(sas),
        "child_sas": sum(len(sa.children) for sa in sas),
        "stats": {
            "agent": dict(agent.stats),
            "engine": dict(agent.engine_call("stats") or {}),
            "dataplane": dict(agent.dp("stats")),
        },
    }


async def list_sas(agent: Agent, request: dict[str, Any]) -> Any:
    name = request.get("name")
    return _sas(agent, name if isinstance(name, str) else None)


async def list_traps(agent: Agent, request: dict[str, Any]) -> Any:
    name = request.get("name")
    now = agent.now()
    sas = _ask(agent, "list_sas") or []
    up = {c.reqid for sa in sas for c in sa.children}
    traps = _ask(agent, "list_traps") if hasattr(agent.engine, "list_traps") else []
    return [
        trap_view(t, now, t.reqid in up)
        for t in traps or []
        if not isinstance(name, str) or t.name == name
    ]


async def list_conns(agent: Agent, request: dict[str, Any]) -> Any:
    return [connection_view(c) for c in agent.config.connections.values()]


def _up_target(agent: Agent, request: dict[str, Any]) -> tuple[str, set[str]]:
    """A connection (all its children) or, as swanctl --initiate --child, one child by name."""
    name = request.get("name")
    if isinstance(name, str) and name and name not in agent.config.connections:
        owners = [c for c in agent.config.connections.values() if name in c.children]
        if len(owners) == 1:
            return owners[0].name, {name}
        if len(owners) > 1:
            raise CommandError(
                f"child {name!r} is in several connections ({', '.join(c.name for c in owners)}):"
                " name the connection"
            )
        raise CommandError(f"no connection or child named {name!r}")
    conn = _name(agent, request)
    return conn, set(agent.config.connections[conn].children)


async def up(agent: Agent, request: dict[str, Any]) -> Any:
    name, children = _up_target(agent, request)
    timeout = _timeout(request, 30.0)
    try:
        await agent.wait_up(name, children, timeout)
    except TimeoutError:
        raise CommandError(f"{name}: not up after {timeout:g}s")
    except RuntimeError as e:
        raise CommandError(str(e))
    return _sas(agent, name)


async def down(agent: Agent, request: dict[str, Any]) -> Any:
    """A connection (its IKE SA and every child) or, by child name, one Child SA (the IKE SA
    stays, as with swanctl --terminate --child)."""
    name = request.get("name")
    timeout = _timeout(request, 5.0)
    if isinstance(name, str) and name and name not in agent.config.connections:
        conn, children = _up_target(agent, request)
        (child,) = children
        return {"terminated": await agent.wait_child_down(conn, child, timeout)}
    name = _name(agent, request)
    return {"terminated": await agent.wait_down(name, timeout)}


async def rekey(agent: Agent, request: dict[str, Any]) -> Any:
    name = _name(agent, request)
    if not any(sa["name"] == name for sa in _sas(agent, name)):
        raise CommandError(f"{name}: no IKE SA to rekey")
    ike, children = request.get("ike", True), request.get("children", True)
    if not isinstance(ike, bool) or not isinstance(children, bool) or not (ike or children):
        raise CommandError('"ike" and "children" must be booleans, at least one true')
    if ike and children:
        agent.engine_call("rekey", name, agent.now())
    else:  # the engine's keyword arguments (beyond events.py's rekey(name, now))
        agent.engine_call("rekey", name, agent.now(), ike=ike, children=children)
    agent.process()
    return {"rekeying": name, "what": [w for w, on in (("ike", ike), ("children", children)) if on]}


async def reload(agent: Agent, request: dict[str, Any]) -> Any:
    try:
        config = agent.reload()
    except ConfigError as e:
        raise CommandError(f"configuration rejected, the running one stays:\n{e}")
    return {"connections": sorted(config.connections)}


COMMANDS: dict[str, Command] = {
    "status": status,
    "list-sas": list_sas,
    "list-traps": list_traps,
    "list-conns": list_conns,
    "up": up,
    "down": down,
    "rekey": rekey,
    "reload": reload,
}


async def dispatch(agent: Agent, request: dict[str, Any]) -> Any:
    command = COMMANDS.get(request["cmd"])
    if command is None:
        raise CommandError(f"unknown command {request['cmd']!r} (one of: {', '.join(COMMANDS)})")
    return await command(agent, request)
