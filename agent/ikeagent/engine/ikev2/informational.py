"""INFORMATIONAL exchanges: deletes (RFC 7296 1.4.1), liveness checks (2.4) and notifies."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from ikeagent.engine.events import ActivateOutbound
from ikeagent.engine.ikev2.sa import ChildEntry, IkeSa
from ikeagent.engine.ikev2.state import ChildState, IkeState
from ikeagent.wire import v2 as w

if TYPE_CHECKING:
    from ikeagent.engine.core import Engine


class DeleteChildTask:
    exchange = w.ExchangeType.INFORMATIONAL

    def __init__(self, children: list[ChildEntry], reason: str, *, close_ike: bool = False) -> None:
        self.children = children
        self.reason = reason
        self.close_ike = close_ike

    def describe(self) -> str:
        return "delete CHILD_SA " + ", ".join(c.name for c in self.children)

    def build(self, eng: Engine, sa: IkeSa, now: float) -> list[w.Payload] | None:
        todo = [c for c in self.children if c.state is not ChildState.DESTROYED]
        if not todo:
            return None
        for c in todo:
            if c.state is not ChildState.DELETING:
                c.set_state(ChildState.DELETING)
        self.children = todo
        return [w.Delete(w.ProtocolId.ESP, 4, tuple(c.spi_in for c in todo))]

    def on_response(self, eng: Engine, sa: IkeSa, payloads: list[w.Payload], now: float) -> None:
        for c in self.children:
            eng.remove_child(sa, c, self.reason, now)
        if (
            self.close_ike
            and sa.state is IkeState.ESTABLISHED
            and not any(c.state is ChildState.INSTALLED for c in sa.children)
        ):
            eng.delete_ike(sa, "its last CHILD_SA closed for inactivity", now)


class DeleteIkeTask:
    exchange = w.ExchangeType.INFORMATIONAL

    def __init__(self, reason: str) -> None:
        self.reason = reason

    def describe(self) -> str:
        return "delete IKE_SA"

    def build(self, eng: Engine, sa: IkeSa, now: float) -> list[w.Payload] | None:
        if sa.state is not IkeState.DELETING:
            sa.set_state(IkeState.DELETING)
        return [w.Delete(w.ProtocolId.IKE, 0, ())]

    def on_response(self, eng: Engine, sa: IkeSa, payloads: list[w.Payload], now: float) -> None:
        eng.destroy_ike(sa, self.reason, now)

    def on_timeout(self, eng: Engine, sa: IkeSa, now: float) -> None:
        eng.destroy_ike(sa, self.reason + " (peer did not answer the delete)", now)


class DpdTask:
    exchange = w.ExchangeType.INFORMATIONAL

    def describe(self) -> str:
        return "liveness check"

    def build(self, eng: Engine, sa: IkeSa, now: float) -> list[w.Payload] | None:
        return []

    def on_response(self, eng: Engine, sa: IkeSa, payloads: list[w.Payload], now: float) -> None:
        pass

    def on_timeout(self, eng: Engine, sa: IkeSa, now: float) -> None:
        eng.peer_dead(sa, "peer did not answer liveness checks (dead peer)", now)


def respond(eng: Engine, sa: IkeSa, payloads: list[w.Payload], now: float) -> list[w.Payload]:
    out: list[w.Payload] = []
    for p in payloads:
        if isinstance(p, w.Delete):
            if int(p.protocol) == w.ProtocolId.IKE:
                if eng.log.isEnabledFor(logging.INFO):
                    eng.log.info("%s: peer deleted the IKE_SA", sa.peer_label())
                theirs = sa.rekeyed_by_peer
                out_task = sa.outstanding.task if sa.outstanding is not None else None
                if (
                    theirs is not None
                    and out_task is not None
                    and out_task.describe() == "rekey IKE_SA"
                ):
                    # the peer won a rekey collision and its delete overtook its answer to our
                    # rekey: keep this SA until that answer comes, so we can delete the
                    # redundant SA it created for us
                    sa.peer_deleted = True
                    eng.after_response(sa, lambda t=theirs: eng.peer_rekey_wins(sa, t, now))
                    return []

                def gone() -> None:
                    closed = [
                        c.config
                        for c in sa.children
                        if c.state is ChildState.INSTALLED and eng.closes_lineage(c, sa)
                    ]
                    conn = sa.conn
                    start = eng.ondemand.peer_closing(conn, closed)
                    eng.destroy_ike(sa, "deleted by peer", now)
                    eng.ondemand.start_closed(conn, start, now)

                eng.after_response(sa, gone)
                return []
            if int(p.protocol) in (w.ProtocolId.ESP, w.ProtocolId.AH):
                ours: list[int] = []
                start: list[str] = []
                for spi in p.spis:
                    child = sa.child_by_spi_out(spi)
                    if child is None:
                        continue
                    if child.state is not ChildState.DELETING:
                        # not a crossing delete of ours: answer with our inbound SPI
                        ours.append(child.spi_in)
                    successor = child.peer_replacement
                    if successor is not None and successor.state is ChildState.INSTALLED:
                        # the peer rekeyed this pair and now deletes it: it has the new pair,
                        # so our traffic moves to the one it made (not to a pair we made that
                        # lost a rekey collision and is about to go)
                        eng.emit(
                            ActivateOutbound(successor.reqid, successor.spi_in, successor.spi_out)
                        )
                    if child.state is ChildState.INSTALLED and eng.closes_lineage(child):
                        start += eng.ondemand.peer_closing(sa.conn, [child.config])
                    eng.remove_child(sa, child, "deleted by peer", now)
                if start:
                    eng.after_response(
                        sa,
                        lambda c=sa.conn, names=start: eng.ondemand.start_closed(c, names, now),
                    )
                if ours:
                    out.append(w.Delete(w.ProtocolId(int(p.protocol)), 4, tuple(ours)))
        elif isinstance(p, w.Notify):
            t = int(p.notify_type)
            if t == w.NotifyType.AUTHENTICATION_FAILED:
                # charon tells an initiator this way that it rejected our AUTH (RFC 7296 2.21.2)
                eng.log.error(
                    "%s: AUTHENTICATION_FAILED: the peer rejected our authentication",
                    sa.peer_label(),
                )
                eng.after_response(
                    sa, lambda: eng.destroy_ike(sa, "peer sent AUTHENTICATION_FAILED", now)
                )
            elif t < 16384:
                eng.log.warning(
                    "%s: peer sent error notify %s", sa.peer_label(), w.NotifyType(t).name
                )
            else:
                eng.log.debug(
                    "%s: peer sent %s, acknowledged", sa.peer_label(), w.NotifyType(t).name
                )
    return out
