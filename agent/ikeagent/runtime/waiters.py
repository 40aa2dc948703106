"""Waiting for a connection to come up, fed with the engine's events by the agent."""

from __future__ import annotations

import asyncio

from ikeagent.engine import events as ev


class Waiter:
    """Waits for an IKE SA and a set of children of one connection to come up."""

    def __init__(self, name: str, children: set[str], future: asyncio.Future[None]) -> None:
        self.name, self.children, self.future = name, set(children), future
        self.ike_up = False

    def feed(self, event: ev.Event) -> None:
        if self.future.done():
            return
        if isinstance(event, ev.IkeSaUp) and event.name == self.name:
            self.ike_up = True
        elif isinstance(event, ev.ChildUp) and event.ike_name == self.name:
            self.children.discard(event.name)
        elif isinstance(event, ev.IkeSaDown) and event.name == self.name:
            self.future.set_exception(RuntimeError(f"IKE SA {self.name} failed: {event.reason}"))
            return
        elif (
            isinstance(event, ev.ChildDown)
            and event.ike_name == self.name
            and event.name in self.children
        ):
            self.future.set_exception(RuntimeError(f"CHILD_SA {event.name} failed: {event.reason}"))
            return
        if self.ike_up and not self.children:
            self.future.set_result(None)
