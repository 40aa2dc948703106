"""The xfrm data plane's policies in the kernel: each with its guard, shared between reqids.

Guards. Our policies carry the mark ``0/owner_mask`` (see ``plane.py``): they match packets
whose skb mark has the owner bit clear, which is every packet unless something sets that bit.
A packet that carries it would match none of them and leave, or be accepted, in clear. So every
policy has a guard: the same selector, direction and priority, the mark ``owner/owner`` and
action block, added before the policy and deleted after it. The owner bit can then only make a
tunnel's traffic fail (visibly: EPERM on output, XfrmOutPolBlock / XfrmInPolBlock in
``/proc/net/xfrm_stat``), never bypass it. Leftover guards go with the leftover policies at
start.

Duplicate children. Two reqids may carry the same selectors (make-before-break
reauthentication, duplicate CHILD_SAs): a kernel policy is keyed by (direction, selector,
mark), so the second reqid's policy replaces the first's. Every (direction, selector) keeps
the list of the reqids that installed it, newest last (the one in the kernel): removing a
reqid whose policy was taken over leaves the kernel's alone; removing the owner of the
kernel's policy puts the newest survivor's back (UPDPOLICY), and only the last one deletes it
(``owners.PolicyOwners``). One guard serves them all.
"""

from __future__ import annotations

import errno
import logging
from collections.abc import Callable

from .build import PolicySpec, guard_message, policy_id, policy_message
from .messages import XfrmMsg, _XfrmMessage, xfrm_userpolicy_id
from .netlink import XfrmError, XfrmSocket
from .owners import PolicyOwners, Release

log = logging.getLogger(__name__)


class KernelPolicies:
    """Adds and gives up policies (with their guards) through ``socket()``; counts into
    ``stats`` (``policies_installed``, ``policies_removed``)."""

    def __init__(
        self, socket: Callable[[], XfrmSocket], owner_mask: int, stats: dict[str, int]
    ) -> None:
        self._socket = socket
        self.owner_mask = owner_mask
        self._stats = stats
        self._owners = PolicyOwners()  # reqids sharing a (dir, selector)

    def add(self, spec: PolicySpec) -> None:
        what = f"add {spec.dir.name.lower()} policy (reqid {spec.reqid})"
        msg = policy_message(spec, self.owner_mask)
        holder = self._owners.holder(spec)
        guarded = False
        try:
            if holder is None:
                # the guard first: from the moment the policy matches unmarked packets, marked
                # ones meet a block (UPDPOLICY: a leftover guard is simply taken over)
                self._socket().request(
                    guard_message(spec, self.owner_mask), XfrmMsg.UPDPOLICY, f"guard: {what}"
                )
                guarded = True
            try:
                self._socket().request(msg, XfrmMsg.NEWPOLICY, what)
            except XfrmError as exc:
                if exc.errno != errno.EEXIST:
                    raise
                if holder is None:
                    # the same selectors with our mark: a leftover nobody reconciled
                    log.warning("%s: replacing a policy with our mark", what)
                else:
                    log.info("%s: takes over the policy of reqid %d", what, holder)
                self._socket().request(msg, XfrmMsg.UPDPOLICY, what)
        except BaseException:
            if guarded:  # refused: nothing of this policy stays
                self._delete_guard(spec)
            raise
        self._stats["policies_installed"] += 1
        self._owners.add(spec)

    def replace(self, old: PolicySpec, new: PolicySpec) -> None:
        """Point ``old`` (one of a reqid's policies) at ``new``'s template endpoints: in the
        kernel (UPDPOLICY, which keeps the policy's queue of held packets) if the kernel's
        policy for that selector is ours, else only here (it comes back with them)."""
        if new == old:
            return
        if self._owners.holder(old) == old.reqid:
            what = (
                f"update {old.dir.name.lower()} policy (reqid {old.reqid}) to "
                f"{new.tmpl_src or '%any'} -> {new.tmpl_dst or '%any'}"
            )
            self._socket().request(policy_message(new, self.owner_mask), XfrmMsg.UPDPOLICY, what)
        self._owners.replace(old, new)

    def refresh(self, spec: PolicySpec) -> None:
        """Send ``spec`` again (UPDPOLICY) if the kernel's policy for its selector is ours:
        the kernel then moves the packets it holds for the policy to the new one and runs
        their queue at once (``xfrm_policy_requeue``), instead of at its next backoff."""
        if self._owners.holder(spec) == spec.reqid:
            what = f"refresh {spec.dir.name.lower()} policy (reqid {spec.reqid})"
            self._socket().request(policy_message(spec, self.owner_mask), XfrmMsg.UPDPOLICY, what)

    def release(self, specs: list[PolicySpec]) -> None:
        """Give up ``specs`` (of one reqid): see ``owners.PolicyOwners``."""
        gone = []
        for spec in specs:
            action, back = self._owners.release(spec)
            if action is Release.DELETE:
                gone.append(spec)
            elif back is not None:
                what = f"restore {spec.dir.name.lower()} policy of reqid {back.reqid}"
                try:
                    msg = policy_message(back, self.owner_mask)
                    self._socket().request(msg, XfrmMsg.UPDPOLICY, what)
                except XfrmError as exc:
                    log.warning("%s", exc)
        for spec in gone:
            # the policy before its guard, so a marked packet is never left with neither
            try:
                self._socket().request(
                    policy_id(spec.selector, spec.dir, self.owner_mask),
                    XfrmMsg.DELPOLICY,
                    f"delete {spec.dir.name.lower()} policy (reqid {spec.reqid})",
                )
                self._stats["policies_removed"] += 1
            except XfrmError as exc:
                if exc.errno != errno.ENOENT:
                    log.warning("%s", exc)
            self._delete_guard(spec)

    def reconcile(self, sock: XfrmSocket) -> int:
        """Delete every policy and guard with our marks (an earlier run's); returns how many
        policies (guards not counted) went."""
        policies = 0
        for pol in sock.dump(xfrm_userpolicy_id(), XfrmMsg.GETPOLICY, "dump policies"):
            guard = self.owned(pol, guard=True)
            if not guard and not self.owned(pol):
                continue
            try:
                sock.request(
                    policy_id(pol["sel"], pol["dir"], self.owner_mask, guard=guard),
                    XfrmMsg.DELPOLICY,
                    "delete leftover policy",
                )
                policies += not guard
            except XfrmError as exc:
                if exc.errno != errno.ENOENT:
                    raise
        return policies

    def owned(self, msg: _XfrmMessage, *, guard: bool = False) -> bool:
        """Ours: exactly our mark (a guard: the owner bit as the value too)."""
        mark = msg.get_attr("XFRMA_MARK")
        value = self.owner_mask if guard else 0
        return mark is not None and (mark["v"], mark["m"]) == (value, self.owner_mask)

    def _delete_guard(self, spec: PolicySpec) -> None:
        try:
            self._socket().request(
                policy_id(spec.selector, spec.dir, self.owner_mask, guard=True),
                XfrmMsg.DELPOLICY,
                f"delete the guard of a {spec.dir.name.lower()} policy (reqid {spec.reqid})",
            )
        except XfrmError as exc:
            if exc.errno != errno.ENOENT:
                log.warning("%s", exc)
