"""One deadline per SA in a lazy min-heap, for both engines' timers.

An SA's ``deadline`` attribute is the truth; heap entries that no longer match it (the SA
moved its deadline, or is gone) are skipped when they surface.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable
from typing import Generic, Protocol, TypeVar


class Timed(Protocol):
    uid: int
    deadline: float | None


T = TypeVar("T", bound=Timed)


class Deadlines(Generic[T]):
    def __init__(self, lookup: Callable[[int], T | None]) -> None:
        self._lookup = lookup  # uid -> the live SA, None once it is gone
        self._heap: list[tuple[float, int]] = []

    def set(self, item: T, deadline: float | None) -> None:
        if deadline is not None and deadline != item.deadline:
            heapq.heappush(self._heap, (deadline, item.uid))
        item.deadline = deadline

    def next(self) -> float | None:
        heap = self._heap
        while heap:
            d, uid = heap[0]
            item = self._lookup(uid)
            if item is None or item.deadline != d:
                heapq.heappop(heap)
                continue
            return d
        return None

    def due(self, now: float) -> list[T]:
        """The SAs whose deadline has passed, each once, with their deadline cleared."""
        out: list[T] = []
        heap = self._heap
        while heap and heap[0][0] <= now:
            d, uid = heapq.heappop(heap)
            item = self._lookup(uid)
            if item is not None and item.deadline == d and item not in out:
                out.append(item)
        for item in out:
            item.deadline = None
        return out
