"""The sans-I/O engine: every IKE SA of the agent, behind the API documented in events.py."""

from __future__ import annotations

import logging
from collections import Counter, deque
from collections.abc import Callable
from typing import Any

from ikeagent.config.model import AgentConfig, ConnectionConfig, StartAction
from ikeagent.dataplane.base import (
    Acquire,
    DataplaneEvent,
    Endpoint,
    ExpireKind,
    SaExpired,
    SaUsage,
)
from ikeagent.engine.addresses import addr_ok, is_ip
from ikeagent.engine.deadlines import Deadlines
from ikeagent.engine.entropy import RandomSource
from ikeagent.engine.events import Datagram, DeleteChild, Event
from ikeagent.engine.ikev1.engine import V1Engine

# a pair replaced by a newer one of its reqid (rekey, reauthentication) stays in the data plane
# this long after the peer was told, in both IKE versions: what the peer sent on it before it
# heard is still received
from ikeagent.engine.ikev1.lifecycle import INBOUND_LINGER
from ikeagent.engine.ikev2 import ike_init
from ikeagent.engine.ikev2.child_create import CreateChildTask
from ikeagent.engine.ikev2.ike_init import IkeInitTask
from ikeagent.engine.ikev2.ike_rekey import IkeRekeyTask
from ikeagent.engine.ikev2.lifecycle import HALF_OPEN_TIMEOUT, Lifecycle
from ikeagent.engine.ikev2.manager import TaskManager
from ikeagent.engine.ikev2.reauth import Reauth
from ikeagent.engine.ikev2.sa import IkeSa
from ikeagent.engine.ikev2.state import ChildState, IkeState
from ikeagent.engine.ikev2.timers import Timers
from ikeagent.engine.ondemand import OnDemand
from ikeagent.engine.status import snapshot
from ikeagent.wire import v2 as w
from ikeagent.wire.errors import DecodeError, InvalidLength, Truncated

MAX_DATAGRAM = 65535


class UnknownConnection(KeyError):
    pass


