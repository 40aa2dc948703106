"""On-demand tunnels, for IKEv1 and IKEv2 alike: trap policies and their Acquires, Child SAs
closed when idle, and what becomes of a child when its peer is dead (``dpd_action``) or closes
it (``close_action``).

Traps. A child with ``start_action: trap`` (or one armed by ``dpd_action``/``close_action``
trap) has a trap policy: its configured selectors under the reqid its Child SAs will carry.
That reqid is the one ``Engine.policy_reqid`` gives a child negotiated with exactly these
selectors, so the child's SAs land under the trap's policy (a child the peer narrowed gets a
reqid, and policies, of its own). A reqid held by a trap keeps its policy when its last SA pair
goes, so the trap is armed again and the data plane raises an ``Acquire`` for the next packet;
the engine then starts the child, on an IKE SA of the connection when there is one (only
Phase 2 is negotiated: CREATE_CHILD_SA or Quick Mode), else with a new one. A trap stays until
its connection is removed or changed.

Inactivity. A child with ``inactivity`` is checked that often: the engine asks the runtime when
its pair was last used (``QueryUsage``, answered with ``SaUsage``) and closes the child when it
was idle that long (an INFORMATIONAL Delete, an IKEv1 Delete notification); the IKE SA stays,
unless the connection sets ``inactivity_close_ike`` and no other child is left on it.

Dead and closing peers. When the peer stops answering (DPD, or any request of an established
SA running out of retransmits), each child of the IKE SA follows its ``dpd_action``: ``clear``
(nothing more), ``trap`` (a trap is armed before the SAs go, so the policy never lapses) or
``restart`` (the connection is initiated again, with ``keyingtries`` attempts). When the peer
deletes a child, or the IKE SA with it, and nothing replaces it (not a rekey), the child's
``close_action`` applies: ``none``, ``trap`` or ``start``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ikeagent.config.model import ChildConfig, ConnectionConfig, StartAction
from ikeagent.dataplane.base import Acquire, SaUsage, TrapPolicy
from ikeagent.engine.addresses import is_ip
from ikeagent.engine.events import InstallTrap, QueryUsage, RemovePolicy, TrapStatus
from ikeagent.engine.ikev2.selectors import from_config, to_config
from ikeagent.engine.ikev2.state import ChildState

if TYPE_CHECKING:
    from ikeagent.engine.core import Engine


@dataclass(eq=False)
class Trap:
    conn: str
    child: str
    version: int
    policy: TrapPolicy
    reason: str  # what armed it: "start_action", "dpd_action", "close_action"
    acquires: int = 0
    last_acquire: float | None = None

    @property
    def reqid(self) -> int:
        return self.policy.reqid


class OnDemand:
    """Owned by the Engine (``engine.ondemand``)."""

    def __init__(self, core: Engine) -> None:
        self.core = core
        self.traps: dict[int, Trap] = {}  # reqid -> trap
        self._by_child: dict[tuple[str, str], Trap] = {}
        # (reqid, inbound SPI) of pairs retired by a rekey -> (their rekey chain, and their
        # packet count and last known use at their last check) (see retiring)
        self._retired: dict[tuple[int, int], tuple[int, int, float]] = {}

    @property
    def log(self) -> logging.Logger:
        return self.core.log

    # ---- traps -------------------------------------------------------------------------------

    def arm_configured(self, conns: list[ConnectionConfig]) -> None:
        """Install the traps of every child of ``conns`` with ``start_action: trap``."""
        for conn in conns:
            for cfg in conn.children.values():
                if cfg.start_action is StartAction.TRAP:
                    self.arm(conn, cfg, "start_action")

    def arm(self, conn: ConnectionConfig, cfg: ChildConfig, reason: str) -> Trap | None:
        key = (conn.name, cfg.name)
        trap = self._by_child.get(key)
        if trap is not None:
            return trap
        remote = conn.remote_addrs[0] if conn.remote_addrs else ""
        local = conn.local_addrs[0] if conn.local_addrs else ""
        if not is_ip(remote) or (local and not is_ip(local)):
            self.core.count("trap_failed")
            self.log.error(
                "%s: cannot trap CHILD_SA %s: a trap needs the peer's IP address first in "
                "remote_addrs (and an IP address, or nothing, in local_addrs)",
                conn.name,
                cfg.name,
            )
            return None
        local_ts, remote_ts = from_config(cfg.local_ts), from_config(cfg.remote_ts)
        if conn.version == 1:
            # Quick Mode negotiates one selector pair (the first): see quick_mode.start
            local_ts, remote_ts = local_ts[:1], remote_ts[:1]
            policy_key: tuple[Any, ...] = ("v1", conn.name, cfg.name, local_ts, remote_ts, remote)
        else:
            policy_key = (conn.name, cfg.name, local_ts, remote_ts, remote)
        reqid = self.core.policy_reqid(policy_key)
        policy = TrapPolicy(
            reqid, cfg.name, local, remote, to_config(local_ts), to_config(remote_ts)
        )
        trap = Trap(conn.name, cfg.name, conn.version, policy, reason)
        self.traps[reqid] = trap
        self._by_child[key] = trap
        self.core.emit(InstallTrap(policy))
        self.core.count("traps_installed")
        self.log.info(
            "%s: CHILD_SA %s{%d} trapped (%s): %s === %s",
            conn.name,
            cfg.name,
            reqid,
            reason,
            ", ".join(map(str, policy.local_ts)),
            ", ".join(map(str, policy.remote_ts)),
        )
        return trap

    def disarm_connection(self, name: str) -> None:
        """Remove the traps of connection ``name`` (removed or changed in the configuration)."""
        for key, trap in list(self._by_child.items()):
            if key[0] != name:
                continue
            del self._by_child[key]
            del self.traps[trap.reqid]
            if not self.core.reqid_in_use(trap.reqid):
                self.core.release_reqid(trap.reqid)
                self.core.emit(RemovePolicy(trap.reqid))
            self.log.info("%s: trap of CHILD_SA %s{%d} removed", name, trap.child, trap.reqid)

    def pairs_gone(self, reqid: int) -> None:
        """The last SA pair under ``reqid`` went: its policy goes too, unless a trap holds it
        (then it stays, armed for the next packet)."""
        if reqid in self.traps:
            return
        self.core.release_reqid(reqid)
        self.core.emit(RemovePolicy(reqid))

    def on_acquire(self, event: Acquire, now: float) -> None:
        trap = self.traps.get(event.reqid)
        if trap is None:
            self.core.count("acquires_unknown")
            self.log.debug("acquire for reqid %d, which is not a trap of ours", event.reqid)
            return
        self.core.count("acquires")
        trap.acquires += 1
        trap.last_acquire = now
        self.log.info(
            "%s: acquire for CHILD_SA %s{%d} (%s -> %s): starting it",
            trap.conn,
            trap.child,
            trap.reqid,
            event.src,
            event.dst,
        )
        self._start(trap.conn, [trap.child], now, "acquire", (event.src, event.dst))

    def list_traps(self) -> list[TrapStatus]:
        return [
            TrapStatus(
                name=t.conn,
                child=t.child,
                reqid=t.reqid,
                version=t.version,
                local_ts=[str(x) for x in t.policy.local_ts],
                remote_ts=[str(x) for x in t.policy.remote_ts],
                reason=t.reason,
                acquires=t.acquires,
                last_acquire=t.last_acquire,
            )
            for t in sorted(self.traps.values(), key=lambda t: t.reqid)
        ]

    # ---- inactivity --------------------------------------------------------------------------

    def arm_idle_check(self, sa: Any, child: Any, now: float) -> None:
        """A new pair of a child with ``inactivity``: a rekeyed one carries on from its rekey
        chain's last known use (a rekey is no traffic), a first one from now."""
        limit = child.config.inactivity
        if limit <= 0:
            child.idle_check_at = None
            return
        siblings = [
            c
            for c in sa.children
            if c is not child and c.lineage == child.lineage and c.state is not ChildState.DESTROYED
        ]
        child.idle_base = max((c.idle_base for c in siblings), default=now)
        child.idle_checked = any(c.idle_checked for c in siblings)
        child.idle_packets = 0
        child.idle_check_at = child.idle_base + limit

    def idle_check_due(self, child: Any) -> None:
        child.idle_check_at = None
        self.core.emit(QueryUsage(child.reqid, child.spi_in, child.spi_out))

    def retiring(self, child: Any) -> None:
        """A pair with ``inactivity`` goes while its rekey chain lives on: ask when it was last
        used (answered before it is deleted) so its successor counts that traffic."""
        if child.config.inactivity <= 0 or not self.core.lineage_alive(child.lineage):
            return
        if len(self._retired) > 1024:
            self._retired.clear()
        self._retired[(child.reqid, child.spi_in)] = (
            child.lineage,
            child.idle_packets,
            child.idle_base,
        )
        self.core.emit(QueryUsage(child.reqid, child.spi_in, child.spi_out))

    def on_usage(self, event: SaUsage, now: float) -> None:
        found = self.core.find_child(event.reqid, event.spi_in)
        if found is None:
            retired = self._retired.pop((event.reqid, event.spi_in), None)
            if retired is not None:
                lineage, packets, base = retired
                used = event.last_used or 0.0
                if (
                    event.packets is not None
                    and event.packets != packets
                    and (not event.exact or used <= base)
                ):
                    used = now  # as in the check below
                for _sa, child in self.core.lineage_members(lineage):
                    child.idle_base = max(child.idle_base, used)
            return
        sa, child = found
        idle_limit = child.config.inactivity
        if idle_limit <= 0:
            return
        if child.state is not ChildState.INSTALLED:
            return  # being rekeyed or deleted: its successor is checked on its own
        if event.packets == 0 and event.last_used is None and not child.idle_checked:
            # never used yet: the data plane may have taken a while to install the pair (and
            # an IKEv1 initiator's first pair sends only a round trip after HASH(3)), so the
            # interval starts again now rather than closing a pair that was never usable
            child.idle_checked = True
            child.idle_base = max(child.idle_base, now)
            child.idle_check_at = child.idle_base + idle_limit
            self.core.refresh_any(sa)
            return
        child.idle_checked = True
        last = max(event.last_used or 0.0, child.idle_base)
        if event.packets is not None:
            if event.packets != child.idle_packets and (not event.exact or last <= child.idle_base):
                # used since the last check, and the data plane's time does not say when
                # (kernels before 6.2 keep only the first use): count it as used now
                last = now
            child.idle_packets = event.packets
        child.idle_base = last
        idle = now - last
        if idle < idle_limit:
            child.idle_check_at = last + idle_limit
            self.core.refresh_any(sa)
            return
        self.core.count("children_idle_closed")
        self.log.info(
            "%s: CHILD_SA %s{%d} idle for %.0f s (inactivity %.0f s): closing it",
            sa.peer_label(),
            child.name,
            child.reqid,
            idle,
            idle_limit,
        )
        self.core.close_idle_child(sa, child, f"idle for {idle:.0f} s (inactivity)", now)

    # ---- dead and closing peers --------------------------------------------------------------

    def before_peer_dead(self, conn: ConnectionConfig | None, cfgs: list[ChildConfig]) -> list[str]:
        """Apply ``dpd_action`` to the children ``cfgs`` of an IKE SA whose peer is dead, before
        it is destroyed: traps are armed now; returns the children to start again afterwards
        (``restart_after``)."""
        if conn is None:
            return []
        restart: list[str] = []
        for cfg in _unique(cfgs):
            if cfg.dpd_action == "trap":
                self.arm(conn, cfg, "dpd_action")
            elif cfg.dpd_action == "restart":
                restart.append(cfg.name)
        return restart

    def restart_after(self, conn: ConnectionConfig | None, names: list[str], now: float) -> None:
        if conn is None or not names:
            return
        self.log.info("%s: dpd_action restart: initiating %s again", conn.name, ", ".join(names))
        self._start(conn.name, names, now, "dpd_action restart")

    def peer_closing(self, conn: ConnectionConfig | None, cfgs: list[ChildConfig]) -> list[str]:
        """The peer deletes these children (or their IKE SA) and nothing replaces them: apply
        ``close_action`` before they go (a trap is armed now, so the policy never lapses);
        returns the children to start again afterwards (``start_closed``)."""
        if conn is None or self.core.config.connections.get(conn.name) is not conn:
            return []
        start: list[str] = []
        for cfg in _unique(cfgs):
            if cfg.close_action == "trap":
                self.arm(conn, cfg, "close_action")
            elif cfg.close_action == "start":
                start.append(cfg.name)
        return start

    def start_closed(self, conn: ConnectionConfig | None, names: list[str], now: float) -> None:
        if conn is None or not names:
            return
        if self.core.config.connections.get(conn.name) is not conn:
            return
        self.log.info("%s: close_action start: initiating %s again", conn.name, ", ".join(names))
        self._start(conn.name, names, now, "close_action start")

    def _start(
        self,
        name: str,
        children: list[str],
        now: float,
        why: str,
        packet: tuple[str, str] | None = None,
    ) -> None:
        from ikeagent.engine.core import UnknownConnection

        try:
            self.core.initiate(name, now, children, packet=packet)
        except (UnknownConnection, KeyError) as exc:
            self.core.count("start_failed")
            self.log.error("%s: cannot start (%s): %s", name, why, exc.args[0] if exc.args else exc)


def _unique(cfgs: list[ChildConfig]) -> list[ChildConfig]:
    seen: dict[str, ChildConfig] = {}
    for c in cfgs:
        seen.setdefault(c.name, c)
    return list(seen.values())
