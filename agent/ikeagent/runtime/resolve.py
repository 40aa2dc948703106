"""Host names in ``local_addrs``/``remote_addrs`` resolved to addresses for the engine.

swanctl lets connections name their peers by DNS name; the sans-I/O engine works with
addresses only. The agent resolves names when it loads (and reloads) its configuration and
hands the engine a copy with the addresses in their place (every address a name has, in
resolver order, so the first is the one initiated to). A name that does not resolve is logged
with the field's path and kept: the engine then refuses to initiate to it, saying why.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import logging
import socket
from collections.abc import Callable

from ikeagent.config.model import AgentConfig

log = logging.getLogger(__name__)

Resolver = Callable[[str], list[str]]
_WILDCARDS = {"%any", "%any4", "%any6"}


def system_resolver(name: str) -> list[str]:
    infos = socket.getaddrinfo(name, None, type=socket.SOCK_DGRAM)
    seen: list[str] = []
    for *_, sockaddr in infos:
        addr = str(sockaddr[0])
        if addr not in seen:
            seen.append(addr)
    return seen


def is_name(value: str) -> bool:
    if value in _WILDCARDS:
        return False
    try:
        ipaddress.ip_network(value, strict=False)
    except ValueError:
        pass
    else:
        return False
    # an address range (as swanctl writes them) is no name either
    return not ("-" in value and all(_is_ip(part) for part in value.split("-", 1)))


def _is_ip(value: str) -> bool:
    try:
        ipaddress.ip_address(value.strip())
    except ValueError:
        return False
    return True


def resolve_names(config: AgentConfig, resolver: Resolver = system_resolver) -> AgentConfig:
    """A copy of ``config`` whose connections carry addresses where they named hosts."""
    changed = {}
    for name, conn in config.connections.items():
        fields = {}
        for field in ("local_addrs", "remote_addrs"):
            values = getattr(conn, field)
            if not any(is_name(v) for v in values):
                continue
            out: list[str] = []
            for i, value in enumerate(values):
                if not is_name(value):
                    out.append(value)
                    continue
                try:
                    addrs = resolver(value)
                except OSError as exc:
                    addrs = []
                    log.error(
                        "connections.%s.%s[%d]: cannot resolve %r: %s", name, field, i, value, exc
                    )
                if not addrs:
                    out.append(value)
                    continue
                log.info("connections.%s.%s[%d]: %s is %s", name, field, i, value, ", ".join(addrs))
                out.extend(a for a in addrs if a not in out)
            fields[field] = tuple(out)
        if fields:
            changed[name] = dataclasses.replace(conn, **fields)
    if not changed:
        return config
    return dataclasses.replace(config, connections={**config.connections, **changed})
