"""Mixed into the IKEv1 engine: one deadline per ISAKMP SA in a heap, and what happens when it
passes (retransmissions, lifetimes and rekeys of both phases, DPD, NAT-T keepalives)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ikeagent.engine.events import ActivateOutbound
from ikeagent.engine.ikev1 import informational, quick_mode
from ikeagent.engine.ikev1.sa import V1Sa
from ikeagent.engine.ikev2.state import ChildState, IkeState

if TYPE_CHECKING:
    from ikeagent.engine.ikev1.engine import V1Engine


class Timers:
    def _deadline(self: V1Engine, sa: V1Sa) -> float | None:
        times: list[float] = []
        for ex in sa.exchanges.values():
            if ex.deadline is not None:
                times.append(ex.deadline)
            if ex.forget_at is not None:
                times.append(ex.forget_at)
        for t in (
            sa.half_open_until if sa.state is IkeState.CONNECTING else None,
            sa.delete_at,
            sa.expire_at,
        ):
            if t is not None:
                times.append(t)
        if sa.state is IkeState.ESTABLISHED:
            for t in (sa.rekey_at, sa.dpd_at, sa.keepalive_at):
                if t is not None:
                    times.append(t)
        for c in sa.children:
            for t in (
                c.rekey_at if c.state is ChildState.INSTALLED else None,
                c.idle_check_at if c.state is ChildState.INSTALLED else None,
                c.activate_at,
                c.expire_at,
                c.delete_at,
            ):
                if t is not None:
                    times.append(t)
        times.extend(at for at, _ in sa.child_retries)
        return min(times) if times else None

    def refresh(self: V1Engine, sa: V1Sa) -> None:
        self._deadlines.set(sa, None if sa.state is IkeState.DESTROYED else self._deadline(sa))

    def get_timer(self: V1Engine) -> float | None:
        return self._deadlines.next()

    def handle_timer(self: V1Engine, now: float) -> None:
        for sa in self._deadlines.due(now):
            self._sa_timer(sa, now)
            self.refresh(sa)

    def _sa_timer(self: V1Engine, sa: V1Sa, now: float) -> None:
        if sa.state is IkeState.DESTROYED:
            return
        if (
            sa.state is IkeState.CONNECTING
            and sa.half_open_until is not None
            and sa.half_open_until <= now
            and not sa.initiator
        ):
            self.count("half_open_timeout")
            self.destroy_ike(sa, "half-open ISAKMP SA timed out", now)
            return
        if sa.delete_at is not None and sa.delete_at <= now:
            sa.delete_at = None
            self.delete_ike(sa, sa.delete_reason, now)
            return
        if sa.expire_at is not None and sa.expire_at <= now:
            sa.expire_at = None
            self.log.warning("%s: ISAKMP SA lifetime expired", sa.peer_label())
            # its IPsec SAs live on under a newer ISAKMP SA when there is one
            newer = self._newest_other(sa)
            if newer is not None:
                newer.children.extend(sa.children)
                sa.children = []
                sa.replaced_by = newer
            self.delete_ike(sa, "ISAKMP SA lifetime expired", now)
            return
        for mid, ex in list(sa.exchanges.items()):
            if ex.deadline is not None and ex.deadline <= now:
                self._retransmit(sa, ex, now)
                if sa.state is IkeState.DESTROYED:
                    return
            if ex.forget_at is not None and ex.forget_at <= now:
                del sa.exchanges[mid]
        if sa.state is IkeState.ESTABLISHED and sa.conn is not None:
            if sa.rekey_at is not None and sa.rekey_at <= now:
                self.rekey_ike(sa, now)
            if sa.keepalive_at is not None and sa.keepalive_at <= now:
                self.core.send_plain(b"\xff", sa.local, sa.remote, raw=True)
                self.count("keepalives_sent")
                sa.keepalive_at = now + self.config.keep_alive
            if sa.dpd_at is not None and sa.dpd_at <= now:
                informational.dpd_timer(self, sa, now)
                if sa.state is IkeState.DESTROYED:
                    return
        for c in list(sa.children):
            if c.activate_at is not None and c.activate_at <= now:
                c.activate_at = None
                if c.state is ChildState.INSTALLED:
                    self.core.emit(ActivateOutbound(c.reqid, c.spi_in, c.spi_out))
            if (
                c.idle_check_at is not None
                and c.idle_check_at <= now
                and c.state is ChildState.INSTALLED
            ):
                self.core.ondemand.idle_check_due(c)
            if c.expire_at is not None and c.expire_at <= now:
                c.expire_at = None
                self.log.warning(
                    "%s: CHILD_SA %s{%d} hard lifetime reached", sa.peer_label(), c.name, c.reqid
                )
                self.delete_child(sa, c, "hard lifetime reached", now)
            elif c.delete_at is not None and c.delete_at <= now:
                c.delete_at = None
                if c.state is ChildState.REKEYED:
                    self.retire_child(sa, c, now)
                elif c.state is ChildState.DELETING:
                    self.remove_child(sa, c, "rekeyed", now)
            elif c.rekey_at is not None and c.rekey_at <= now and c.state is ChildState.INSTALLED:
                c.rekey_at = None
                if sa.state is IkeState.ESTABLISHED and sa.replaced_by is None:
                    quick_mode.start(self, sa, c.config, now, rekey_of=c)
        if sa.child_retries and sa.state is IkeState.ESTABLISHED:
            due = [cfg for at, cfg in sa.child_retries if at <= now]
            sa.child_retries = [(at, cfg) for at, cfg in sa.child_retries if at > now]
            for cfg in due:
                quick_mode.start(self, sa, cfg, now)

    def _newest_other(self: V1Engine, sa: V1Sa) -> V1Sa | None:
        others = [
            o
            for o in self.sas.values()
            if o is not sa
            and o.conn is not None
            and sa.conn is not None
            and o.conn.name == sa.conn.name
            and o.state is IkeState.ESTABLISHED
            and o.remote[0] == sa.remote[0]
        ]
        return max(others, key=lambda o: o.uid) if others else None
