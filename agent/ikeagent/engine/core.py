"""The sans-I/O engine: every IKE SA of the agent, behind the API documented in events.py.

The Engine holds the state; what it does lives in mixins: ``Registry`` (identifiers, the SA
table), ``Commands`` (connections by name), ``Receiver`` (datagrams, data plane events) here in
engine/, and the IKEv2 ones in ikev2/ (``TaskManager``, ``Lifecycle``, ``Reauth``, ``Timers``).
"""

from __future__ import annotations

import logging
from collections import Counter, deque
from collections.abc import Callable
from typing import Any

from ikeagent.config.model import AgentConfig
from ikeagent.dataplane.base import Endpoint
from ikeagent.engine.commands import Commands, UnknownConnection
from ikeagent.engine.deadlines import Deadlines
from ikeagent.engine.entropy import RandomSource
from ikeagent.engine.events import Datagram, DeleteChild, Event
from ikeagent.engine.ikev1.engine import V1Engine

# a pair replaced by a newer one of its reqid (rekey, reauthentication) stays in the data plane
# this long after the peer was told, in both IKE versions: what the peer sent on it before it
# heard is still received
from ikeagent.engine.ikev1.lifecycle import INBOUND_LINGER
from ikeagent.engine.ikev2.lifecycle import Lifecycle
from ikeagent.engine.ikev2.manager import TaskManager
from ikeagent.engine.ikev2.reauth import Reauth
from ikeagent.engine.ikev2.sa import IkeSa
from ikeagent.engine.ikev2.timers import Timers
from ikeagent.engine.ondemand import OnDemand
from ikeagent.engine.receiver import MAX_DATAGRAM, Receiver
from ikeagent.engine.registry import Registry
from ikeagent.engine.status import snapshot

# names other modules and tests import from here (UnknownConnection: ondemand.py, lazily, since
# this module imports ondemand; INBOUND_LINGER: the engine tests), kept since the mixins moved out
__all__ = ["INBOUND_LINGER", "MAX_DATAGRAM", "Engine", "UnknownConnection"]


class Engine(Commands, Receiver, Registry, TaskManager, Lifecycle, Reauth, Timers):
    def __init__(
        self,
        config: AgentConfig,
        rng: RandomSource,
        now: float = 0.0,
        *,
        force_encap: bool = False,
        logger: logging.Logger | None = None,
        wall_clock: Callable[[], float] | None = None,
    ) -> None:
        self.config = config
        self.wall_clock = wall_clock
        self.rng = rng
        self.now = now
        self.force_encap = force_encap
        self.log = logger or logging.getLogger("ikeagent.engine")
        self.sas: dict[int, IkeSa] = {}  # our SPI -> IKE SA
        self.half_open: dict[tuple[int, str, int], IkeSa] = {}
        self._recent_init: dict[tuple[int, str], IkeSa] = {}
        self.cookie_secret = rng.randbytes(32)
        self._out: list[Datagram] = []
        self._events: deque[Event] = deque()
        self._stats: Counter[str] = Counter()
        self._uid = 0
        self._reqid = 0
        # reqids shared by live Child SAs with the same policy (see ``policy_reqid``)
        self._reqid_of: dict[tuple, int] = {}
        self._policy_of: dict[int, tuple] = {}
        self._lineage = 0
        self._installs = 0
        self._spis_in: set[int] = set()
        self._ike_spis: set[int] = set()
        self._by_uid: dict[int, IkeSa] = {}
        self._deadlines: Deadlines[IkeSa] = Deadlines(self._by_uid.get)
        self._after: list[Callable[[], None]] = []
        self._path: tuple[Endpoint, Endpoint] | None = None
        self._lingering: deque[tuple[float, DeleteChild]] = deque()
        self.v1 = V1Engine(self)
        self.ondemand = OnDemand(self)

    def wall_time(self) -> float:
        """POSIX seconds, for certificate validity dates (the shell injects the clock)."""
        if self.wall_clock is None:
            raise RuntimeError("this engine was built without a wall clock")
        return self.wall_clock()

    # ---- outputs -----------------------------------------------------------------------------

    def emit(self, event: Event) -> None:
        self._events.append(event)

    def send_plain(
        self, data: bytes, local: Endpoint, remote: Endpoint, *, raw: bool = False
    ) -> None:
        self._out.append(Datagram(data, local, remote, raw))

    def count(self, what: str, n: int = 1) -> None:
        self._stats[what] += n

    def datagrams_to_send(self) -> list[Datagram]:
        out, self._out = self._out, []
        return out

    def next_event(self) -> Event | None:
        return self._events.popleft() if self._events else None

    def stats(self) -> dict[str, int]:
        return dict(self._stats)

    def list_sas(self) -> list:
        v2 = [snapshot(sa) for sa in self.sas.values()]
        return sorted(v2 + self.v1.list_sas(), key=lambda s: s.uid)

    def list_traps(self) -> list:
        return self.ondemand.list_traps()

    def get_timer(self) -> float | None:
        linger = self._lingering[0][0] if self._lingering else None
        times = [t for t in (Timers.get_timer(self), self.v1.get_timer(), linger) if t is not None]
        return min(times) if times else None

    def handle_timer(self, now: float) -> None:
        Timers.handle_timer(self, now)
        self.v1.handle_timer(now)
        self.drop_lingering(now)

    def refresh_any(self, sa: Any) -> None:
        if isinstance(sa, IkeSa):
            self._refresh(sa)
        else:
            self.v1.refresh(sa)

    def linger_pair(self, reqid: int, spi_in: int, spi_out: int, now: float) -> None:
        """Remove a replaced pair from the data plane ``INBOUND_LINGER`` seconds from now (its
        successor already carries our traffic: the data plane sends on a reqid's newest pair)."""
        self._lingering.append((now + INBOUND_LINGER, DeleteChild(reqid, spi_in, spi_out)))

    def drop_lingering(self, now: float | None = None) -> None:
        """Remove the lingering pairs whose time is up (all of them without ``now``)."""
        while self._lingering and (now is None or self._lingering[0][0] <= now):
            _, event = self._lingering.popleft()
            self.emit(event)
            self.release_spi_in(event.spi_in)
