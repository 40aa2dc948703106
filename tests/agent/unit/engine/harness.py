"""Two engines wired together in memory: fake clock, seeded randomness, memory data planes and
a network whose losses, duplicates and reorderings a test controls."""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ikeagent.config.schema import parse_config
from ikeagent.dataplane.base import SaUsage
from ikeagent.dataplane.memory import MemoryDataplane
from ikeagent.engine.core import Engine
from ikeagent.engine.events import (
    ActivateOutbound,
    ChildDown,
    ChildUp,
    DeleteChild,
    IkeSaDown,
    IkeSaUp,
    InstallChild,
    InstallTrap,
    QueryUsage,
    RemovePolicy,
)
from ikelab_testing.pki import now as pki_now

ADDR = {"a": "192.0.2.1", "b": "192.0.2.2"}
NETS = {"a": "10.1.0.0/24", "b": "10.2.0.0/24"}
PSK = "lab-psk-0123456789abcdef0123456789abcdef"


def site_config(
    me: str,
    *,
    proposals: list[str] | None = None,
    esp: list[str] | None = None,
    start: bool = True,
    psk: str = PSK,
    conn: dict[str, Any] | None = None,
    child: dict[str, Any] | None = None,
    agent: dict[str, Any] | None = None,
    children: dict[str, dict[str, Any]] | None = None,
) -> dict[str, Any]:
    peer = "b" if me == "a" else "a"
    kids = children or {
        "net": {
            "local_ts": [NETS[me]],
            "remote_ts": [NETS[peer]],
            "esp_proposals": esp or ["aes256gcm16"],
            "start_action": "start" if start else "none",
            **(child or {}),
        }
    }
    return {
        "agent": {"retransmit_timeout": 1.0, "retransmit_tries": 4, **(agent or {})},
        "connections": {
            f"to-{peer}": {
                "version": 2,
                "local_addrs": [ADDR[me]],
                "remote_addrs": [ADDR[peer]],
                "proposals": proposals or ["aes256gcm16-prfsha256-x25519"],
                "local": {"auth": "psk", "id": f"gw-{me}.example"},
                "remote": {"auth": "psk", "id": f"gw-{peer}.example"},
                "children": kids,
                **(conn or {}),
            }
        },
        "secrets": {"ike-ab": {"id": ["gw-a.example", "gw-b.example"], "secret": psk}},
    }


@dataclass
class Side:
    name: str
    engine: Engine
    dp: MemoryDataplane = field(default_factory=MemoryDataplane)
    events: list[Any] = field(default_factory=list)

    @property
    def addr(self) -> str:
        return ADDR[self.name]

    def up(self) -> list[Any]:
        return [e for e in self.events if isinstance(e, IkeSaUp)]

    def downs(self) -> list[Any]:
        return [e for e in self.events if isinstance(e, IkeSaDown)]

    def pairs(self) -> list[Any]:
        return [sa for lst in self.dp.pairs.values() for sa in lst]


# a filter sees (src side, datagram) and returns True to deliver
Filter = Callable[[str, Any], bool]


