"""The engine's source of randomness, injected so tests can seed it.

Anything with ``random.Random``'s ``randbytes(n)`` and ``random()`` works: production passes
``random.SystemRandom()`` (os.urandom underneath), tests pass ``random.Random(seed)``.
"""

from __future__ import annotations

from typing import Protocol


class RandomSource(Protocol):
    def randbytes(self, n: int) -> bytes: ...

    def random(self) -> float: ...
