"""Mixed into the Engine: one deadline per IKE SA in a heap, and what happens when it passes
(retransmits, rekeys, liveness checks, NAT-T keepalives, lifetimes, half-open expiry)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ikeagent.engine.ikev2.child_create import CreateChildTask
from ikeagent.engine.ikev2.ike_rekey import IkeRekeyTask
from ikeagent.engine.ikev2.informational import DpdTask
from ikeagent.engine.ikev2.protect import expire_fragments
from ikeagent.engine.ikev2.sa import IkeSa
from ikeagent.engine.ikev2.state import ChildState, IkeState

if TYPE_CHECKING:
    from ikeagent.engine.core import Engine


class Timers:
    def _sa_deadline(self: Engine, sa: IkeSa) -> float | None:
        times: list[float] = []
        if sa.outstanding is not None:
            times.append(sa.outstanding.deadline)
        if sa.state is IkeState.ESTABLISHED:
            times.extend(t for t in (sa.rekey_at, sa.reauth_at) if t is not None)
        if sa.expire_at is not None and sa.state in (IkeState.ESTABLISHED, IkeState.REKEYING):
            times.append(sa.expire_at)
        if sa.state is IkeState.ESTABLISHED:
            if sa.dpd_at is not None:
                times.append(sa.dpd_at)
            if sa.keepalive_at is not None:
                times.append(sa.keepalive_at)
        if sa.half_open_until is not None and sa.state in (IkeState.CONNECTING, IkeState.CREATED):
            times.append(sa.half_open_until)
        if sa.delete_at is not None:
            times.append(sa.delete_at)
        for c in sa.children:
            for t in (
                c.rekey_at if c.state is ChildState.INSTALLED else None,
                c.idle_check_at if c.state is ChildState.INSTALLED else None,
                c.expire_at,
                c.delete_at,
            ):
                if t is not None:
                    times.append(t)
        times.extend(at for at, _ in sa.child_retries)
        times.extend(b.deadline for b in sa.fragments.values())
        return min(times) if times else None

    def _refresh(self: Engine, sa: IkeSa) -> None:
        if sa.reauth_of is not None:
            self.reauth_progress(sa, self.now)
        self._deadlines.set(sa, None if sa.state is IkeState.DESTROYED else self._sa_deadline(sa))

    def get_timer(self: Engine) -> float | None:
        return self._deadlines.next()

    def handle_timer(self: Engine, now: float) -> None:
        self.now = now
        for sa in self._deadlines.due(now):
            self._sa_timer(sa, now)
            self._refresh(sa)

    def _sa_timer(self: Engine, sa: IkeSa, now: float) -> None:
        if sa.state is IkeState.DESTROYED:
            return
        if (
            sa.half_open_until is not None
            and sa.half_open_until <= now
            and sa.state in (IkeState.CONNECTING, IkeState.CREATED)
            and not sa.initiator
        ):
            self.count("half_open_timeout")
            self.destroy_ike(sa, "half-open IKE_SA timed out", now)
            return
        if sa.delete_at is not None and sa.delete_at <= now:
            sa.delete_at = None
            self.delete_ike(sa, "replaced SA was not deleted by the peer", now)
            return
        if sa.outstanding is not None and sa.outstanding.deadline <= now:
            if sa.outstanding.give_way:
                self.delete_instead(sa, now)
            else:
                self._retransmit(sa, now)
            if sa.state is IkeState.DESTROYED:
                return
        expire_fragments(sa, now)
        if (
            sa.expire_at is not None
            and sa.expire_at <= now
            and sa.state in (IkeState.ESTABLISHED, IkeState.REKEYING)
        ):
            sa.expire_at = None
            self.log.warning("%s: IKE_SA hard lifetime reached (not rekeyed)", sa.peer_label())
            self.delete_ike(sa, "IKE_SA hard lifetime reached", now)
            return
        conn = sa.conn
        if sa.state is IkeState.ESTABLISHED and conn is not None:
            if sa.reauth_at is not None and sa.reauth_at <= now:
                self.reauthenticate(sa, now)
                if sa.state is not IkeState.ESTABLISHED:
                    return
            if sa.rekey_at is not None and sa.rekey_at <= now:
                sa.rekey_at = None
                self.queue_task(sa, IkeRekeyTask(), now)
            if sa.keepalive_at is not None and sa.keepalive_at <= now:
                # RFC 3948 2.3: keep the NAT's mapping of our port 4500 alive
                self.send_plain(b"\xff", sa.local, sa.remote, raw=True)
                self.count("keepalives_sent")
                sa.keepalive_at = now + self.config.keep_alive
            if sa.dpd_at is not None and sa.dpd_at <= now:
                idle = now - sa.last_recv
                if idle >= conn.dpd_delay and sa.outstanding is None and not sa.queue:
                    self.queue_task(sa, DpdTask(), now)
                    sa.dpd_at = now + conn.dpd_delay
                else:
                    sa.dpd_at = (
                        sa.last_recv + conn.dpd_delay
                        if idle < conn.dpd_delay
                        else now + conn.dpd_delay
                    )
        for c in list(sa.children):
            if (
                c.idle_check_at is not None
                and c.idle_check_at <= now
                and c.state is ChildState.INSTALLED
            ):
                self.ondemand.idle_check_due(c)
            if (
                c.expire_at is not None
                and c.expire_at <= now
                and c.state is not ChildState.DELETING
            ):
                c.expire_at = None
                self.log.warning(
                    "%s: CHILD_SA %s{%d} hard lifetime reached", sa.peer_label(), c.name, c.reqid
                )
                self.delete_children(sa, [c], "hard lifetime reached", now)
            elif c.delete_at is not None and c.delete_at <= now:
                c.delete_at = None
                if c.state is ChildState.REKEYED:
                    self.delete_children(sa, [c], "rekeyed (the peer did not delete it)", now)
            elif c.rekey_at is not None and c.rekey_at <= now and c.state is ChildState.INSTALLED:
                c.rekey_at = None
                if sa.state is IkeState.ESTABLISHED:
                    self.queue_task(sa, CreateChildTask(c.config, rekey_of=c), now)
        if sa.child_retries:
            due = [cfg for at, cfg in sa.child_retries if at <= now]
            sa.child_retries = [(at, cfg) for at, cfg in sa.child_retries if at > now]
            for cfg in due:
                self.queue_task(sa, CreateChildTask(cfg), now)
