"""Mixed into the IKEv1 engine: how ISAKMP SAs come up, are replaced (a new Phase 1 adopts the
IPsec SAs: make-before-break) and go away, and how IPsec SAs are removed."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ikeagent.engine.events import (
    ActivateOutbound,
    ChildDown,
    DeleteChild,
    IkeSaDown,
    IkeSaUp,
)
from ikeagent.engine.ikev1 import informational, quick_mode
from ikeagent.engine.ikev1.phase1_keys import describe
from ikeagent.engine.ikev1.sa import AGGRESSIVE, V1Child, V1Sa
from ikeagent.engine.ikev2.state import ChildState, IkeState

if TYPE_CHECKING:
    from ikeagent.engine.ikev1.engine import V1Engine

# seconds we wait for a peer that replaced its ISAKMP SA with us to delete the old one (charon
# never does: it drops it silently once the new one has its IPsec SAs); then we delete it
REKEYED_GRACE = 10.0
INBOUND_LINGER = 1.0  # a retired pair still receives this long after our Delete
# We delete an ISAKMP SA we replaced this long after the new one stands, not at once: a peer
# moves the IPsec SAs to the new ISAKMP SA when it sees it (charon in a job of its own), and a
# Delete that overtakes that move would take the IPsec SAs down with the old ISAKMP SA.
REPLACED_DELETE_DELAY = 2.0


class Lifecycle:
    def ike_established(self: V1Engine, sa: V1Sa, now: float) -> None:
        conn = sa.conn
        assert conn is not None and sa.transform is not None
        sa.set_state(IkeState.ESTABLISHED)
        sa.established_at = now
        sa.half_open_until = None
        key = (sa.spi_i, sa.remote[0])
        if self.half_open.get(key) is sa:
            del self.half_open[key]
        life = sa.transform.life_seconds or 0
        if life:
            sa.expire_at = now + life
        sa.rekey_at = self._rekey_deadline(sa, now, life)
        sa.dpd_at = now + conn.dpd_delay if conn.dpd_delay > 0 and sa.dpd else None
        if sa.nat_local and self.config.keep_alive > 0:
            sa.keepalive_at = now + self.config.keep_alive
        self.core.emit(IkeSaUp(sa.name, sa.uid))
        self.log.info(
            "%s: IKE_SA (IKEv1 %s Mode) established between %s[%s]...%s[%s] (%s, %s)",
            sa.peer_label(),
            "Aggressive" if sa.mode == AGGRESSIVE else "Main",
            sa.local[0],
            sa.local_id,
            sa.remote[0],
            sa.remote_id,
            describe(sa),
            "initiator" if sa.initiator else "responder",
        )
        old = sa.rekey_of
        if old is not None:
            sa.rekey_of = None
            self.adopt(old, sa, now)
        elif sa.initial_contact:
            informational.initial_contact(self, sa, now)
        else:
            self.adopt_from_peer_reauth(sa, now)
        while sa.pending_children:
            quick_mode.start(self, sa, sa.pending_children.pop(0), now)

    def _rekey_deadline(self: V1Engine, sa: V1Sa, now: float, life: float) -> float | None:
        conn = sa.conn
        if conn is None or conn.rekey_time <= 0:
            return None
        rekey = conn.rekey_time
        if life and rekey >= life:
            rekey = life * 0.9
        rand = conn.rand_time if conn.rand_time > 0 else rekey * 0.1
        if not sa.initiator:
            # let the initiator's timer fire first (fewer collisions), as strongSwan's jitter does
            rand = min(rand, rekey * 0.05)
            rekey = min(rekey + rekey * 0.05, life * 0.95) if life else rekey * 1.05
        return now + rekey - self.core.rng.random() * min(rand, rekey * 0.5)

    def rekey_ike(self: V1Engine, sa: V1Sa, now: float) -> None:
        """IKEv1 has no IKE SA rekey: a new Phase 1 replaces the old one, which is deleted once
        the new one stands and has adopted the IPsec SAs (make-before-break)."""
        if sa.conn is None or not sa.conn.remote_addrs:
            return
        if any(s.rekey_of is sa for s in self.sas.values()):
            return
        sa.rekey_at = None
        self.log.info("%s: ISAKMP SA is due: starting a new Phase 1 to replace it", sa.peer_label())
        new = self.initiate(sa.conn, now, [], rekey_of=sa)
        if new is not None:
            new.remote = (sa.remote[0], sa.conn.remote_port)

    def adopt(self: V1Engine, old: V1Sa, new: V1Sa, now: float) -> None:
        """The new ISAKMP SA takes over the IPsec SAs of the old one, which is deleted shortly
        after (REPLACED_DELETE_DELAY)."""
        if old.state is IkeState.DESTROYED:
            return
        new.children.extend(old.children)
        old.children = []
        old.replaced_by = new
        old.rekey_at = old.dpd_at = old.keepalive_at = None
        old.delete_at = now + REPLACED_DELETE_DELAY
        old.delete_reason = "replaced by a new ISAKMP SA"
        self.log.info("%s: ISAKMP SA replaced by %s[%d]", old.peer_label(), new.name, new.uid)
        self.refresh(old)

    def adopt_from_peer_reauth(self: V1Engine, sa: V1Sa, now: float) -> None:
        """The peer replaced its ISAKMP SA with us (a reauthentication): our older SA with the
        same connection and identities hands its IPsec SAs to the new one, as strongSwan does."""
        for o in list(self.sas.values()):
            if (
                o is sa
                or o.conn is None
                or sa.conn is None
                or o.conn.name != sa.conn.name
                or o.state is not IkeState.ESTABLISHED
                or o.remote[0] != sa.remote[0]
                or o.replaced_by is not None
            ):
                continue
            if o.remote_id != sa.remote_id:
                continue
            sa.children.extend(o.children)
            o.children = []
            o.replaced_by = sa
            o.rekey_at = None
            o.delete_at = now + REKEYED_GRACE
            self.log.info(
                "%s: the peer replaced this ISAKMP SA with %s[%d]", o.peer_label(), sa.name, sa.uid
            )
            self.refresh(o)

    def connect_failed(self: V1Engine, sa: V1Sa, reason: str, now: float) -> None:
        """Our Phase 1 never completed (no answer): try again while ``keyingtries`` allows."""
        conn = sa.conn
        children = list(sa.pending_children)
        rekey_of = sa.rekey_of
        self.destroy_ike(sa, reason, now)
        if conn is None or rekey_of is not None:
            return
        if self.core.config.connections.get(conn.name) is not conn:
            return
        if conn.keyingtries and sa.keying_try >= conn.keyingtries:
            return
        self.log.info(
            "%s: keyingtries: attempt %d%s",
            conn.name,
            sa.keying_try + 1,
            f" of {conn.keyingtries}" if conn.keyingtries else "",
        )
        self.initiate(conn, now, children, keying_try=sa.keying_try + 1)

    def peer_dead(self: V1Engine, sa: V1Sa, reason: str, now: float) -> None:
        """The peer stopped answering: each child follows its ``dpd_action`` (``ondemand``)."""
        conn = sa.conn
        cfgs = [c.config for c in sa.children if c.state is not ChildState.DESTROYED]
        restart = self.core.ondemand.before_peer_dead(conn, cfgs + sa.pending_children)
        self.count("dead_peers")
        self.destroy_ike(sa, reason, now)
        if conn is not None and self.core.config.connections.get(conn.name) is conn:
            self.core.ondemand.restart_after(conn, restart, now)

    def fail_ike(self: V1Engine, sa: V1Sa, reason: str, now: float) -> None:
        sa.fail_reason = reason
        self.count("ike_failures")
        self.log.error("%s: %s", sa.peer_label(), reason)
        self.destroy_ike(sa, reason, now)

    def delete_ike(self: V1Engine, sa: V1Sa, reason: str, now: float) -> None:
        """Graceful: Delete notifications for the IPsec SAs and then the ISAKMP SA."""
        if sa.state is IkeState.DESTROYED:
            return
        if sa.state is not IkeState.ESTABLISHED and sa.state is not IkeState.REKEYED:
            self.destroy_ike(sa, reason, now)
            return
        for c in list(sa.children):
            if c.state is not ChildState.DESTROYED:
                informational.send_delete_esp(self, sa, [c.spi_in])
        informational.send_delete_isakmp(self, sa)
        self.destroy_ike(sa, reason, now)

    def destroy_ike(self: V1Engine, sa: V1Sa, reason: str, now: float) -> None:
        if sa.state is IkeState.DESTROYED:
            return
        for c in list(sa.children):
            self.remove_child(sa, c, reason, now)
        sa.set_state(IkeState.DESTROYED)
        sa.exchanges.clear()
        self.unregister(sa)
        if sa.replaced_by is None:
            self.core.emit(IkeSaDown(sa.name, sa.uid, reason))
        self.log.info("%s: ISAKMP SA deleted: %s", sa.peer_label(), reason)
        self.refresh(sa)

    def remove_child(self: V1Engine, sa: V1Sa, child: V1Child, reason: str, now: float) -> None:
        if child.state is ChildState.DESTROYED:
            return
        child.set_state(ChildState.DESTROYED)
        if child in sa.children:
            sa.children.remove(child)
        core = self.core
        core.ondemand.retiring(child)
        core.emit(DeleteChild(child.reqid, child.spi_in, child.spi_out))
        core.release_spi_in(child.spi_in)
        left = [
            c
            for s in list(self.sas.values())
            for c in s.children
            if c.reqid == child.reqid and c.state is not ChildState.DESTROYED
        ]
        left += [c for s in core.sas.values() for c in s.children if c.reqid == child.reqid]
        if not left:
            core.ondemand.pairs_gone(child.reqid)
        if not any(getattr(c, "lineage", None) == child.lineage for c in left):
            core.emit(ChildDown(child.name, sa.name, child.reqid, reason))
        self.log.info(
            "%s: CHILD_SA %s{%d} SPIs %08x_i %08x_o deleted: %s",
            sa.peer_label(),
            child.name,
            child.reqid,
            child.spi_in,
            child.spi_out,
            reason,
        )

    def retire_child(self: V1Engine, sa: V1Sa, old: V1Child, now: float) -> None:
        """A replaced pair goes in three steps, so that no packet in flight is lost: we send
        on its replacement (a peer that keeps sending on the old pair until told, as charon's
        libipsec does, has not shown us that it has the new one), then tell the peer, and keep
        the old inbound SA a moment longer for what the peer sent before it heard."""
        new = max(
            (
                c
                for c in sa.children
                if c is not old and c.lineage == old.lineage and c.state is ChildState.INSTALLED
            ),
            key=lambda c: c.installed_at,
            default=None,
        )
        if new is not None:
            self.core.emit(ActivateOutbound(new.reqid, new.spi_in, new.spi_out))
        if sa.keys is not None:
            informational.send_delete_esp(self, sa, [old.spi_in])
        old.set_state(ChildState.DELETING)
        old.delete_at = now + INBOUND_LINGER

    def delete_child(self: V1Engine, sa: V1Sa, child: V1Child, reason: str, now: float) -> None:
        """Tell the peer (IKEv1 Delete with our inbound SPI) and remove the pair."""
        if child.state is ChildState.DESTROYED:
            return
        if sa.state in (IkeState.ESTABLISHED, IkeState.REKEYED) and sa.keys is not None:
            informational.send_delete_esp(self, sa, [child.spi_in])
        self.remove_child(sa, child, reason, now)
