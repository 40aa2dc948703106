"""Mixed into the Engine: IKEv2 reauthentication (``reauth_time``), make-before-break.

A rekey (CREATE_CHILD_SA) renews the IKE SA's keys but never authenticates the peer again;
reauthentication does (RFC 7296 2.8.3): when ``reauth_time`` (less random jitter) has passed,
the end with the peer's address builds a new IKE SA (IKE_SA_INIT, IKE_AUTH: credentials are
checked again) carrying the old one's children, without INITIAL_CONTACT. Once every child is up
on the new IKE SA, the old one is deleted with its pairs. The new pairs take the same reqids
(the same policies), so the data plane sends on them as they come and the policies never lapse:
no packet waits for the exchange. If the new IKE SA fails, the old one carries on and tries
again a minute later (its hard lifetime still applies).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ikeagent.engine.addresses import is_ip
from ikeagent.engine.ikev2.child_create import CreateChildTask
from ikeagent.engine.ikev2.ike_init import IkeInitTask
from ikeagent.engine.ikev2.sa import IkeSa
from ikeagent.engine.ikev2.state import ChildState, IkeState

if TYPE_CHECKING:
    from ikeagent.engine.core import Engine

REAUTH_RETRY = 60.0  # seconds before another try when a reauthentication failed


class Reauth:
    def _ike_reauth_deadline(self: Engine, sa: IkeSa, now: float) -> float | None:
        conn = sa.conn
        if conn is None or conn.reauth_time <= 0:
            return None
        if not conn.remote_addrs or not is_ip(conn.remote_addrs[0]):
            return None  # a responder-only connection cannot reach the peer to do it
        # jitter: rand_time, at most a tenth of the interval (rand_time defaults to a tenth of
        # rekey_time, usually far longer than reauth_time)
        rand = min(conn.rand_time, conn.reauth_time * 0.1) if conn.rand_time > 0 else 0.0
        return now + conn.reauth_time - self.rng.random() * rand

    def reauthenticate(self: Engine, old: IkeSa, now: float) -> None:
        """Start a new IKE SA that will take over ``old``'s children (see the module)."""
        conn = old.conn
        old.reauth_at = None
        old.rekey_at = None  # no IKE rekey of the SA on its way out
        if conn is None or self.config.connections.get(conn.name) is not conn:
            return
        cfgs = list({c.config.name: c.config for c in old.live_children()}.values())
        if not cfgs:
            self.log.info("%s: reauthentication due, no CHILD_SA: closing", old.peer_label())
            self.delete_ike(old, "reauthentication due (no CHILD_SA to carry over)", now)
            return
        self.log.info("%s: reauthenticating: a new IKE_SA takes over", old.peer_label())
        local_ip = conn.local_addrs[0] if conn.local_addrs else old.local[0]
        new = self.new_initiator_sa(conn, local_ip, cfgs, now)
        new.force_encap = old.force_encap
        new.reauth_of = old
        self.register(new)
        self.count("reauthentications")
        self.queue_task(new, IkeInitTask(), now)

    def reauth_progress(self: Engine, new: IkeSa, now: float) -> None:
        """Called as ``new`` (a reauthenticating IKE SA) changes: once every child is up on it,
        the old IKE SA goes; if it failed, the old one tries again later."""
        old = new.reauth_of
        if old is None:
            return
        if old.state is IkeState.DESTROYED:
            new.reauth_of = None
            return
        if new.state is IkeState.DESTROYED:
            new.reauth_of = None
            if old.state is IkeState.ESTABLISHED:
                self.log.warning(
                    "%s: reauthentication failed (%s): the IKE_SA carries on",
                    old.peer_label(),
                    new.fail_reason or "no new IKE_SA",
                )
                old.reauth_at = now + REAUTH_RETRY
                self._refresh(old)
            return
        if new.state is not IkeState.ESTABLISHED or new.pending_children:
            return
        tasks = [*new.queue, *([new.outstanding.task] if new.outstanding else [])]
        if any(isinstance(t, CreateChildTask) for t in tasks):
            return
        new.reauth_of = None
        if not any(c.state is ChildState.INSTALLED for c in new.children):
            self.log.warning(
                "%s: reauthenticated IKE_SA got no CHILD_SA: keeping the old one",
                old.peer_label(),
            )
            self.delete_ike(new, "reauthentication brought no CHILD_SA up", now)
            old.reauth_at = now + REAUTH_RETRY
            return
        new.reauth_at = self._ike_reauth_deadline(new, now)
        old.replaced_by = new  # its children now live on ``new``: no IKE_SA down event
        self.log.info(
            "%s: reauthenticated as %s[%d]: deleting the old IKE_SA",
            old.peer_label(),
            new.name,
            new.uid,
        )
        # after the exchange in flight on it, if any (a child rekey): abandoning that one
        # would leave the peer with pairs we never had (see delete_ike)
        self.delete_ike(old, "reauthenticated", now)
