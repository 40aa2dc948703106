"""A running in-process Agent for runtime tests: memory data plane, UDP on 127.0.0.1 with
kernel-chosen ports, a control socket in a short temporary directory, and a FAKE engine.

FakeEngine is a stub standing in for ``ikeagent.engine.core.Engine`` so that the shell can be
tested on its own: it records its inputs, answers datagrams starting with b"ping" with b"pong",
and emits events a test scripts. Tests of the real engine behind this shell live with the engine
(two agents in namespaces); keep this stub small.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import shutil
import tempfile
from collections import deque
from collections.abc import AsyncIterator
from typing import Any

from ikeagent.config.model import AgentConfig
from ikeagent.config.schema import parse_config
from ikeagent.dataplane.memory import MemoryDataplane
from ikeagent.engine import events as ev
from ikeagent.runtime.agent import Agent

CONFIG = {
    "agent": {"dataplane": "memory", "port": 500, "natt_port": 4500},
    "connections": {
        "site-b": {
            "local_addrs": ["127.0.0.1"],
            "remote_addrs": ["127.0.0.2"],
            "proposals": "aes256gcm16-prfsha256-x25519",
            "local": {"auth": "psk", "id": "gw-a.example"},
            "remote": {"auth": "psk", "id": "gw-b.example"},
            "children": {
                "net": {
                    "local_ts": "10.1.0.0/24",
                    "remote_ts": "10.2.0.0/24",
                    "esp_proposals": "aes256gcm16",
                }
            },
        }
    },
    "secrets": {"ike-b": {"id": ["gw-a.example", "gw-b.example"], "secret": "not-a-real-psk"}},
}


def make_config(**agent: Any) -> AgentConfig:
    mapping = dict(CONFIG)
    mapping["agent"] = dict(CONFIG["agent"]) | agent
    return parse_config(mapping)


class FakeEngine:
    """STUB engine (see module doc)."""

    def __init__(self, config: AgentConfig, now: float) -> None:
        self.config = config
        self.calls: list[tuple[Any, ...]] = []
        self.received: list[tuple[bytes, tuple[str, int], tuple[str, int]]] = []
        self.out: list[ev.Datagram] = []
        self.events: deque[ev.Event] = deque()
        self.timer: float | None = None
        self.sas: list[ev.IkeSaStatus] = []
        self.on_initiate: list[ev.Event] = []  # emitted when initiate() is called
        self.on_terminate_clear = True

    def load_config(self, config: AgentConfig, now: float) -> None:
        self.config = config
        self.calls.append(("load_config", tuple(sorted(config.connections))))

    def initiate(self, name: str, now: float, children: list[str] | None = None) -> None:
        if name not in self.config.connections:
            raise KeyError(f"no connection {name}")
        self.calls.append(("initiate", name))
        self.events.extend(self.on_initiate)

    def terminate(self, name: str, now: float) -> None:
        self.calls.append(("terminate", name))
        for sa in [s for s in self.sas if s.name == name]:
            if self.on_terminate_clear:
                self.sas.remove(sa)
            for child in sa.children:
                self.events.append(ev.RemovePolicy(child.reqid))
            self.events.append(ev.IkeSaDown(name, sa.uid, "terminated"))

    def rekey(self, name: str, now: float, *, ike: bool = True, children: bool = True) -> None:
        self.calls.append(("rekey", name, ike, children))

    def receive_datagram(self, data: bytes, local: Any, remote: Any, now: float) -> None:
        self.received.append((data, local, remote))
        if data.startswith(b"ping"):
            self.out.append(ev.Datagram(b"pong" + data[4:], local, remote))

    def handle_timer(self, now: float) -> None:
        self.calls.append(("timer",))
        self.timer = None

    def handle_dataplane_event(self, event: Any, now: float) -> None:
        self.calls.append(("dataplane_event", event))

    def datagrams_to_send(self) -> list[ev.Datagram]:
        out, self.out = self.out, []
        return out

    def next_event(self) -> ev.Event | None:
        return self.events.popleft() if self.events else None

    def get_timer(self) -> float | None:
        return self.timer

    def list_sas(self) -> list[ev.IkeSaStatus]:
        return list(self.sas)

    def stats(self) -> dict[str, int]:
        return {"fake_dropped": 1}


@contextlib.asynccontextmanager
async def running_agent(
    config: AgentConfig | None = None, dataplane: Any = None, **kw: Any
) -> AsyncIterator[Agent]:
    """An Agent started on 127.0.0.1 (ports chosen by the kernel) with a FakeEngine."""
    tmp = tempfile.mkdtemp(prefix="ika-")  # short: UNIX socket paths are limited to 108 bytes
    # port 0: the kernel picks free ports (the file format itself requires 1-65535)
    cfg = dataclasses.replace(config or make_config(), port=0, natt_port=0)
    kw.setdefault("config_loader", lambda: cfg)
    agent = Agent(
        cfg,
        dataplane or MemoryDataplane(),
        engine_factory=FakeEngine,
        socket_path=os.path.join(tmp, "run", "ikeagent.sock"),
        listen=("127.0.0.1",),
        dataplane_reason="requested on the command line",
        shutdown_grace=0.2,
        **kw,
    )
    await agent.start()
    try:
        yield agent
    finally:
        await agent.shutdown()
        shutil.rmtree(tmp, ignore_errors=True)


async def settle(seconds: float = 0.05) -> None:
    await asyncio.sleep(seconds)
