"""What the xfrm data plane installed under each reqid: its policies, SA pairs and trap.

A reqid's policies come from its trap (``install_trap``) or its first child
(``install_child``), whichever comes first, and stay until ``remove_policy``:

- a child on a reqid that has policies adds only its SAs, and, when its selectors differ from
  the policies' (the peer narrowed a trap's), the policies it lacks; a policy whose template
  endpoints differ from the child's (a trap without local address, a peer now at another
  address) is pointed at the child's (UPDPOLICY: the kernel moves the packets it holds for the
  old policy to the new one, ``xfrm_policy_requeue``), so the kernel finds the child's
  outbound SA by exactly the addresses it was installed with;
- when the last SA pair of a trapped reqid goes, the trap's own templates come back: the
  policies stay, armed, and the next packet raises an ACQUIRE; a narrowed child's extra
  policies stay too (their template names the same reqid, so they raise ACQUIREs for it) and
  go with the rest at ``remove_policy``.

All or nothing: ``install`` and ``merge`` take back what they did when the kernel refuses a
request. Pure bookkeeping over ``KernelPolicies`` (which shares policies between reqids).
"""

from __future__ import annotations

import errno
import logging
from dataclasses import dataclass, field

from ..base import ChildSa, TrapPolicy
from .build import PolicySpec, policy_specs
from .messages import XfrmPolicyDir
from .netlink import XfrmError
from .policies import KernelPolicies

log = logging.getLogger(__name__)


@dataclass(slots=True)
class Pair:
    sa: ChildSa
    outbound_installed: bool


@dataclass(slots=True)
class Reqid:
    """Everything under one reqid."""

    policies: list[PolicySpec] = field(default_factory=list)
    pairs: list[Pair] = field(default_factory=list)  # oldest first
    trap: TrapPolicy | None = None


@dataclass(slots=True)
class PolicyChange:
    """What ``merge`` did to a reqid's policies (so a failed install can take it back)."""

    added: list[PolicySpec] = field(default_factory=list)
    retargeted: list[tuple[PolicySpec, PolicySpec]] = field(default_factory=list)  # before, after


class ReqidPolicies:
    """Installs, widens and gives up the policies of reqids through ``KernelPolicies``."""

    def __init__(self, kernel: KernelPolicies, priority_base: int) -> None:
        self.kernel = kernel
        self.priority_base = priority_base

    def install(self, source: ChildSa | TrapPolicy) -> Reqid:
        """The policies of a new reqid (of a child or a trap), all or nothing."""
        specs = policy_specs(source, self.priority_base)
        if not specs:
            raise XfrmError(errno.EINVAL, f"reqid {source.reqid}", "no traffic selector pair")
        entry = Reqid()
        try:
            for spec in specs:
                self.kernel.add(spec)
                entry.policies.append(spec)
        except BaseException:
            self.kernel.release(entry.policies)
            raise
        return entry

    def merge(self, entry: Reqid, sa: ChildSa, release_held: bool = False) -> PolicyChange:
        """Make the policies of ``entry`` cover ``sa``: add the ones it lacks, point those
        with other template endpoints at ``sa``'s. All or nothing. ``release_held`` (the
        first SAs of a trap are in): out policies that stay as they are are sent again, so
        the kernel sends the packets it holds for them now (``KernelPolicies.refresh``)."""
        change = PolicyChange()
        have = {(s.dir, s.sel): n for n, s in enumerate(entry.policies)}
        try:
            for spec in policy_specs(sa, self.priority_base):
                n = have.get((spec.dir, spec.sel))
                if n is None:
                    self.kernel.add(spec)
                    have[(spec.dir, spec.sel)] = len(entry.policies)
                    entry.policies.append(spec)
                    change.added.append(spec)
                elif entry.policies[n] != spec:
                    before = entry.policies[n]
                    self.kernel.replace(before, spec)
                    entry.policies[n] = spec
                    change.retargeted.append((before, spec))
                elif release_held and spec.dir == XfrmPolicyDir.OUT:
                    self._refresh(spec)
        except BaseException:
            self.undo(entry, change)
            raise
        if change.added:
            log.info(
                "reqid %d: %d policies added for narrower selectors", sa.reqid, len(change.added)
            )
        return change

    def release_held(self, entry: Reqid) -> None:
        """The first outbound SA of a trapped reqid is in: send its out policies again, so
        the kernel sends what it holds for them now (``KernelPolicies.refresh``)."""
        for spec in entry.policies:
            if spec.dir == XfrmPolicyDir.OUT:
                self._refresh(spec)

    def undo(self, entry: Reqid, change: PolicyChange) -> None:
        """Take a ``merge`` back (refusals on the way are logged)."""
        for before, after in reversed(change.retargeted):
            self._retarget(entry, after, before)
        if change.added:
            self.kernel.release(change.added)
            entry.policies = [s for s in entry.policies if s not in change.added]
        change.added = []
        change.retargeted = []

    def rearm(self, entry: Reqid) -> None:
        """The last SA pair of a trapped reqid went: its policies get the trap's template
        endpoints back (a refusal is logged: the child's still work for the same peer)."""
        if entry.trap is None:
            return
        for spec in policy_specs(entry.trap, self.priority_base):
            for have in entry.policies:
                if (have.dir, have.sel) == (spec.dir, spec.sel) and have != spec:
                    self._retarget(entry, have, spec)

    def release(self, entry: Reqid) -> None:
        self.kernel.release(entry.policies)
        entry.policies = []

    def _refresh(self, spec: PolicySpec) -> None:
        try:
            self.kernel.refresh(spec)
        except XfrmError as exc:  # the kernel's next retry sends them, a little later
            log.warning("%s", exc)

    def _retarget(self, entry: Reqid, old: PolicySpec, new: PolicySpec) -> None:
        try:
            self.kernel.replace(old, new)
        except XfrmError as exc:
            log.warning("%s", exc)
            return
        entry.policies[entry.policies.index(old)] = new
