"""The IKEv1 engine: every ISAKMP SA of the agent, its timers and its commands.

It lives inside the IKEv2 ``Engine`` (engine/core.py), which hands it every datagram whose
header says major version 1 and every command for a ``version: 1`` connection, and whose
identifiers (uids, reqids, SPIs), outputs (datagrams, events) and counters it shares.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from ikeagent.config.model import ChildConfig, ConnectionConfig
from ikeagent.dataplane.base import DataplaneEvent, Endpoint, ExpireKind, SaExpired
from ikeagent.engine.addresses import UNBOUND, addr_ok
from ikeagent.engine.deadlines import Deadlines
from ikeagent.engine.ikev1 import informational, phase1, quick_mode
from ikeagent.engine.ikev1.lifecycle import Lifecycle
from ikeagent.engine.ikev1.natt import NATT_PORT
from ikeagent.engine.ikev1.sa import AGGRESSIVE, MAIN, Exchange, V1Sa
from ikeagent.engine.ikev1.status import snapshot
from ikeagent.engine.ikev1.timers import Timers
from ikeagent.engine.ikev2.state import ChildState, IkeState
from ikeagent.wire import v1 as w1
from ikeagent.wire.errors import DecodeError

if TYPE_CHECKING:
    from ikeagent.engine.core import Engine

FORGET_EXCHANGE = 60.0  # how long a finished exchange is kept to answer retransmissions

PHASE1_EXCHANGES = (w1.ExchangeType.IDENTITY_PROTECTION, w1.ExchangeType.AGGRESSIVE)


class V1Engine(Lifecycle, Timers):
    def __init__(self, core: Engine) -> None:
        self.core = core
        self.sas: dict[int, V1Sa] = {}  # our cookie -> SA
        self.by_uid: dict[int, V1Sa] = {}
        self.half_open: dict[tuple[int, str], V1Sa] = {}  # (CKY-I, peer address) -> responder SA
        self._deadlines: Deadlines[V1Sa] = Deadlines(self.by_uid.get)
        self._msgids: set[tuple[int, int]] = set()

    # ---- shared with the core ------------------------------------------------------------------

    @property
    def config(self):  # noqa: ANN201 - the core's AgentConfig
        return self.core.config

    @property
    def log(self) -> logging.Logger:
        return self.core.log

    def rand(self, n: int) -> bytes:
        return self.core.rng.randbytes(n)

    def count(self, what: str, n: int = 1) -> None:
        """The shared counters, IKEv1's under an ``ikev1_`` prefix."""
        self.core.count(f"ikev1_{what}", n)

    def send(self, sa: V1Sa, data: bytes) -> None:
        self.core.send_plain(data, sa.local, sa.remote)

    def new_message_id(self, sa: V1Sa) -> int:
        while True:
            mid = int.from_bytes(self.rand(4), "big")
            if mid and mid not in sa.exchanges and mid not in sa.seen_info:
                return mid

    # ---- registry --------------------------------------------------------------------------------

    def register(self, sa: V1Sa) -> None:
        self.sas[sa.our_spi] = sa
        self.by_uid[sa.uid] = sa

    def unregister(self, sa: V1Sa) -> None:
        if self.sas.get(sa.our_spi) is sa:
            del self.sas[sa.our_spi]
        self.core._ike_spis.discard(sa.our_spi)
        self.by_uid.pop(sa.uid, None)
        key = (sa.spi_i, sa.remote[0])
        if self.half_open.get(key) is sa:
            del self.half_open[key]

    def sas_of(self, name: str) -> list[V1Sa]:
        return [s for s in self.sas.values() if s.conn is not None and s.conn.name == name]

    def candidates_for(self, local: Endpoint, remote: Endpoint) -> list[ConnectionConfig]:
        return [
            c
            for c in self.config.connections.values()
            if c.version == 1
            # a socket bound to the wildcard (the NAT-T one) does not say where it arrived
            and (local[0] in UNBOUND or addr_ok(c.local_addrs, local[0]))
            and addr_ok(c.remote_addrs, remote[0])
        ]

    # ---- commands -----------------------------------------------------------------------------

    def initiate(
        self,
        conn: ConnectionConfig,
        now: float,
        cfgs: list[ChildConfig],
        *,
        rekey_of: V1Sa | None = None,
        keying_try: int = 1,
    ) -> V1Sa | None:
        active = [
            s
            for s in self.sas_of(conn.name)
            if s.state in (IkeState.CONNECTING, IkeState.ESTABLISHED, IkeState.CREATED)
            and s.replaced_by is None
        ]
        if active and rekey_of is None:
            sa = max(active, key=lambda s: s.uid)
            if sa.state is not IkeState.ESTABLISHED:
                sa.pending_children.extend(c for c in cfgs if c not in sa.pending_children)
                return sa
            live = {c.config.name for c in sa.children if c.state is not ChildState.DESTROYED}
            busy = {
                ex.task.cfg.name
                for ex in sa.exchanges.values()
                if ex.kind == "quick" and not ex.done and ex.task is not None
            }
            for cfg in cfgs:
                if cfg.name not in live and cfg.name not in busy:
                    quick_mode.start(self, sa, cfg, now)
            self.refresh(sa)
            return sa
        remote_ip = conn.remote_addrs[0]
        local_ip = conn.local_addrs[0] if conn.local_addrs else ""
        sa = V1Sa(
            uid=self.core.new_uid(),
            conn=conn,
            initiator=True,
            mode=AGGRESSIVE if conn.aggressive else MAIN,
            spi_i=self.core.new_ike_spi(),
            spi_r=0,
            local=(local_ip, conn.local_port),
            remote=(remote_ip, conn.remote_port),
            created_at=now,
            last_recv=now,
        )
        sa.force_encap = self.core.force_encap or conn.encap
        sa.pending_children = list(cfgs)
        sa.rekey_of = rekey_of
        sa.keying_try = keying_try
        self.register(sa)
        self.log.info(
            "%s: initiating IKEv1 %s Mode to %s:%d",
            sa.peer_label(),
            "Aggressive" if sa.mode == AGGRESSIVE else "Main",
            remote_ip,
            conn.remote_port,
        )
        phase1.start(self, sa, now)
        self.refresh(sa)
        return sa

    def terminate(self, name: str, now: float, reason: str) -> None:
        for sa in self.sas_of(name):
            self.delete_ike(sa, reason, now)

    def terminate_child(self, name: str, child: str, now: float, reason: str) -> None:
        for sa in self.sas_of(name):
            if sa.state is not IkeState.ESTABLISHED:
                continue
            for c in list(sa.children):
                if c.name == child and c.state in (ChildState.INSTALLED, ChildState.REKEYED):
                    self.delete_child(sa, c, reason, now)
            self.refresh(sa)

    def rekey(self, name: str, now: float, *, ike: bool = True, children: bool = True) -> None:
        for sa in self.sas_of(name):
            if sa.state is not IkeState.ESTABLISHED or sa.replaced_by is not None:
                continue
            if children:
                for c in list(sa.children):
                    if c.state is ChildState.INSTALLED:
                        quick_mode.start(self, sa, c.config, now, rekey_of=c)
            if ike:
                self.rekey_ike(sa, now)
            self.refresh(sa)

    def shutdown(self, now: float) -> None:
        for sa in list(self.sas.values()):
            self.delete_ike(sa, "agent shutting down", now)

    # ---- input --------------------------------------------------------------------------------

    def receive(self, data: bytes, local: Endpoint, remote: Endpoint, now: float) -> None:
        try:
            header = w1.Header.from_bytes(data)
        except DecodeError:
            self.count("malformed")
            return
        if header.length != len(data):
            self.count("malformed")
            return
        if header.spi_r == 0:
            self._on_first(data, header, local, remote, now)
            return
        sa = self.sas.get(header.spi_i)
        if sa is not None and not (sa.initiator and sa.spi_r in (0, header.spi_r)):
            sa = None
        if sa is None:
            cand = self.sas.get(header.spi_r)
            if cand is not None and not cand.initiator and cand.spi_i == header.spi_i:
                sa = cand
        if sa is None or sa.state is IkeState.DESTROYED:
            self.count("unknown_spi")
            return
        if sa.initiator and sa.spi_r == 0:
            sa.spi_r = header.spi_r
        self._dispatch(sa, data, header, local, remote, now)
        self.refresh(sa)

    def _on_first(
        self, data: bytes, header: w1.Header, local: Endpoint, remote: Endpoint, now: float
    ) -> None:
        """A message with no responder cookie: a new Phase 1, or a retransmission of one."""
        ex_type = int(header.exchange)
        if ex_type == w1.ExchangeType.INFORMATIONAL:
            sa = self.sas.get(header.spi_i)
            if sa is not None and sa.initiator and sa.state is IkeState.CONNECTING:
                informational.receive_plain(self, sa, data, header, now)
                self.refresh(sa)
            else:
                self.count("unknown_spi")
            return
        if ex_type not in PHASE1_EXCHANGES or header.message_id != 0:
            self.count("malformed")
            return
        existing = self.half_open.get((header.spi_i, remote[0]))
        if existing is not None:
            ex = existing.exchanges.get(0)
            if ex is not None and ex.last_received == data:
                self._duplicate(existing, ex)
            return
        phase1.respond_first(self, data, header, local, remote, now)

    def _dispatch(
        self,
        sa: V1Sa,
        data: bytes,
        header: w1.Header,
        local: Endpoint,
        remote: Endpoint,
        now: float,
    ) -> None:
        ex = sa.exchanges.get(header.message_id)
        if ex is not None and ex.last_received == data:
            self._duplicate(sa, ex)
            return
        if sa.state is IkeState.CREATED:
            self.count("unexpected")
            return
        ex_type = int(header.exchange)
        self._follow_path(sa, local, remote)
        if ex_type in PHASE1_EXCHANGES and header.message_id == 0:
            if sa.state is not IkeState.CONNECTING:
                self.count("unexpected")
                return
            phase1.receive(self, sa, data, header, now)
        elif ex_type == w1.ExchangeType.QUICK_MODE and header.message_id:
            if sa.state not in (IkeState.ESTABLISHED, IkeState.REKEYED):
                self.count("unexpected")
                return
            quick_mode.receive(self, sa, data, header, now)
        elif ex_type == w1.ExchangeType.INFORMATIONAL:
            if not header.encrypted:
                if sa.state is IkeState.CONNECTING:
                    informational.receive_plain(self, sa, data, header, now)
                else:
                    self.count("unprotected")
                return
            if sa.keys is None or sa.cipher is None:
                self.count("unexpected")
                return
            # during Phase 1 (keys made, not finished) a peer that refuses our authentication
            # sends an encrypted notify whose IV follows the last Phase 1 block so far
            informational.receive(self, sa, data, header, now)
        else:
            self.count("unsupported_exchange")

    def _duplicate(self, sa: V1Sa, ex: Exchange) -> None:
        """The message we received last, again. Our answer is resent only when the peer
        retransmitted it because ours was lost: when our last message answered it and we do not
        resend on a timer ourselves. Otherwise every duplicate would draw one more message, and
        the duplicate of that one more still (a retransmission storm)."""
        if ex.last_sent and ex.answers == ex.last_received and ex.deadline is None:
            self.count("retransmitted_requests")
            for d in ex.last_sent:
                self.send(sa, d)
        else:
            self.count("duplicates")

    def _follow_path(self, sa: V1Sa, local: Endpoint, remote: Endpoint) -> None:
        if not sa.local[0] and local[0]:
            sa.local = (local[0], sa.local[1])
        if local[1] == NATT_PORT and sa.local[1] != NATT_PORT:
            sa.local = (sa.local[0] or local[0], NATT_PORT)
        if (
            remote != sa.remote
            and remote[0] == sa.remote[0]
            and (remote[1] == NATT_PORT or sa.encap)
        ):
            sa.remote = remote

    def received(self, sa: V1Sa, now: float) -> None:
        """An authenticated message arrived: the peer is alive."""
        sa.last_recv = now
        sa.dpd_waiting_since = None

    # ---- exchanges ------------------------------------------------------------------------------

    def exchange_send(self, sa: V1Sa, ex: Exchange, data: bytes, now: float, *, wait: bool) -> None:
        """Send the next message of ``ex``; ``wait``: we expect an answer and resend until then."""
        ex.last_sent = [data]
        ex.answers = ex.last_received
        ex.tries = 0
        ex.deadline = now + self.config.retransmit_timeout if wait else None
        self.send(sa, data)

    def finish_exchange(self, sa: V1Sa, ex: Exchange, now: float) -> None:
        ex.done = True
        ex.deadline = None
        ex.forget_at = now + FORGET_EXCHANGE

    def _retransmit(self, sa: V1Sa, ex: Exchange, now: float) -> None:
        ex.tries += 1
        if ex.tries > self.config.retransmit_tries:
            ex.deadline = None
            self.count("retransmit_timeout")
            what = f"{ex.kind} exchange" + (f" {ex.message_id:08x}" if ex.message_id else "")
            reason = f"peer did not answer {what} after {ex.tries - 1} retransmits"
            if ex.message_id == 0 and sa.initiator and sa.state is IkeState.CONNECTING:
                self.connect_failed(sa, reason, now)
            elif ex.message_id == 0:
                self.destroy_ike(sa, reason, now)
            else:
                quick_mode.timed_out(self, sa, ex, now)
            return
        self.count("retransmits")
        if (
            ex.message_id == 0
            and ex.kind == "main"
            and ex.initiator
            and ex.step == 5
            and ex.tries == 2
        ):
            # the peer answered our KE but not our HASH_I: it could not decrypt or verify it
            self.log.warning(
                "%s: no answer to Main Mode message 5 (identity and HASH_I): the peer's "
                "pre-shared key for us probably differs",
                sa.peer_label(),
            )
        self.log.info(
            "%s: retransmit %d of %s message %d (message ID %08x)",
            sa.peer_label(),
            ex.tries,
            ex.kind,
            ex.step,
            ex.message_id,
        )
        ex.deadline = now + self.config.retransmit_timeout * (self.config.retransmit_base**ex.tries)
        for d in ex.last_sent:
            self.send(sa, d)

    # ---- lifecycle -------------------------------------------------------------------------------

    # ---- timers ---------------------------------------------------------------------------------

    # ---- data plane events and listings ----------------------------------------------------------

    def handle_dataplane_event(self, event: DataplaneEvent, now: float) -> None:
        if not isinstance(event, SaExpired):
            return  # Acquires and usage reports are the core's (ondemand)
        for sa in list(self.sas.values()):
            child = sa.child_by_spi_in(event.spi) or sa.child_by_spi_out(event.spi)
            if child is None:
                continue
            if event.kind is ExpireKind.SOFT:
                if child.state is ChildState.INSTALLED and sa.state is IkeState.ESTABLISHED:
                    self.log.info(
                        "%s: CHILD_SA %s{%d} reached its soft volume limit, rekeying",
                        sa.peer_label(),
                        child.name,
                        child.reqid,
                    )
                    quick_mode.start(self, sa, child.config, now, rekey_of=child)
            else:
                self.log.warning(
                    "%s: CHILD_SA %s{%d} reached its hard limit, deleting",
                    sa.peer_label(),
                    child.name,
                    child.reqid,
                )
                self.delete_child(sa, child, "hard lifetime reached", now)
            self.refresh(sa)

    def list_sas(self) -> list:
        return [snapshot(sa) for sa in sorted(self.sas.values(), key=lambda s: s.uid)]
