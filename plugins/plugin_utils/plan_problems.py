# Copyright: contributors to the ikelab.ipsec collection
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Problems found while planning tunnels: each names a host, its tunnels and a field.

``str(problem)`` reads ``host site1, tunnel site1--site2, field ikelab_protected_subnets: ...``;
problems that concern no single host (the topology, the action's parameters) leave the host
out, and host-wide problems name every tunnel of that host (``tunnels a--b a--c``).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

_MAX_TUNNELS_SHOWN = 4


@dataclass(frozen=True, slots=True, order=True)
class Problem:
    host: str  # inventory name, "" when no host is concerned
    tunnels: tuple[str, ...]  # tunnel ids ("a--b"), () when none is concerned
    field: str  # inventory variable or parameter, dotted ("ikelab_tunnels[0].options.x")
    reason: str

    def __str__(self) -> str:
        parts = []
        if self.host:
            parts.append(f"host {self.host}")
        if self.tunnels:
            shown = " ".join(self.tunnels[:_MAX_TUNNELS_SHOWN])
            more = len(self.tunnels) - _MAX_TUNNELS_SHOWN
            label = "tunnel" if len(self.tunnels) == 1 else "tunnels"
            parts.append(f"{label} {shown}" + (f" (and {more} more)" if more > 0 else ""))
        parts.append(f"field {self.field}")
        return ", ".join(parts) + f": {self.reason}"


class PlanError(ValueError):
    """The inventory cannot be planned; ``problems`` lists every problem found."""

    def __init__(self, problems: Iterable[Problem]) -> None:
        self.problems = merge(problems)
        super().__init__("\n".join(str(p) for p in self.problems))


def merge(problems: Iterable[Problem]) -> list[Problem]:
    """Sorted, without duplicates; one problem reported for several tunnels of the same host
    (a host-wide variable checked per tunnel) becomes one problem naming all of them."""
    grouped: dict[tuple[str, str, str], set[str]] = {}
    for p in problems:
        grouped.setdefault((p.host, p.field, p.reason), set()).update(p.tunnels)
    return sorted(
        Problem(host, tuple(sorted(tunnels)), field, reason)
        for (host, field, reason), tunnels in grouped.items()
    )


class Collector:
    """Collects problems; ``add`` keeps planning going so that every problem is reported."""

    def __init__(self, known: Iterable[Problem] = ()) -> None:
        """``known``: problems found before planning (a variable that could not be evaluated);
        further problems about the same host and field are left out."""
        self.problems: list[Problem] = list(known)
        self._known = {(p.host, p.field) for p in self.problems}

    def add(self, host: str, tunnels: Iterable[str], field: str, reason: str) -> None:
        if (host, field) not in self._known:
            self.problems.append(Problem(host, tuple(tunnels), field, reason))

    def raise_if_any(self) -> None:
        if self.problems:
            raise PlanError(self.problems)
