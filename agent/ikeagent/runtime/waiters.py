"""Waiting for connections to come up or go down, fed with the engine's events by the agent."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TYPE_CHECKING

from ikeagent.engine import events as ev

if TYPE_CHECKING:
    from ikeagent.runtime.agent import Agent


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


class Waiting:
    """Mixed into the Agent: commands that change SAs and wait for the engine to get there."""

    def _missing(self: Agent, name: str, children: set[str]) -> tuple[bool, set[str]]:
        """(an ESTABLISHED IKE SA of ``name`` exists, children not INSTALLED under one)."""
        ike_up, missing = False, set(children)
        for sa in self.engine_call("list_sas") or []:
            if sa.name == name and sa.state == "ESTABLISHED":
                ike_up = True
                missing -= {c.name for c in sa.children if c.state == "INSTALLED"}
        return ike_up, missing

    async def wait_up(self: Agent, name: str, children: set[str], timeout: float) -> None:
        """Initiate ``name`` and wait until its IKE SA and ``children`` are up (raises
        RuntimeError on a failure, TimeoutError after ``timeout``). Parts already up count."""
        assert self._loop is not None
        waiter = Waiter(name, children, self._loop.create_future())
        waiter.ike_up, waiter.children = self._missing(name, children)
        if waiter.ike_up and not waiter.children:
            return
        self.waiters.append(waiter)
        try:
            try:
                self.engine.initiate(name, self.clock(), sorted(children))  # type: ignore[union-attr]
            except Exception as e:  # unknown connection, unsupported version, ...
                reason = str(e.args[0]) if e.args else type(e).__name__
                raise RuntimeError(reason if reason.startswith(name) else f"{name}: {reason}")
            finally:
                self.process()
            if not waiter.future.done():
                ike_up, missing = self._missing(name, children)
                if ike_up and not missing:  # the engine had nothing left to do
                    return
            await asyncio.wait_for(asyncio.shield(waiter.future), timeout)
        finally:
            self.waiters.remove(waiter)

    async def wait_child_down(self: Agent, name: str, child: str, timeout: float) -> bool:
        """Delete the Child SAs ``child`` of ``name``; True once none is left."""
        self.engine_call("terminate_child", name, child, self.clock())

        def gone() -> bool:
            sas = [sa for sa in self.engine_call("list_sas") or [] if sa.name == name]
            return not any(c.name == child for sa in sas for c in sa.children)

        return await self._until(gone, timeout)

    async def wait_down(self: Agent, name: str, timeout: float) -> bool:
        """Delete the IKE SAs of ``name``; True once none is left."""
        self.engine_call("terminate", name, self.clock())
        return await self._until(
            lambda: not any(sa.name == name for sa in self.engine_call("list_sas") or []),
            timeout,
        )

    async def _until(self: Agent, done: Callable[[], bool], timeout: float) -> bool:
        self.process()
        deadline = self.clock() + timeout
        while self.clock() < deadline:
            if done():
                return True
            await asyncio.sleep(0.05)
        return False