class Engine(TaskManager, Lifecycle, Reauth, Timers):
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

    # ---- identifiers -------------------------------------------------------------------------

    def new_uid(self) -> int:
        self._uid += 1
        return self._uid

    def new_reqid(self) -> int:
        self._reqid += 1
        return self._reqid

    def policy_reqid(self, policy: tuple) -> int:
        """The reqid for a new Child SA whose policy (connection, child, selectors, peer) is
        ``policy``: the one a live Child SA with the same policy holds (as strongSwan shares
        reqids between identical policies), else a new one."""
        reqid = self._reqid_of.get(policy)
        if reqid is None:
            reqid = self.new_reqid()
            self._reqid_of[policy] = reqid
            self._policy_of[reqid] = policy
        return reqid

    def next_install(self) -> int:
        """A number that grows with every pair sent to the data plane (its install order)."""
        self._installs += 1
        return self._installs

    def new_lineage(self) -> int:
        self._lineage += 1
        return self._lineage

    def lineage_for(self, reqid: int) -> int:
        """The rekey chain of a new pair that is not a rekey: that of a live pair of the same
        reqid (the policy), if any (a reauthentication's, a duplicate's: the tunnel never went
        down, and the old pair's going is no CHILD_SA down), else a new one."""
        for sa in [*self.sas.values(), *self.v1.sas.values()]:
            for c in sa.children:
                if c.reqid == reqid and c.state is not ChildState.DESTROYED:
                    return int(c.lineage)
        return self.new_lineage()

    def release_reqid(self, reqid: int) -> None:
        """No Child SA holds ``reqid`` any more: its policy gets a new one next time."""
        policy = self._policy_of.pop(reqid, None)
        if policy is not None and self._reqid_of.get(policy) == reqid:
            del self._reqid_of[policy]

    def reqid_in_use(self, reqid: int) -> bool:
        """Whether a Child SA (either IKE version) still holds an SA pair under ``reqid``."""
        return any(
            c.reqid == reqid and c.state is not ChildState.DESTROYED
            for sa in [*self.sas.values(), *self.v1.sas.values()]
            for c in sa.children
        )

    def lineage_alive(self, lineage: int) -> bool:
        """Whether a pair of this rekey chain (either IKE version) is still there."""
        return any(
            c.lineage == lineage and c.state is not ChildState.DESTROYED
            for sa in [*self.sas.values(), *self.v1.sas.values()]
            for c in sa.children
        )

    def closes_lineage(self, child: Any, sa: Any = None) -> bool:
        """Whether removing ``child`` (with all of IKE SA ``sa``, if given) ends its rekey
        chain: no other live pair of it is left elsewhere."""
        return not any(
            c is not child and (sa is None or s is not sa)
            for s, c in self.lineage_members(child.lineage)
        )

    def lineage_members(self, lineage: int) -> list[tuple[Any, Any]]:
        """(IKE SA, child) of every live pair of this rekey chain, either IKE version."""
        return [
            (sa, c)
            for sa in [*self.sas.values(), *self.v1.sas.values()]
            for c in sa.children
            if c.lineage == lineage and c.state is not ChildState.DESTROYED
        ]

    def find_child(self, reqid: int, spi_in: int) -> tuple[Any, Any] | None:
        """(IKE SA, child) of the pair with this reqid and inbound SPI, either IKE version."""
        for sa in [*self.sas.values(), *self.v1.sas.values()]:
            child = sa.child_by_spi_in(spi_in)
            if child is not None and child.reqid == reqid:
                return sa, child
        return None

    def refresh_any(self, sa: Any) -> None:
        if isinstance(sa, IkeSa):
            self._refresh(sa)
        else:
            self.v1.refresh(sa)

    def close_idle_child(self, sa: Any, child: Any, reason: str, now: float) -> None:
        """Delete a child that went idle; the IKE SA stays unless ``inactivity_close_ike``
        and it was the last one."""
        close_ike = sa.conn is not None and sa.conn.inactivity_close_ike
        if isinstance(sa, IkeSa):
            self.delete_children(sa, [child], reason, now, close_ike=close_ike)
        else:
            self.v1.delete_child(sa, child, reason, now)
            if close_ike and not any(c.state is ChildState.INSTALLED for c in sa.children):
                self.v1.delete_ike(sa, "its last CHILD_SA closed for inactivity", now)
            self.v1.refresh(sa)

    def list_traps(self) -> list:
        return self.ondemand.list_traps()

    def new_spi_in(self) -> int:
        while True:
            spi = int.from_bytes(self.rng.randbytes(4), "big")
            if spi >= 0x100 and spi not in self._spis_in:
                self._spis_in.add(spi)
                return spi

    def release_spi_in(self, spi: int) -> None:
        self._spis_in.discard(spi)

    def new_ike_spi(self) -> int:
        while True:
            spi = int.from_bytes(self.rng.randbytes(8), "big")
            if spi and spi not in self._ike_spis:
                self._ike_spis.add(spi)
                return spi

    def forget_ike_spi(self, spi: int) -> None:
        if spi not in self.sas:
            self._ike_spis.discard(spi)

    def register(self, sa: IkeSa) -> None:
        self.sas[sa.our_spi] = sa
        self._by_uid[sa.uid] = sa

    def unregister(self, sa: IkeSa) -> None:
        if self.sas.get(sa.our_spi) is sa:
            del self.sas[sa.our_spi]
        self._ike_spis.discard(sa.our_spi)
        self._by_uid.pop(sa.uid, None)
        self.forget_half_open(sa)
        if self._recent_init.get((sa.spi_i, sa.remote[0])) is sa:
            del self._recent_init[(sa.spi_i, sa.remote[0])]

    def forget_half_open(self, sa: IkeSa) -> None:
        """The SA is no longer half-open (established or gone): it stops counting towards
        the COOKIE threshold. Keyed by where its IKE_SA_INIT came from, since ``sa.remote``
        may have floated to the NAT-T port since."""
        key = sa.half_open_key or (sa.spi_i, sa.remote[0], sa.remote[1])
        if self.half_open.get(key) is sa:
            del self.half_open[key]

    def set_spi_r(self, sa: IkeSa, spi_r: int) -> None:
        sa.spi_r = spi_r

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

    def get_timer(self) -> float | None:
        linger = self._lingering[0][0] if self._lingering else None
        times = [t for t in (Timers.get_timer(self), self.v1.get_timer(), linger) if t is not None]
        return min(times) if times else None

    def handle_timer(self, now: float) -> None:
        Timers.handle_timer(self, now)
        self.v1.handle_timer(now)
        self.drop_lingering(now)

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

    # ---- configuration and commands ----------------------------------------------------------

    def start(self, now: float) -> None:
        """Arm the traps of children with start_action ``trap`` and bring up every
        connection with a child whose start_action is ``start``."""
        self.now = now
        self.ondemand.arm_configured(list(self.config.connections.values()))
        for conn in self.config.connections.values():
            starting = [
                c.name for c in conn.children.values() if c.start_action is StartAction.START
            ]
            if starting and conn.remote_addrs:
                self._start_one(conn.name, now, starting)

    def _start_one(self, name: str, now: float, children: list[str]) -> None:
        try:
            self.initiate(name, now, children)
        except UnknownConnection as exc:
            self.count("start_failed")
            self.log.error("cannot start %s: %s", name, exc.args[0] if exc.args else exc)

    def load_config(self, config: AgentConfig, now: float) -> None:
        """Apply a new configuration: removed or changed connections are torn down, new or
        changed ones with start_action=start are brought up; unchanged ones are left alone."""
        self.now = now
        old = self.config
        self.config = config
        for name, conn in old.connections.items():
            new = config.connections.get(name)
            if new is None or new != conn:
                self.terminate(
                    name, now, reason="configuration changed" if new else "connection removed"
                )
                self.ondemand.disarm_connection(name)
        for name, conn in config.connections.items():
            if old.connections.get(name) == conn:
                # keep the running SAs, but let them use the new config object
                for sa in [*self.sas.values(), *self.v1.sas.values()]:
                    if sa.conn is not None and sa.conn.name == name:
                        sa.conn = conn
                continue
            self.ondemand.arm_configured([conn])
            starting = [
                c.name for c in conn.children.values() if c.start_action is StartAction.START
            ]
            if starting and conn.remote_addrs:
                self._start_one(name, now, starting)

    def _conn(self, name: str) -> ConnectionConfig:
        conn = self.config.connections.get(name)
        if conn is None:
            raise UnknownConnection(name)
        return conn

    def sas_of(self, name: str) -> list[IkeSa]:
        return [s for s in self.sas.values() if s.conn is not None and s.conn.name == name]

    def initiate(
        self,
        name: str,
        now: float,
        children: list[str] | None = None,
        *,
        keying_try: int = 1,
        packet: tuple[str, str] | None = None,
    ) -> None:
        """Bring up ``children`` (default: all) of connection ``name``: on its IKE SA when
        there is one, else with a new one (attempt ``keying_try`` of ``keyingtries``).
        ``packet``: (source, destination) of the packet that asked for them (IKEv2 offers its
        selectors first, RFC 7296 2.9)."""
        self.now = now
        conn = self._conn(name)
        if not conn.remote_addrs:
            raise UnknownConnection(f"{name}: no remote_addrs to initiate to")
        cfgs = [conn.children[c] for c in children] if children else list(conn.children.values())
        if conn.version == 1:
            _check_addresses(name, conn)
            self.v1.initiate(conn, now, cfgs, keying_try=keying_try)
            return
        active = [
            s
            for s in self.sas_of(name)
            if s.state in (IkeState.CONNECTING, IkeState.ESTABLISHED, IkeState.REKEYING)
            and s.closing is None
        ]
        if active:
            sa = max(active, key=lambda s: s.uid)
            # children on their way already (IKE_AUTH or CREATE_CHILD_SA in flight or queued,
            # or waiting for the IKE SA) are not asked for twice: a reload that starts the
            # connection and an ``up`` right after it must give one Child SA, not two
            busy = {c.name for c in sa.pending_children}
            for task in (sa.outstanding.task if sa.outstanding else None, *sa.queue):
                cfg = getattr(task, "child", None) or (
                    task.cfg
                    if isinstance(task, CreateChildTask) and task.rekey_of is None
                    else None
                )
                if cfg is not None:
                    busy.add(cfg.name)
            if sa.state is IkeState.CONNECTING:
                for c in cfgs:
                    if c.name not in busy:
                        sa.pending_children.append(c)
                        if packet is not None:
                            sa.packet_hints[c.name] = packet
                return
            # a child being deleted (e.g. closed for inactivity) does not stop a new one
            live = {
                c.config.name
                for c in sa.children
                if c.state not in (ChildState.DESTROYED, ChildState.DELETING)
            }
            for cfg in cfgs:
                if cfg.name not in live and cfg.name not in busy:
                    self.queue_task(sa, CreateChildTask(cfg, packet=packet), now)
            return
        remote_ip = conn.remote_addrs[0]
        local_ip = conn.local_addrs[0] if conn.local_addrs else ""
        _check_addresses(name, conn)
        sa = IkeSa(
            uid=self.new_uid(),
            conn=conn,
            initiator=True,
            spi_i=self.new_ike_spi(),
            spi_r=0,
            local=(local_ip, conn.local_port),
            remote=(remote_ip, conn.remote_port),
            created_at=now,
            last_recv=now,
        )
        sa.force_encap = self.force_encap or conn.encap
        sa.pending_children = cfgs
        if packet is not None:
            sa.packet_hints = {c.name: packet for c in cfgs}
        sa.keying_try = keying_try
        self.register(sa)
        self.log.info(
            "%s: initiating IKE_SA to %s:%d", sa.peer_label(), remote_ip, conn.remote_port
        )
        self.queue_task(sa, IkeInitTask(), now)

    def terminate(self, name: str, now: float, reason: str = "terminated by command") -> None:
        self.now = now
        for sa in self.sas_of(name):
            self.delete_ike(sa, reason, now)
        self.v1.terminate(name, now, reason)

    def terminate_child(
        self, name: str, child: str, now: float, reason: str = "terminated by command"
    ) -> None:
        """Delete the Child SAs named ``child`` of connection ``name``; the IKE SA stays."""
        self.now = now
        for sa in self.sas_of(name):
            if sa.state is not IkeState.ESTABLISHED:
                continue
            doomed = [c for c in sa.children if c.name == child and c.state is ChildState.INSTALLED]
            if doomed:
                self.delete_children(sa, doomed, reason, now)
        self.v1.terminate_child(name, child, now, reason)

    def rekey(self, name: str, now: float, *, ike: bool = True, children: bool = True) -> None:
        self.now = now
        for sa in self.sas_of(name):
            if sa.state is not IkeState.ESTABLISHED:
                continue
            if children:
                for c in list(sa.children):
                    if c.state is ChildState.INSTALLED:
                        self.queue_task(sa, CreateChildTask(c.config, rekey_of=c), now)
            if ike:
                self.queue_task(sa, IkeRekeyTask(), now)
        self.v1.rekey(name, now, ike=ike, children=children)

    def shutdown(self, now: float) -> None:
        for sa in list(self.sas.values()):
            self.delete_ike(sa, "agent shutting down", now)
        self.v1.shutdown(now)
        self.drop_lingering()

    # ---- input -------------------------------------------------------------------------------

    def receive_datagram(self, data: bytes, local: Endpoint, remote: Endpoint, now: float) -> None:
        self.now = now
        if len(data) < w.HEADER_LEN or len(data) > MAX_DATAGRAM:
            self.count("truncated" if len(data) < w.HEADER_LEN else "oversized")
            return
        if data[17] >> 4 == 1:  # ISAKMP major version 1: IKEv1
            self.v1.receive(bytes(data), local, remote, now)
            return
        try:
            header = w.Header.from_bytes(data)
        except DecodeError:
            self.count("malformed")
            return
        if header.major != 2:
            self.count("unsupported_version")
            return
        try:  # what Message.from_bytes checks, without decoding the header a second time
            if type(data) is not bytes:
                data = bytes(data)
            if header.length != len(data):
                raise (Truncated if header.length > len(data) else InvalidLength)(
                    f"IKE header says {header.length} bytes, got {len(data)}"
                )
            outer = w.decode_payloads(header.next_payload, data[w.HEADER_LEN :])
        except DecodeError as exc:
            self.count("malformed")
            self.log.debug("%s:%d: malformed datagram dropped: %s", remote[0], remote[1], exc)
            return
        if header.exchange == w.ExchangeType.IKE_SA_INIT:
            self._on_init(data, header, outer, local, remote, now)
            return
        theirs_initiator = bool(header.flags & w.FLAG_INITIATOR)
        our_spi = header.spi_r if theirs_initiator else header.spi_i
        sa = self.sas.get(our_spi)
        if sa is None or sa.state is IkeState.DESTROYED or (sa.initiator == theirs_initiator):
            self.count("unknown_spi")
            return
        if not outer or not isinstance(
            outer[-1], w.EncryptedAndAuthenticated | w.EncryptedFragment
        ):
            self.count("unprotected")
            return
        self._path = (local, remote)
        if header.is_response:
            self._on_response(sa, data, header, outer, now)
        else:
            self._on_request(sa, data, header, outer, now)
        self._refresh(sa)

    def _update_path(self, sa: IkeSa, local: Endpoint, remote: Endpoint) -> None:
        """Follow the addresses of an authenticated message (RFC 7296 2.23)."""
        lip = sa.local[0] or local[0]
        if local[1] == ike_init.NATT_PORT and sa.local[1] != ike_init.NATT_PORT:
            sa.local = (lip, local[1])
        elif lip != sa.local[0]:
            sa.local = (lip, sa.local[1])
        if (
            sa.remote != remote
            and sa.remote[0] == remote[0]
            and (sa.encap or remote[1] == ike_init.NATT_PORT)
        ):
            # the peer floated to 4500 (charon does with MOBIKE even without a NAT), or the NAT
            # mapping changed its port: follow it
            sa.remote = remote

    def authenticated_path(self, sa: IkeSa) -> None:
        if self._path is not None:
            self._update_path(sa, *self._path)

    def _on_init(
        self,
        data: bytes,
        header: w.Header,
        outer: list[w.Payload],
        local: Endpoint,
        remote: Endpoint,
        now: float,
    ) -> None:
        if header.is_response:
            sa = self.sas.get(header.spi_i)
            if sa is None or not sa.initiator or sa.state is not IkeState.CONNECTING:
                self.count("unexpected_response")
                return
            self._path = (local, remote)
            if not sa.local[0] and local[0]:
                sa.local = (local[0], sa.local[1])
            self._on_response(sa, data, header, outer, now)
            self._refresh(sa)
            return
        if header.spi_r != 0 or header.message_id != 0 or not header.flags & w.FLAG_INITIATOR:
            self.count("malformed")
            return
        existing = self.half_open.get(
            (header.spi_i, remote[0], remote[1])
        ) or self._recent_init.get((header.spi_i, remote[0]))
        if existing is not None:
            if existing.state is not IkeState.CONNECTING:
                self.count("retransmitted_requests")
                return  # a late retransmit of an IKE_SA_INIT we already completed
            if existing.init_request == data and existing.last_response is not None:
                self.count("retransmitted_requests")
                for d in existing.last_response[1]:
                    self.send_plain(d, local, remote)
            return
        ike_init.respond(self, data, header, outer, local, remote, now)

    def new_responder_sa(
        self,
        conn: ConnectionConfig,
        candidates: list[ConnectionConfig],
        spi_i: int,
        local: Endpoint,
        remote: Endpoint,
        now: float,
    ) -> IkeSa:
        sa = IkeSa(
            uid=self.new_uid(),
            conn=conn,
            initiator=False,
            spi_i=spi_i,
            spi_r=self.new_ike_spi(),
            local=local,
            remote=remote,
            created_at=now,
            last_recv=now,
        )
        sa.candidates = tuple(candidates)
        sa.force_encap = self.force_encap or conn.encap
        sa.half_open_until = now + HALF_OPEN_TIMEOUT
        self.register(sa)
        sa.half_open_key = (spi_i, remote[0], remote[1])
        self.half_open[sa.half_open_key] = sa
        self._recent_init[(spi_i, remote[0])] = sa
        self._refresh(sa)
        return sa

    def candidates_for(self, local: Endpoint, remote: Endpoint) -> list[ConnectionConfig]:
        return [
            c
            for c in self.config.connections.values()
            if c.version == 2
            and addr_ok(c.local_addrs, local[0])
            and addr_ok(c.remote_addrs, remote[0])
        ]

    def cookies_required(self) -> bool:
        return len(self.half_open) >= self.config.cookie_threshold

    def handle_dataplane_event(self, event: DataplaneEvent, now: float) -> None:
        self.now = now
        if isinstance(event, SaExpired):
            for sa in list(self.sas.values()):
                child = sa.child_by_spi_in(event.spi) or sa.child_by_spi_out(event.spi)
                if child is None:
                    continue
                if (
                    event.kind is ExpireKind.SOFT
                    and child.state is ChildState.INSTALLED
                    and sa.state is IkeState.ESTABLISHED
                ):
                    self.log.info(
                        "%s: CHILD_SA %s{%d} reached its soft volume limit, rekeying",
                        sa.peer_label(),
                        child.name,
                        child.reqid,
                    )
                    self.queue_task(sa, CreateChildTask(child.config, rekey_of=child), now)
                elif event.kind is ExpireKind.HARD:
                    self.log.warning(
                        "%s: CHILD_SA %s{%d} reached its hard limit, deleting",
                        sa.peer_label(),
                        child.name,
                        child.reqid,
                    )
                    self.delete_children(sa, [child], "hard lifetime reached", now)
                self._refresh(sa)
        elif isinstance(event, Acquire):
            self.ondemand.on_acquire(event, now)
            return
        elif isinstance(event, SaUsage):
            self.ondemand.on_usage(event, now)
            return
        self.v1.handle_dataplane_event(event, now)


def _check_addresses(name: str, conn: ConnectionConfig) -> None:
    remote_ip = conn.remote_addrs[0]
    local_ip = conn.local_addrs[0] if conn.local_addrs else ""
    for what, value in (("remote_addrs", remote_ip), ("local_addrs", local_ip)):
        if value and ("/" in value or "-" in value) and not is_ip(value):
            raise UnknownConnection(
                f"{name}: {what} {value!r} is a subnet or range: it can only accept peers; "
                "list an address or a host name first to initiate"
            )
        if value and not is_ip(value):
            raise UnknownConnection(
                f"{name}: {what} {value!r}: host names are not resolved yet, give an IP address"
            )
