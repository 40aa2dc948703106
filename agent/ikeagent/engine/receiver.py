"""Mixed into the Engine: what comes in. Datagrams (IKEv1 ones are handed to the IKEv1
engine; IKEv2 ones are checked, matched to their IKE SA, or start a responder SA) and the data
plane's events (SA expiries, Acquires, usage answers)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ikeagent.config.model import ConnectionConfig
from ikeagent.dataplane.base import (
    Acquire,
    DataplaneEvent,
    Endpoint,
    ExpireKind,
    SaExpired,
    SaUsage,
)
from ikeagent.engine.addresses import addr_ok
from ikeagent.engine.ikev2 import ike_init
from ikeagent.engine.ikev2.child_create import CreateChildTask
from ikeagent.engine.ikev2.lifecycle import HALF_OPEN_TIMEOUT
from ikeagent.engine.ikev2.sa import IkeSa
from ikeagent.engine.ikev2.state import ChildState, IkeState
from ikeagent.wire import v2 as w
from ikeagent.wire.errors import DecodeError, InvalidLength, Truncated

if TYPE_CHECKING:
    from ikeagent.engine.core import Engine

MAX_DATAGRAM = 65535


class Receiver:
    def receive_datagram(
        self: Engine, data: bytes, local: Endpoint, remote: Endpoint, now: float
    ) -> None:
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

    def _update_path(self: Engine, sa: IkeSa, local: Endpoint, remote: Endpoint) -> None:
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

    def authenticated_path(self: Engine, sa: IkeSa) -> None:
        if self._path is not None:
            self._update_path(sa, *self._path)

    def _on_init(
        self: Engine,
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
        self: Engine,
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

    def candidates_for(self: Engine, local: Endpoint, remote: Endpoint) -> list[ConnectionConfig]:
        return [
            c
            for c in self.config.connections.values()
            if c.version == 2
            and addr_ok(c.local_addrs, local[0])
            and addr_ok(c.remote_addrs, remote[0])
        ]

    def cookies_required(self: Engine) -> bool:
        return len(self.half_open) >= self.config.cookie_threshold

    def handle_dataplane_event(self: Engine, event: DataplaneEvent, now: float) -> None:
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
