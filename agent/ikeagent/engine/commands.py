"""Mixed into the Engine: what is done to connections by name (the shell's commands, a
configuration reload, the on-demand module's starts and idle closes), for IKEv2 here and handed
to the IKEv1 engine for its connections."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ikeagent.config.model import AgentConfig, ChildConfig, ConnectionConfig, StartAction
from ikeagent.engine.addresses import is_ip
from ikeagent.engine.ikev2.child_create import CreateChildTask
from ikeagent.engine.ikev2.ike_init import IkeInitTask
from ikeagent.engine.ikev2.ike_rekey import IkeRekeyTask
from ikeagent.engine.ikev2.sa import IkeSa
from ikeagent.engine.ikev2.state import ChildState, IkeState

if TYPE_CHECKING:
    from ikeagent.engine.core import Engine


class UnknownConnection(KeyError):
    pass


class Commands:
    def start(self: Engine, now: float) -> None:
        """Arm the traps of children with start_action ``trap`` and bring up every
        connection with a child whose start_action is ``start``."""
        self.now = now
        self.ondemand.arm_configured(list(self.config.connections.values()))
        for conn in self.config.connections.values():
            starting = [
                c.name for c in conn.children.values() if c.start_action is StartAction.START
            ]
            if starting and conn.remote_addrs:
                self._start_one(conn.name, now, starting)

    def _start_one(self: Engine, name: str, now: float, children: list[str]) -> None:
        try:
            self.initiate(name, now, children)
        except UnknownConnection as exc:
            self.count("start_failed")
            self.log.error("cannot start %s: %s", name, exc.args[0] if exc.args else exc)

    def load_config(self: Engine, config: AgentConfig, now: float) -> None:
        """Apply a new configuration: removed or changed connections are torn down, new or
        changed ones with start_action=start are brought up; unchanged ones are left alone."""
        self.now = now
        old = self.config
        self.config = config
        for name, conn in old.connections.items():
            new = config.connections.get(name)
            if new is None or new != conn:
                self.terminate(
                    name, now, reason="configuration changed" if new else "connection removed"
                )
                self.ondemand.disarm_connection(name)
        for name, conn in config.connections.items():
            if old.connections.get(name) == conn:
                # keep the running SAs, but let them use the new config object
                for sa in [*self.sas.values(), *self.v1.sas.values()]:
                    if sa.conn is not None and sa.conn.name == name:
                        sa.conn = conn
                continue
            self.ondemand.arm_configured([conn])
            starting = [
                c.name for c in conn.children.values() if c.start_action is StartAction.START
            ]
            if starting and conn.remote_addrs:
                self._start_one(name, now, starting)

    def _conn(self: Engine, name: str) -> ConnectionConfig:
        conn = self.config.connections.get(name)
        if conn is None:
            raise UnknownConnection(name)
        return conn

    def sas_of(self: Engine, name: str) -> list[IkeSa]:
        return [s for s in self.sas.values() if s.conn is not None and s.conn.name == name]

    def initiate(
        self: Engine,
        name: str,
        now: float,
        children: list[str] | None = None,
        *,
        keying_try: int = 1,
        packet: tuple[str, str] | None = None,
    ) -> None:
        """Bring up ``children`` (default: all) of connection ``name``: on its IKE SA when
        there is one, else with a new one (attempt ``keying_try`` of ``keyingtries``).
        ``packet``: (source, destination) of the packet that asked for them (IKEv2 offers its
        selectors first, RFC 7296 2.9)."""
        self.now = now
        conn = self._conn(name)
        if not conn.remote_addrs:
            raise UnknownConnection(f"{name}: no remote_addrs to initiate to")
        cfgs = [conn.children[c] for c in children] if children else list(conn.children.values())
        if conn.version == 1:
            _check_addresses(name, conn)
            self.v1.initiate(conn, now, cfgs, keying_try=keying_try)
            return
        active = [
            s
            for s in self.sas_of(name)
            if s.state in (IkeState.CONNECTING, IkeState.ESTABLISHED, IkeState.REKEYING)
            and s.closing is None
        ]
        if active:
            sa = max(active, key=lambda s: s.uid)
            # children on their way already (IKE_AUTH or CREATE_CHILD_SA in flight or queued,
            # or waiting for the IKE SA) are not asked for twice: a reload that starts the
            # connection and an ``up`` right after it must give one Child SA, not two
            busy = {c.name for c in sa.pending_children}
            for task in (sa.outstanding.task if sa.outstanding else None, *sa.queue):
                cfg = getattr(task, "child", None) or (
                    task.cfg
                    if isinstance(task, CreateChildTask) and task.rekey_of is None
                    else None
                )
                if cfg is not None:
                    busy.add(cfg.name)
            if sa.state is IkeState.CONNECTING:
                for c in cfgs:
                    if c.name not in busy:
                        sa.pending_children.append(c)
                        if packet is not None:
                            sa.packet_hints[c.name] = packet
                return
            # a child being deleted (e.g. closed for inactivity) does not stop a new one
            live = {
                c.config.name
                for c in sa.children
                if c.state not in (ChildState.DESTROYED, ChildState.DELETING)
            }
            for cfg in cfgs:
                if cfg.name not in live and cfg.name not in busy:
                    self.queue_task(sa, CreateChildTask(cfg, packet=packet), now)
            return
        remote_ip = conn.remote_addrs[0]
        local_ip = conn.local_addrs[0] if conn.local_addrs else ""
        _check_addresses(name, conn)
        sa = self.new_initiator_sa(conn, local_ip, cfgs, now)
        sa.force_encap = self.force_encap or conn.encap
        if packet is not None:
            sa.packet_hints = {c.name: packet for c in cfgs}
        sa.keying_try = keying_try
        self.register(sa)
        self.log.info(
            "%s: initiating IKE_SA to %s:%d", sa.peer_label(), remote_ip, conn.remote_port
        )
        self.queue_task(sa, IkeInitTask(), now)

    def new_initiator_sa(
        self: Engine, conn: ConnectionConfig, local_ip: str, cfgs: list[ChildConfig], now: float
    ) -> IkeSa:
        """An IKE SA we initiate to ``conn``'s first remote address, to bring ``cfgs`` up."""
        return IkeSa(
            uid=self.new_uid(),
            conn=conn,
            initiator=True,
            spi_i=self.new_ike_spi(),
            spi_r=0,
            local=(local_ip, conn.local_port),
            remote=(conn.remote_addrs[0], conn.remote_port),
            created_at=now,
            last_recv=now,
            pending_children=cfgs,
        )

    def terminate(
        self: Engine, name: str, now: float, reason: str = "terminated by command"
    ) -> None:
        self.now = now
        for sa in self.sas_of(name):
            self.delete_ike(sa, reason, now)
        self.v1.terminate(name, now, reason)

    def terminate_child(
        self: Engine, name: str, child: str, now: float, reason: str = "terminated by command"
    ) -> None:
        """Delete the Child SAs named ``child`` of connection ``name``; the IKE SA stays."""
        self.now = now
        for sa in self.sas_of(name):
            if sa.state is not IkeState.ESTABLISHED:
                continue
            doomed = [c for c in sa.children if c.name == child and c.state is ChildState.INSTALLED]
            if doomed:
                self.delete_children(sa, doomed, reason, now)
        self.v1.terminate_child(name, child, now, reason)

    def close_idle_child(self: Engine, sa: Any, child: Any, reason: str, now: float) -> None:
        """Delete a child that went idle; the IKE SA stays unless ``inactivity_close_ike``
        and it was the last one."""
        close_ike = sa.conn is not None and sa.conn.inactivity_close_ike
        if isinstance(sa, IkeSa):
            self.delete_children(sa, [child], reason, now, close_ike=close_ike)
        else:
            self.v1.delete_child(sa, child, reason, now)
            if close_ike and not any(c.state is ChildState.INSTALLED for c in sa.children):
                self.v1.delete_ike(sa, "its last CHILD_SA closed for inactivity", now)
            self.v1.refresh(sa)

    def rekey(
        self: Engine, name: str, now: float, *, ike: bool = True, children: bool = True
    ) -> None:
        self.now = now
        for sa in self.sas_of(name):
            if sa.state is not IkeState.ESTABLISHED:
                continue
            if children:
                for c in list(sa.children):
                    if c.state is ChildState.INSTALLED:
                        self.queue_task(sa, CreateChildTask(c.config, rekey_of=c), now)
            if ike:
                self.queue_task(sa, IkeRekeyTask(), now)
        self.v1.rekey(name, now, ike=ike, children=children)

    def shutdown(self: Engine, now: float) -> None:
        for sa in list(self.sas.values()):
            self.delete_ike(sa, "agent shutting down", now)
        self.v1.shutdown(now)
        self.drop_lingering()


def _check_addresses(name: str, conn: ConnectionConfig) -> None:
    remote_ip = conn.remote_addrs[0]
    local_ip = conn.local_addrs[0] if conn.local_addrs else ""
    for what, value in (("remote_addrs", remote_ip), ("local_addrs", local_ip)):
        if value and ("/" in value or "-" in value) and not is_ip(value):
            raise UnknownConnection(
                f"{name}: {what} {value!r} is a subnet or range: it can only accept peers; "
                "list an address or a host name first to initiate"
            )
        if value and not is_ip(value):
            raise UnknownConnection(
                f"{name}: {what} {value!r}: host names are not resolved yet, give an IP address"
            )
