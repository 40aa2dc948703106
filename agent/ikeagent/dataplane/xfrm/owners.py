"""Which reqid owns each kernel policy when several reqids carry the same selectors.

A kernel policy is keyed by (direction, selector, mark): when two children have the same
traffic selectors under different reqids (make-before-break reauthentication, duplicate
CHILD_SAs), the second one's policy replaces the first's in the kernel. ``PolicyOwners``
keeps, per (direction, selector), the specs of every reqid that installed it, newest last
(the one in the kernel), and says what giving one up means for the kernel. Pure bookkeeping.
"""

from __future__ import annotations

from enum import Enum

from .build import PolicySpec


class Release(Enum):
    KEEP = "keep"  # another reqid's policy is in the kernel: leave it
    RESTORE = "restore"  # ours is in the kernel, others remain: put the newest back
    DELETE = "delete"  # nobody else has it: delete it


class PolicyOwners:
    def __init__(self) -> None:
        self._owners: dict[tuple, list[PolicySpec]] = {}

    def add(self, spec: PolicySpec) -> PolicySpec | None:
        """Record ``spec`` as the kernel's policy for its key; returns the one it replaces."""
        owners = self._owners.setdefault((spec.dir, spec.sel), [])
        previous = owners[-1] if owners else None
        owners[:] = [s for s in owners if s.reqid != spec.reqid]
        owners.append(spec)
        return previous

    def release(self, spec: PolicySpec) -> tuple[Release, PolicySpec | None]:
        """Give ``spec`` up: what to do in the kernel, and the spec to restore if any."""
        key = (spec.dir, spec.sel)
        owners = self._owners.get(key, [])
        held = bool(owners) and owners[-1].reqid == spec.reqid
        owners[:] = [s for s in owners if s.reqid != spec.reqid]
        if not owners:
            self._owners.pop(key, None)
            return Release.DELETE, None
        if held:
            return Release.RESTORE, owners[-1]
        return Release.KEEP, None

    def replace(self, old: PolicySpec, new: PolicySpec) -> bool:
        """Put ``new`` (same reqid, direction and selector, other template) in ``old``'s place,
        keeping its rank; True when it is the kernel's policy (the newest)."""
        owners = self._owners.get((old.dir, old.sel), [])
        for n, spec in enumerate(owners):
            if spec == old:
                owners[n] = new
                return n == len(owners) - 1
        raise KeyError(old)

    def holder(self, spec: PolicySpec) -> int | None:
        owners = self._owners.get((spec.dir, spec.sel))
        return owners[-1].reqid if owners else None
