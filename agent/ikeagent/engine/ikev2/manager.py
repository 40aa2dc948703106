"""The task manager of IKEv2 SAs: message IDs (window size 1), retransmission with backoff,
requests dispatched by exchange type, responses matched to the task in flight."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ikeagent.engine.ikev2 import child_create, ike_auth, ike_rekey, informational
from ikeagent.engine.ikev2.protect import ProtectionError, encode_protected, open_protected
from ikeagent.engine.ikev2.sa import IkeSa, Outstanding
from ikeagent.engine.ikev2.state import IkeState
from ikeagent.wire import v2 as w
from ikeagent.wire.errors import DecodeError, UnsupportedCriticalPayload

if TYPE_CHECKING:
    from ikeagent.engine.core import Engine


def _create_child_sa(
    eng: Engine, sa: IkeSa, payloads: list[w.Payload], now: float
) -> list[w.Payload]:
    sa_p = w.payload(payloads, w.SecurityAssociation)
    if sa_p is not None and sa_p.proposals and int(sa_p.proposals[0].protocol) == w.ProtocolId.IKE:
        return ike_rekey.respond(eng, sa, payloads, sa_p, now)
    if sa.state in (IkeState.REKEYING, IkeState.REKEYED, IkeState.DELETING):
        # RFC 7296 2.25: our IKE rekey or delete is in progress
        return [child_create.notify(w.NotifyType.TEMPORARY_FAILURE)]
    return child_create.respond(eng, sa, payloads, now, in_auth=False)


def _ike_auth(eng: Engine, sa: IkeSa, payloads: list[w.Payload], now: float) -> list[w.Payload]:
    return ike_auth.respond(eng, sa, payloads, now)


RequestHandler = Callable[["Engine", IkeSa, list[w.Payload], float], list[w.Payload]]

REQUEST_HANDLERS: dict[int, RequestHandler] = {
    w.ExchangeType.IKE_AUTH: _ike_auth,
    w.ExchangeType.CREATE_CHILD_SA: _create_child_sa,
    w.ExchangeType.INFORMATIONAL: informational.respond,
}

# which exchanges may be requested in which state of the IKE SA
ALLOWED: dict[int, frozenset[IkeState]] = {
    w.ExchangeType.IKE_AUTH: frozenset({IkeState.CONNECTING}),
    w.ExchangeType.CREATE_CHILD_SA: frozenset(
        {IkeState.ESTABLISHED, IkeState.REKEYING, IkeState.REKEYED, IkeState.DELETING}
    ),
    w.ExchangeType.INFORMATIONAL: frozenset(
        {
            IkeState.ESTABLISHED,
            IkeState.REKEYING,
            IkeState.REKEYED,
            IkeState.DELETING,
            IkeState.CONNECTING,
        }
    ),
}


class TaskManager:
    """Mixed into the Engine: everything about one SA's exchanges."""

    def queue_task(self: Engine, sa: IkeSa, task: Any, now: float, *, front: bool = False) -> None:
        if front:
            sa.queue.appendleft(task)
        else:
            sa.queue.append(task)
        self._kick(sa, now)

    def _kick(self: Engine, sa: IkeSa, now: float) -> None:
        while sa.outstanding is None and sa.queue and sa.state is not IkeState.DESTROYED:
            task = sa.queue.popleft()
            if getattr(task, "plain", False):
                data = task.build_plain(self, sa, now)
                datagrams = [data]
                msgid = 0
                sa.next_msgid = 1
                if sa.state is IkeState.CREATED:
                    sa.set_state(IkeState.CONNECTING)
            else:
                if sa.sk_out is None:
                    continue
                payloads = task.build(self, sa, now)
                if payloads is None or sa.state is IkeState.DESTROYED:
                    continue
                msgid = sa.next_msgid
                sa.next_msgid += 1
                datagrams = encode_protected(
                    sa, task.exchange, msgid, False, payloads, self.rng, self.ike_mtu(sa)
                )
            sa.outstanding = Outstanding(
                task, msgid, datagrams, 0, now + self.config.retransmit_timeout
            )
            self._send(sa, datagrams)
        self._refresh(sa)

    def _retransmit(self: Engine, sa: IkeSa, now: float) -> None:
        out = sa.outstanding
        assert out is not None
        out.tries += 1
        if out.tries > self.config.retransmit_tries:
            sa.outstanding = None
            self.count("retransmit_timeout")
            on_timeout = getattr(out.task, "on_timeout", None)
            reason = f"peer did not answer {out.task.describe()} after {out.tries - 1} retransmits"
            if on_timeout is not None:
                on_timeout(self, sa, now)
            elif sa.state in (IkeState.ESTABLISHED, IkeState.REKEYING):
                self.peer_dead(sa, reason, now)
            elif sa.state is IkeState.CONNECTING and sa.initiator:
                first = getattr(out.task, "child", None)
                children = ([first] if first is not None else []) + sa.pending_children
                self.connect_failed(sa, reason, children, now)
            else:
                self.destroy_ike(sa, reason, now)
            return
        self.count("retransmits")
        self.log.info(
            "%s: retransmit %d of %s (message ID %d)",
            sa.peer_label(),
            out.tries,
            out.task.describe(),
            out.message_id,
        )
        out.deadline = now + self.config.retransmit_timeout * (
            self.config.retransmit_base**out.tries
        )
        self._send(sa, out.datagrams)

    def _send(self: Engine, sa: IkeSa, datagrams: list[bytes]) -> None:
        for d in datagrams:
            self.send_plain(d, sa.local, sa.remote)

    # ---- input -----------------------------------------------------------------------------

    def _on_response(
        self: Engine, sa: IkeSa, data: bytes, header: w.Header, outer: list[w.Payload], now: float
    ) -> None:
        out = sa.outstanding
        if out is None or header.message_id != out.message_id:
            self.count("unexpected_response")
            return
        task = out.task
        if getattr(task, "plain", False):
            if header.exchange != w.ExchangeType.IKE_SA_INIT:
                self.count("unexpected_response")
                return
            sa.outstanding = None
            sa.last_recv = now
            task.on_plain_response(self, sa, data, header, outer, now)
            self._kick(sa, now)
            return
        if header.exchange != task.exchange:
            self.count("unexpected_response")
            return
        try:
            payloads = open_protected(sa, data, header, outer, now)
        except ProtectionError as exc:
            self.count("integrity_failures")
            self.log.info("%s: dropped response: %s", sa.peer_label(), exc)
            return
        except DecodeError as exc:
            self.count("malformed")
            self.log.info("%s: dropped malformed response: %s", sa.peer_label(), exc)
            return
        if payloads is None:
            return  # more fragments to come
        self.authenticated_path(sa)
        sa.outstanding = None
        sa.last_recv = now
        task.on_response(self, sa, payloads, now)
        self._kick(sa, now)

    def _on_request(
        self: Engine, sa: IkeSa, data: bytes, header: w.Header, outer: list[w.Payload], now: float
    ) -> None:
        mid = header.message_id
        if mid != sa.expected_msgid:
            if sa.last_response is not None and sa.last_response[0] == mid:
                last = outer[-1] if outer else None
                # resend our answer once per retransmitted request (only for the first fragment)
                if not isinstance(last, w.EncryptedFragment) or last.fragment_number == 1:
                    self.count("retransmitted_requests")
                    self._reply_path(sa, sa.last_response[1])
            else:
                self.count("invalid_message_id")
            return
        handler = REQUEST_HANDLERS.get(int(header.exchange))
        if handler is None or sa.state not in ALLOWED.get(int(header.exchange), frozenset()):
            self.count("unexpected_request")
            self.log.info(
                "%s: ignored %s request in state %s",
                sa.peer_label(),
                w.ExchangeType(int(header.exchange)).name,
                sa.state.value,
            )
            return
        try:
            payloads = open_protected(sa, data, header, outer, now)
        except ProtectionError as exc:
            self.count("integrity_failures")
            self.log.info("%s: dropped request: %s", sa.peer_label(), exc)
            return
        except UnsupportedCriticalPayload as exc:
            self._answer(
                sa,
                header,
                [
                    child_create.notify(
                        w.NotifyType.UNSUPPORTED_CRITICAL_PAYLOAD, bytes([exc.payload_type & 0xFF])
                    )
                ],
                now,
            )
            return
        except DecodeError as exc:
            self.count("malformed")
            self.log.info("%s: malformed request: %s", sa.peer_label(), exc)
            self._answer(sa, header, [child_create.notify(w.NotifyType.INVALID_SYNTAX)], now)
            return
        if payloads is None:
            return
        self.authenticated_path(sa)
        sa.last_recv = now
        self._after = []
        reply = handler(self, sa, payloads, now)
        self._answer(sa, header, reply, now)
        after, self._after = self._after, []
        for fn in after:
            fn()
        self._kick(sa, now)

    def _answer(
        self: Engine, sa: IkeSa, header: w.Header, reply: list[w.Payload], now: float
    ) -> None:
        datagrams = encode_protected(
            sa, header.exchange, header.message_id, True, reply, self.rng, self.ike_mtu(sa)
        )
        sa.expected_msgid = header.message_id + 1
        sa.last_response = (header.message_id, datagrams)
        self._reply_path(sa, datagrams)

    def _reply_path(self: Engine, sa: IkeSa, datagrams: list[bytes]) -> None:
        """Responses go back where the request came from (RFC 7296 2.11)."""
        local, remote = self._path if self._path is not None else (sa.local, sa.remote)
        for d in datagrams:
            self.send_plain(d, (local[0] or sa.local[0], local[1]), remote)

    def ike_mtu(self: Engine, sa: IkeSa) -> int:
        """Largest IKE message in one datagram: fragment_size is the IP packet (as strongSwan's)."""
        overhead = (48 if ":" in sa.remote[0] else 28) + (4 if sa.remote[1] == 4500 else 0)
        return max(self.config.fragment_size - overhead, 256)

    def after_response(self: Engine, sa: IkeSa, fn: Callable[[], None]) -> None:
        self._after.append(fn)

    def send_oneshot(
        self: Engine, sa: IkeSa, exchange: w.ExchangeType, payloads: list[w.Payload]
    ) -> None:
        """A request we do not wait for (a notify before we tear the SA down)."""
        if sa.sk_out is None:
            return
        msgid = sa.next_msgid
        sa.next_msgid += 1
        self._send(
            sa, encode_protected(sa, exchange, msgid, False, payloads, self.rng, self.ike_mtu(sa))
        )
