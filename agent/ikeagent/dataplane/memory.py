"""A fake data plane that records what it is told, for engine and runtime tests.

Everything is in plain structures a test can read (``pairs``, ``policies``, ``log``) and drive
(``bump`` counters, ``raise_event``). Deleting something unknown is a no-op, as in the other
data planes, and is recorded in ``log`` so a test can still see it.
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable
from dataclasses import replace

from .base import ChildSa, DataplaneEvent, Endpoint, IkeSink, SaCounters, TrapPolicy

PairKey = tuple[int, int, int]  # (reqid, inbound SPI, outbound SPI)


class MemoryDataplane:
    name = "memory"
    inline_calls = True

    def __init__(self) -> None:
        self.started = False
        self.closed = False
        # reqid -> installed pairs, oldest first (the last one carries outbound traffic)
        self.pairs: dict[int, list[ChildSa]] = {}
        # reqid -> the ChildSa whose selectors form the policy (the first pair installed)
        self.policies: dict[int, ChildSa] = {}
        # reqid -> trap policies (installed with no SA; they stay until remove_policy)
        self.traps: dict[int, TrapPolicy] = {}
        # every call in order: ("install", reqid, spi_in, spi_out), ("delete", ...),
        # ("trap", reqid), ("remove_policy", reqid), ("start",), ("close",)
        self.log: list[tuple] = []
        self.counter_table: dict[PairKey, SaCounters] = {}
        self.stat_table: dict[str, int] = {}
        self._events: list[DataplaneEvent] = []
        self._lock = threading.Lock()
        self._wakeup: Callable[[], None] | None = None

    # -- Dataplane protocol -----------------------------------------------------------------

    def start(self) -> None:
        self.started = True
        self.log.append(("start",))

    def close(self) -> None:
        self.log.append(("close",))
        self.pairs.clear()
        self.policies.clear()
        self.traps.clear()
        self.counter_table.clear()
        self.closed = True

    def attach_encap_socket(self, sock: object, local: Endpoint, ike_sink: IkeSink) -> bool:
        self.log.append(("attach_encap_socket", local))
        return False

    def install_child(self, sa: ChildSa) -> None:
        self.log.append(("install", sa.reqid, sa.inbound.spi, sa.outbound.spi))
        self.pairs.setdefault(sa.reqid, []).append(sa)
        self.policies.setdefault(sa.reqid, sa)
        self.counter_table[(sa.reqid, sa.inbound.spi, sa.outbound.spi)] = SaCounters()

    def install_trap(self, trap: TrapPolicy) -> None:
        self.log.append(("trap", trap.reqid))
        self.traps.setdefault(trap.reqid, trap)

    def activate_outbound(self, reqid: int, spi_in: int, spi_out: int) -> None:
        self.log.append(("activate", reqid, spi_in, spi_out))
        pairs = self.pairs.get(reqid, [])
        pairs[:] = [
            dataclasses.replace(p, outbound_active=True)
            if (p.inbound.spi, p.outbound.spi) == (spi_in, spi_out)
            else p
            for p in pairs
        ]

    def delete_child_sas(self, reqid: int, spi_in: int, spi_out: int) -> None:
        self.log.append(("delete", reqid, spi_in, spi_out))
        pairs = self.pairs.get(reqid, [])
        pairs[:] = [p for p in pairs if (p.inbound.spi, p.outbound.spi) != (spi_in, spi_out)]
        self.counter_table.pop((reqid, spi_in, spi_out), None)

    def remove_policy(self, reqid: int) -> None:
        self.log.append(("remove_policy", reqid))
        for sa in self.pairs.pop(reqid, []):
            self.counter_table.pop((reqid, sa.inbound.spi, sa.outbound.spi), None)
        self.policies.pop(reqid, None)
        self.traps.pop(reqid, None)

    def counters(self, reqid: int, spi_in: int, spi_out: int) -> SaCounters:
        return self.counter_table[(reqid, spi_in, spi_out)]

    def poll_events(self) -> list[DataplaneEvent]:
        with self._lock:
            events, self._events = self._events, []
        return events

    def set_event_callback(self, wakeup: Callable[[], None]) -> None:
        self._wakeup = wakeup

    def stats(self) -> dict[str, int]:
        return dict(self.stat_table)

    # -- test helpers -----------------------------------------------------------------------

    def outbound_pair(self, reqid: int) -> ChildSa | None:
        """The pair outbound traffic of ``reqid`` would use (the newest active one), None
        without one."""
        pairs = self.pairs.get(reqid)
        if not pairs:
            return None
        return next((p for p in reversed(pairs) if p.outbound_active), pairs[-1])

    def installed_spis(self) -> set[int]:
        """Every SPI (both directions) currently installed."""
        return {
            spi
            for pairs in self.pairs.values()
            for sa in pairs
            for spi in (sa.inbound.spi, sa.outbound.spi)
        }

    def bump(
        self,
        reqid: int,
        spi_in: int,
        spi_out: int,
        *,
        bytes_in: int = 0,
        packets_in: int = 0,
        bytes_out: int = 0,
        packets_out: int = 0,
        now: float | None = None,
    ) -> SaCounters:
        """Add traffic to a pair's counters (``now`` sets ``last_used``)."""
        key = (reqid, spi_in, spi_out)
        old = self.counter_table[key]
        new = replace(
            old,
            bytes_in=old.bytes_in + bytes_in,
            packets_in=old.packets_in + packets_in,
            bytes_out=old.bytes_out + bytes_out,
            packets_out=old.packets_out + packets_out,
            last_used=now if now is not None else old.last_used,
        )
        self.counter_table[key] = new
        return new

    def raise_event(self, event: DataplaneEvent) -> None:
        """Queue an event as a real data plane would (thread-safe) and wake the runtime."""
        with self._lock:
            self._events.append(event)
        if self._wakeup is not None:
            self._wakeup()
