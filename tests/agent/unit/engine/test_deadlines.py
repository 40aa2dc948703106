"""The timers' lazy heap: moved deadlines and gone SAs are skipped, each due SA comes once."""

from __future__ import annotations

from dataclasses import dataclass

from ikeagent.engine.deadlines import Deadlines


@dataclass(eq=False)
class Sa:
    uid: int
    deadline: float | None = None


def test_moved_and_gone_deadlines_are_skipped() -> None:
    live = {1: Sa(1), 2: Sa(2), 3: Sa(3)}
    d = Deadlines(live.get)
    d.set(live[1], 10.0)
    d.set(live[2], 5.0)
    d.set(live[3], 7.0)
    d.set(live[2], 20.0)  # moved later: its entry at 5 is stale
    del live[3]  # gone: its entry at 7 is stale
    assert d.next() == 10.0
    assert d.due(9.0) == []
    assert d.due(15.0) == [live[1]] and live[1].deadline is None
    d.set(live[1], 12.0)  # re-armed in the past of ``now``: due at the next call
    assert d.due(15.0) == [live[1]]
    assert d.next() == 20.0
    d.set(live[2], None)
    assert d.next() is None and d.due(100.0) == []
