"""Mixed into the Agent: applying the engine's events, dispatched by type from
``_EVENT_HANDLERS``. Most change the data plane (on its thread, through ``Agent.dp``); the
status events are logged; every event is then fed to the waiters."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ikeagent.dataplane.base import SaUsage
from ikeagent.engine import events as ev

if TYPE_CHECKING:
    from ikeagent.runtime.agent import Agent

# the agent's logger: the log lines keep the name they had before this module was split out
log = logging.getLogger("ikeagent.runtime.agent")


class EventHandlers:
    """The engine's events applied to the data plane and the log; state lives in the agent."""

    def _apply(self: Agent, event: ev.Event) -> None:
        handler = _EVENT_HANDLERS.get(type(event))
        if handler is None:
            log.warning("unhandled engine event %r", event)
            return
        try:
            handler(self, event)
        except Exception:
            self._count("dataplane_errors")
            log.exception("applying %s failed", type(event).__name__)
        if self.waiters:
            for w in list(self.waiters):
                w.feed(event)

    def _install_child(self: Agent, e: ev.InstallChild) -> None:
        log.info(
            "installing CHILD_SA %s reqid %d SPIs in %08x out %08x",
            e.sa.name,
            e.sa.reqid,
            e.sa.inbound.spi,
            e.sa.outbound.spi,
        )
        self.dp("install_child", e.sa)

    def _delete_child(self: Agent, e: ev.DeleteChild) -> None:
        log.info("deleting SA pair reqid %d in %08x out %08x", e.reqid, e.spi_in, e.spi_out)
        self.dp("delete_child_sas", e.reqid, e.spi_in, e.spi_out)

    def _activate_outbound(self: Agent, e: ev.ActivateOutbound) -> None:
        log.info("sending on SA pair reqid %d in %08x out %08x", e.reqid, e.spi_in, e.spi_out)
        self.dp("activate_outbound", e.reqid, e.spi_in, e.spi_out)

    def _remove_policy(self: Agent, e: ev.RemovePolicy) -> None:
        log.info("removing policy reqid %d", e.reqid)
        self.dp("remove_policy", e.reqid)

    def _install_trap(self: Agent, e: ev.InstallTrap) -> None:
        log.info(
            "installing trap policy %s reqid %d: %s === %s",
            e.trap.name,
            e.trap.reqid,
            ", ".join(map(str, e.trap.local_ts)),
            ", ".join(map(str, e.trap.remote_ts)),
        )
        self.dp("install_trap", e.trap)

    def _query_usage(self: Agent, e: ev.QueryUsage) -> None:
        """Answer the engine at once with the pair's use (it decides on ``inactivity``)."""
        try:
            c = self.dp("counters", e.reqid, e.spi_in, e.spi_out)
            usage = SaUsage(e.reqid, e.spi_in, e.spi_out, c.last_used, c.packets_in + c.packets_out)
        except KeyError:
            usage = SaUsage(e.reqid, e.spi_in, e.spi_out, None, None)
        self.engine_call("handle_dataplane_event", usage, self.clock())

    def _log_status(self: Agent, e: ev.Event) -> None:
        if log.isEnabledFor(logging.INFO):  # no text built for a level that is off
            log.info("%s", _describe(e))


def _describe(e: ev.Event) -> str:
    if isinstance(e, ev.IkeSaUp):
        return f"IKE SA {e.name}[{e.uid}] established"
    if isinstance(e, ev.IkeSaDown):
        return f"IKE SA {e.name}[{e.uid}] down: {e.reason}"
    if isinstance(e, ev.ChildUp):
        return f"CHILD_SA {e.ike_name}/{e.name} reqid {e.reqid} up"
    if isinstance(e, ev.ChildDown):
        return f"CHILD_SA {e.ike_name}/{e.name} reqid {e.reqid} down: {e.reason}"
    return repr(e)


_EVENT_HANDLERS: dict[type, Callable[[Agent, Any], None]] = {
    ev.InstallChild: EventHandlers._install_child,
    ev.DeleteChild: EventHandlers._delete_child,
    ev.ActivateOutbound: EventHandlers._activate_outbound,
    ev.RemovePolicy: EventHandlers._remove_policy,
    ev.InstallTrap: EventHandlers._install_trap,
    ev.QueryUsage: EventHandlers._query_usage,
    ev.IkeSaUp: EventHandlers._log_status,
    ev.IkeSaDown: EventHandlers._log_status,
    ev.ChildUp: EventHandlers._log_status,
    ev.ChildDown: EventHandlers._log_status,
}