class Pair:
    def __init__(
        self,
        cfg_a: dict[str, Any],
        cfg_b: dict[str, Any],
        *,
        seed: int = 1,
        force_encap: bool = False,
    ) -> None:
        self.now = 1000.0
        # certificate dates are checked against this wall clock: the test PKI's "now" (its
        # certificates are valid around it) at the start, advancing with the fake clock
        self.wall_start = pki_now().timestamp()
        self.rng = random.Random(seed)
        self.a = Side(
            "a",
            Engine(
                parse_config(cfg_a),
                random.Random(seed * 2 + 1),
                self.now,
                force_encap=force_encap,
                wall_clock=self.wall_time,
            ),
        )
        self.b = Side(
            "b",
            Engine(
                parse_config(cfg_b),
                random.Random(seed * 2 + 2),
                self.now,
                force_encap=force_encap,
                wall_clock=self.wall_time,
            ),
        )
        self.filter: Filter | None = None
        self.wire: list[tuple[str, Any]] = []  # everything that was sent, in order
        self.in_flight: list[tuple[str, Any]] = []
        self.delivered = 0

    def wall_time(self) -> float:
        return self.wall_start + (self.now - 1000.0)

    def side(self, name: str) -> Side:
        return self.a if name == "a" else self.b

    def other(self, name: str) -> Side:
        return self.b if name == "a" else self.a

    def _drain(self, s: Side) -> None:
        for d in s.engine.datagrams_to_send():
            self.wire.append((s.name, d))
            if self.filter is None or self.filter(s.name, d):
                self.in_flight.append((s.name, d))
        while (ev := s.engine.next_event()) is not None:
            s.events.append(ev)
            if isinstance(ev, InstallChild):
                s.dp.install_child(ev.sa)
            elif isinstance(ev, ActivateOutbound):
                s.dp.activate_outbound(ev.reqid, ev.spi_in, ev.spi_out)
            elif isinstance(ev, DeleteChild):
                s.dp.delete_child_sas(ev.reqid, ev.spi_in, ev.spi_out)
            elif isinstance(ev, RemovePolicy):
                s.dp.remove_policy(ev.reqid)
            elif isinstance(ev, InstallTrap):
                s.dp.install_trap(ev.trap)
            elif isinstance(ev, QueryUsage):
                # as the runtime does: read the pair's counters and answer at once
                c = s.dp.counter_table.get((ev.reqid, ev.spi_in, ev.spi_out))
                usage = SaUsage(
                    ev.reqid,
                    ev.spi_in,
                    ev.spi_out,
                    c.last_used if c is not None else None,
                    c.packets_in + c.packets_out if c is not None else None,
                    c.last_used_exact if c is not None else True,
                )
                s.engine.handle_dataplane_event(usage, self.now)
            elif isinstance(ev, IkeSaUp | IkeSaDown | ChildUp | ChildDown):
                pass

    def flush(self) -> None:
        self._drain(self.a)
        self._drain(self.b)

    def step(self) -> bool:
        """Deliver one datagram in flight; False when none is."""
        self.flush()
        if not self.in_flight:
            return False
        src, d = self.in_flight.pop(0)
        dst = self.other(src)
        # the receiving side sees the sender's address as remote and its own as local
        dst.engine.receive_datagram(
            d.data,
            (d.remote[0] or dst.addr, d.remote[1]),
            (d.local[0] or self.side(src).addr, d.local[1]),
            self.now,
        )
        self.delivered += 1
        self.flush()
        return True

    def run(self, limit: int = 1000) -> None:
        for _ in range(limit):
            if not self.step():
                return
        raise AssertionError("the engines did not go quiet")

    def advance(self, seconds: float, step: float = 0.25) -> None:
        """Move the clock forward, firing timers and delivering traffic as it goes."""
        end = self.now + seconds
        while self.now < end:
            self.run()
            nxt = [
                t for t in (self.a.engine.get_timer(), self.b.engine.get_timer()) if t is not None
            ]
            t = min([end] + [x for x in nxt if x > self.now] + [self.now + step])
            self.now = min(t, end)
            for s in (self.a, self.b):
                timer = s.engine.get_timer()
                if timer is not None and timer <= self.now:
                    s.engine.handle_timer(self.now)
            self.run()

    def start(self) -> None:
        self.a.engine.start(self.now)
        self.b.engine.start(self.now)
        self.run()


def assert_matching_children(a: Side, b: Side) -> int:
    """Every SA pair installed on one side has its mirror, with identical keys, on the other."""
    pa = {(sa.inbound.spi, sa.outbound.spi): sa for sa in a.pairs()}
    pb = {(sa.outbound.spi, sa.inbound.spi): sa for sa in b.pairs()}
    assert set(pa) == set(pb), f"SA pairs differ: {sorted(pa)} vs {sorted(pb)}"
    for key, sa in pa.items():
        other = pb[key]
        assert sa.inbound.encr_key == other.outbound.encr_key
        assert sa.outbound.encr_key == other.inbound.encr_key
        assert sa.inbound.integ_key == other.outbound.integ_key
        assert sa.outbound.integ_key == other.inbound.integ_key
        assert sa.inbound.encr_id == other.outbound.encr_id
    return len(pa)
