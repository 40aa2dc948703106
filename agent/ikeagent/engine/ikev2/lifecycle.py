"""Mixed into the Engine: how IKE and Child SAs come up, get replaced and go away."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from ikeagent.config.model import ChildConfig
from ikeagent.engine.events import ChildDown, DeleteChild, IkeSaDown, IkeSaUp
from ikeagent.engine.ikev2.child_create import CreateChildTask, notify
from ikeagent.engine.ikev2.identities import same_identity
from ikeagent.engine.ikev2.ike_auth import IkeAuthTask
from ikeagent.engine.ikev2.ike_init import IkeInitTask
from ikeagent.engine.ikev2.informational import DeleteChildTask, DeleteIkeTask
from ikeagent.engine.ikev2.sa import ChildEntry, IkeSa
from ikeagent.engine.ikev2.state import ChildState, IkeState
from ikeagent.wire import v2 as w

if TYPE_CHECKING:
    from ikeagent.engine.core import Engine

REKEYED_GRACE = 30.0  # seconds we wait for the peer to delete an SA it replaced
HALF_OPEN_TIMEOUT = 30.0


class Lifecycle:
    # ---- IKE SA --------------------------------------------------------------------------

    def start_auth(self: Engine, sa: IkeSa, now: float) -> None:
        first = sa.pending_children.pop(0) if sa.pending_children else None
        self.queue_task(sa, IkeAuthTask(first), now, front=True)

    def restart_init(self: Engine, sa: IkeSa, now: float) -> None:
        sa.outstanding = None
        self.queue_task(sa, IkeInitTask(), now, front=True)

    def ike_established(self: Engine, sa: IkeSa, now: float) -> None:
        conn = sa.conn
        assert conn is not None
        sa.set_state(IkeState.ESTABLISHED)
        sa.established_at = now
        sa.half_open_until = None
        self.forget_half_open(sa)
        sa.rekey_at = self._ike_rekey_deadline(sa, now)
        sa.expire_at = self._ike_expire_deadline(sa, now)
        sa.reauth_at = self._ike_reauth_deadline(sa, now)
        sa.dpd_at = now + conn.dpd_delay if conn.dpd_delay > 0 else None
        sa.keepalive_at = self._keepalive_deadline(sa, now)
        self.emit(IkeSaUp(sa.name, sa.uid))
        assert sa.chosen is not None
        if self.log.isEnabledFor(logging.INFO):  # describe() is not free
            self.log.info(
                "%s: IKE_SA established between %s[%s]...%s[%s] (%s, %s)",
                sa.peer_label(),
                sa.local[0],
                sa.local_id,
                sa.remote[0],
                sa.remote_id,
                sa.chosen.describe(),
                "initiator" if sa.initiator else "responder",
            )

    def _keepalive_deadline(self: Engine, sa: IkeSa, now: float) -> float | None:
        """Behind a NAT (RFC 3948 2.3) we send keepalives so its mapping does not expire."""
        if not sa.nat_local or self.config.keep_alive <= 0:
            return None
        return now + self.config.keep_alive

    def _ike_rekey_deadline(self: Engine, sa: IkeSa, now: float) -> float | None:
        conn = sa.conn
        if conn is None or conn.rekey_time <= 0:
            return None
        rand = conn.rand_time if conn.rand_time > 0 else conn.rekey_time * 0.1
        return now + conn.rekey_time - self.rng.random() * min(rand, conn.rekey_time * 0.5)

    def _ike_expire_deadline(self: Engine, sa: IkeSa, now: float) -> float | None:
        """The hard lifetime (swanctl's over_time after rekey_time): an IKE SA not replaced
        by then goes, children and all."""
        conn = sa.conn
        if conn is None or conn.rekey_time <= 0:
            return None
        return now + conn.rekey_time + max(conn.over_time, 0.0)

    def start_pending_children(self: Engine, sa: IkeSa, now: float) -> None:
        while sa.pending_children:
            cfg = sa.pending_children.pop(0)
            self.queue_task(sa, CreateChildTask(cfg, packet=sa.packet_hints.get(cfg.name)), now)

    def schedule_retry(self: Engine, sa: IkeSa, cfg: ChildConfig, at: float) -> None:
        while sa.replaced_by is not None and sa.replaced_by.state is not IkeState.DESTROYED:
            sa = sa.replaced_by
        sa.child_retries.append((at, cfg))
        self._refresh(sa)

    def is_first_contact(self: Engine, sa: IkeSa) -> bool:
        return not any(
            o is not sa
            and o.conn is sa.conn
            and o.state in (IkeState.ESTABLISHED, IkeState.REKEYING)
            for o in self.sas.values()
        )

    def initial_contact(self: Engine, sa: IkeSa, now: float) -> None:
        """The peer says it has no other SAs with us: forget the ones we still hold."""
        for o in list(self.sas.values()):
            if o is sa or o.conn is not sa.conn:
                continue
            if not (
                same_identity(o.remote_id, sa.remote_id) and same_identity(o.local_id, sa.local_id)
            ):
                continue
            if o.state in (IkeState.ESTABLISHED, IkeState.REKEYING, IkeState.REKEYED):
                self.log.info(
                    "%s: INITIAL_CONTACT: dropping stale IKE_SA %s[%d]",
                    sa.peer_label(),
                    o.name,
                    o.uid,
                )
                self.destroy_ike(o, "replaced after the peer restarted (INITIAL_CONTACT)", now)

    def fail_ike(
        self: Engine,
        sa: IkeSa,
        reason: str,
        now: float,
        *,
        notify_peer: bool = True,
        after_response: bool = False,
    ) -> None:
        sa.fail_reason = reason
        self.count("ike_failures")
        self.log.error("%s: %s", sa.peer_label(), reason)
        if notify_peer and sa.sk_out is not None and "AUTHENTICATION_FAILED" in reason:
            self.send_oneshot(
                sa, w.ExchangeType.INFORMATIONAL, [notify(w.NotifyType.AUTHENTICATION_FAILED)]
            )
        if after_response:
            self.after_response(sa, lambda: self.destroy_ike(sa, reason, now))
        else:
            self.destroy_ike(sa, reason, now)

    def delete_ike(self: Engine, sa: IkeSa, reason: str, now: float) -> None:
        """Graceful: send a Delete for the IKE SA (and with it all its children)."""
        if sa.state in (IkeState.DESTROYED,):
            return
        if sa.state is IkeState.CONNECTING or sa.sk_out is None or sa.state is IkeState.CREATED:
            self.destroy_ike(sa, reason, now)
            return
        out = sa.outstanding
        if sa.closing is not None or (out is not None and isinstance(out.task, DeleteIkeTask)):
            return  # on its way already
        sa.queue.clear()
        sa.rekey_at = sa.reauth_at = None
        for c in sa.children:
            c.rekey_at = None  # its pairs go with it
        if out is not None:
            # one request in flight (RFC 7296 2.3): the Delete goes once it is answered. A Delete
            # in its message ID instead would get the peer's cached answer to it, if the peer
            # got it, and delete nothing. It is sent again now: a live peer answers at once
            # (again, if only its answer was lost). Unanswered by the next retransmit time,
            # the peer most likely never got it, and the Delete takes its message ID.
            sa.closing = reason
            out.give_way = True
            out.deadline = now + self.config.retransmit_timeout
            self.count("retransmits")
            self._send(sa, out.datagrams)
        self.queue_task(sa, DeleteIkeTask(reason), now)

    def delete_instead(self: Engine, sa: IkeSa, now: float) -> None:
        """The exchange a Delete waited behind went unanswered: the Delete takes its message ID
        (a peer that never got that request waits for that ID, RFC 7296 2.3)."""
        out = sa.outstanding
        assert out is not None
        self.log.info(
            "%s: %s unanswered: the IKE_SA's Delete takes its message ID %d",
            sa.peer_label(),
            out.task.describe(),
            out.message_id,
        )
        sa.next_msgid = out.message_id
        sa.outstanding = None
        self._kick(sa, now)

    def destroy_ike(self: Engine, sa: IkeSa, reason: str, now: float) -> None:
        if sa.state is IkeState.DESTROYED:
            return
        theirs = sa.rekeyed_by_peer
        if theirs is not None and theirs.state is not IkeState.DESTROYED and sa.children:
            # the peer replaced this SA while our own rekey was in flight: its SA carries on
            self._move_children(sa, theirs)
            sa.replaced_by = theirs
        for c in list(sa.children):
            self.remove_child(sa, c, reason, now)
        sa.set_state(IkeState.DESTROYED)
        sa.queue.clear()
        sa.outstanding = None
        self.unregister(sa)
        if sa.replaced_by is None:
            self.emit(IkeSaDown(sa.name, sa.uid, reason))
        if self.log.isEnabledFor(logging.INFO):
            self.log.info("%s: IKE_SA deleted: %s", sa.peer_label(), reason)

    def peer_dead(self: Engine, sa: IkeSa, reason: str, now: float) -> None:
        """The peer of an established SA stopped answering: each child follows its
        ``dpd_action`` (see ``ondemand``), then the SA goes."""
        conn = sa.conn
        cfgs = [c.config for c in sa.children if c.state is not ChildState.DESTROYED]
        restart = self.ondemand.before_peer_dead(conn, cfgs + sa.pending_children)
        self.count("dead_peers")
        self.destroy_ike(sa, reason, now)
        if conn is not None and self.config.connections.get(conn.name) is conn:
            self.ondemand.restart_after(conn, restart, now)

    def connect_failed(
        self: Engine, sa: IkeSa, reason: str, children: list[ChildConfig], now: float
    ) -> None:
        """Our IKE SA never came up (no answer): try again while ``keyingtries`` allows."""
        conn = sa.conn
        self.destroy_ike(sa, reason, now)
        if conn is None or not sa.initiator or self.config.connections.get(conn.name) is not conn:
            return
        if conn.keyingtries and sa.keying_try >= conn.keyingtries:
            return
        names = list(dict.fromkeys(c.name for c in children)) or None
        self.log.info(
            "%s: keyingtries: attempt %d%s",
            conn.name,
            sa.keying_try + 1,
            f" of {conn.keyingtries}" if conn.keyingtries else "",
        )
        self.initiate(conn.name, now, names, keying_try=sa.keying_try + 1)

    # ---- Child SAs -------------------------------------------------------------------------

    def remove_child(self: Engine, sa: IkeSa, child: ChildEntry, reason: str, now: float) -> None:
        if child.state is ChildState.DESTROYED:
            return
        child.set_state(ChildState.DESTROYED)
        holder = (
            sa
            if child in sa.children
            else next((s for s in self.sas.values() if child in s.children), sa)
        )
        if child in holder.children:
            holder.children.remove(child)
        self.ondemand.retiring(child)
        # the policy stays while a pair holds its reqid (a rekeyed pair, or one of another IKE
        # SA with the same policy); the Child SA is down when its rekey chain has no pair left
        left = [c for s in self.sas.values() for c in s.children if c.reqid == child.reqid]
        if any(c.state is ChildState.INSTALLED and c.order > child.order for c in left):
            # replaced (rekey, reauthentication): the peer may have sent on this pair just
            # before it heard; its inbound SA stays a moment for that. Only when a newer pair
            # is there: the data plane sends on a reqid's newest pair, and a lingering pair
            # must never be that one
            self.linger_pair(child.reqid, child.spi_in, child.spi_out, now)
        else:
            self.emit(DeleteChild(child.reqid, child.spi_in, child.spi_out))
            self.release_spi_in(child.spi_in)
        if not left:
            self.ondemand.pairs_gone(child.reqid)
        if not any(c.lineage == child.lineage for c in left):
            self.emit(ChildDown(child.name, sa.name, child.reqid, reason))
        if self.log.isEnabledFor(logging.INFO):
            self.log.info(
                "%s: CHILD_SA %s{%d} SPIs %08x_i %08x_o deleted: %s",
                sa.peer_label(),
                child.name,
                child.reqid,
                child.spi_in,
                child.spi_out,
                reason,
            )

    def delete_children(
        self: Engine,
        sa: IkeSa,
        children: list[ChildEntry],
        reason: str,
        now: float,
        *,
        close_ike: bool = False,
    ) -> None:
        """Delete ``children`` (INFORMATIONAL); with ``close_ike`` the IKE SA follows when no
        installed child is left on it."""
        self.queue_task(sa, DeleteChildTask(children, reason, close_ike=close_ike), now)

    def loses_rekey_collision(self: Engine, old: ChildEntry, nonces: tuple[bytes, bytes]) -> bool:
        """RFC 7296 2.8.1: when both ends rekeyed ``old`` at once, the pair whose lowest nonce
        is the lower is redundant; True when that is ours (``nonces``)."""
        theirs = old.peer_replacement
        if theirs is None or theirs.state is ChildState.DESTROYED:
            return False
        return min(nonces) < min(theirs.nonces)

    def finish_child_rekey(
        self: Engine, sa: IkeSa, old: ChildEntry, new: ChildEntry, now: float
    ) -> None:
        theirs = old.peer_replacement
        if theirs is not None and theirs.state is not ChildState.DESTROYED:
            if self.loses_rekey_collision(old, new.nonces):
                self.log.info(
                    "%s: CHILD_SA %s rekey collision lost: deleting our redundant SA",
                    sa.peer_label(),
                    old.name,
                )
                if old.state not in (ChildState.REKEYED, ChildState.DESTROYED, ChildState.DELETING):
                    old.set_state(ChildState.REKEYED)
                    old.delete_at = now + REKEYED_GRACE
                self.delete_children(sa, [new], "redundant after a rekey collision", now)
                return
            self.log.info("%s: CHILD_SA %s rekey collision won", sa.peer_label(), old.name)
        if old.state is not ChildState.DESTROYED:
            if old.state is not ChildState.REKEYED:
                old.set_state(ChildState.REKEYED)
            self.delete_children(sa, [old], "rekeyed", now)

    def peer_rekeyed_child(
        self: Engine, sa: IkeSa, old: ChildEntry, new: ChildEntry, now: float
    ) -> None:
        # the pair the peer made: we send on it once the peer deletes the old one
        old.peer_replacement = new
        if old.state is ChildState.REKEYING:
            return
        old.set_state(ChildState.REKEYED)
        old.delete_at = now + REKEYED_GRACE

    # ---- IKE SA rekeying -------------------------------------------------------------------

    def _move_children(self: Engine, old: IkeSa, new: IkeSa) -> None:
        new.children.extend(old.children)
        old.children = []
        # queued child work follows the children to the new SA
        keep = []
        for t in old.queue:
            (new.queue if isinstance(t, CreateChildTask | DeleteChildTask) else keep).append(t)
        old.queue.clear()
        old.queue.extend(keep)
        new.child_retries.extend(old.child_retries)
        old.child_retries = []

    def _adopt(self: Engine, old: IkeSa, new: IkeSa, now: float) -> None:
        self.register(new)
        new.set_state(IkeState.ESTABLISHED)
        new.established_at = now
        new.last_recv = now
        new.rekey_at = self._ike_rekey_deadline(new, now)
        new.expire_at = self._ike_expire_deadline(new, now)
        new.reauth_at = old.reauth_at  # a rekey does not authenticate the peer again
        conn = new.conn
        new.dpd_at = now + conn.dpd_delay if conn is not None and conn.dpd_delay > 0 else None
        new.keepalive_at = self._keepalive_deadline(new, now)
        old.replaced_by = new
        self.emit(IkeSaUp(new.name, new.uid))

    def finish_ike_rekey(self: Engine, old: IkeSa, new: IkeSa, now: float) -> None:
        self._adopt(old, new, now)
        theirs = old.rekeyed_by_peer
        if theirs is not None and theirs.state is not IkeState.DESTROYED:
            if min(new.ni, new.nr) < min(theirs.ni, theirs.nr):
                self.log.info(
                    "%s: IKE_SA rekey collision lost: deleting our redundant IKE_SA",
                    old.peer_label(),
                )
                self._move_children(old, theirs)
                if old.state is not IkeState.REKEYED:
                    old.set_state(IkeState.REKEYED)
                old.delete_at = now + REKEYED_GRACE
                old.replaced_by = theirs
                new.replaced_by = theirs
                self.queue_task(new, DeleteIkeTask("redundant after an IKE rekey collision"), now)
                self._kick(theirs, now)
                if old.peer_deleted:
                    self.destroy_ike(old, "deleted by peer after a rekey collision", now)
                return
            self.log.info("%s: IKE_SA rekey collision won", old.peer_label())
            self._move_children(theirs, new)
            theirs.replaced_by = new
        self._move_children(old, new)
        if old.state is not IkeState.REKEYED:
            old.set_state(IkeState.REKEYED)
        self.log.info(
            "%s: IKE_SA rekeyed to %s[%d] (SPIs %016x_i %016x_r)",
            old.peer_label(),
            new.name,
            new.uid,
            new.spi_i,
            new.spi_r,
        )
        self.queue_task(old, DeleteIkeTask("rekeyed"), now)
        self._kick(new, now)
        if old.closing is not None:
            # the rekey was in flight when the SA was to go: its successor goes in its place
            self.delete_ike(new, old.closing, now)

    def peer_rekey_wins(self: Engine, old: IkeSa, theirs: IkeSa, now: float) -> None:
        self._move_children(old, theirs)
        if old.peer_deleted and old.outstanding is None:
            self.destroy_ike(old, "deleted by peer after a rekey collision", now)
            return
        if old.state is not IkeState.REKEYED:
            old.set_state(IkeState.REKEYED)
        old.replaced_by = theirs
        old.delete_at = now + REKEYED_GRACE
        self._kick(theirs, now)

    def peer_rekeyed_ike(self: Engine, old: IkeSa, new: IkeSa, now: float) -> None:
        self._adopt(old, new, now)
        if old.state is IkeState.REKEYING:
            # collision: the children stay until we know which new SA survives
            old.rekeyed_by_peer = new
        else:
            self._move_children(old, new)
            old.set_state(IkeState.REKEYED)
            old.delete_at = now + REKEYED_GRACE
        self.log.info("%s: IKE_SA rekeyed by peer to %s[%d]", old.peer_label(), new.name, new.uid)
        # the peer learns of the new SA from our response: send nothing on it before that
        self.after_response(old, lambda: self._kick(new, now))
