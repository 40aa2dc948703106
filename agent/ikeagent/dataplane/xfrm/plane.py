"""The kernel XFRM data plane: SAs and policies in the Linux kernel over XFRM netlink.

Ownership. Everything this data plane installs carries the XFRM mark ``0/owner_mask``
(value 0 under a mask bit that nothing else on the host should use; ``0x2000`` by default,
configurable). The reqid stays the engine's, so ``ip xfrm state``/``ip xfrm policy`` show
the reqids of ``ikectl list-sas``. The mark is what ``start()`` looks for when it removes the
leftovers of an earlier run (a crash, a kill -9): only policies and SAs whose mark is exactly
``0/owner_mask`` are touched, never those of ``ip xfrm``, strongSwan or another agent with
another mask. The mark also keeps us apart in the kernel: a policy's identity includes its
mark, so our policies never replace another daemon's with the same selectors. Its effect on
traffic, and the guard policy that keeps a marked packet from bypassing ours: ``policies.py``.

Policy priorities: ``priority_base + (256 - prefix lengths) * 4 (+2 without ports, +1 without
protocol)``: narrower selectors are preferred (lower values win in the kernel), as with
strongSwan's scheme; the base keeps them apart from other daemons' ranges.

Rekeys and outbound selection. The kernel picks the outbound SA of a policy's template by
(reqid, tunnel endpoints, mark) and prefers the valid SA added last (``xfrm_state_find``
compares ``curlft.add_time``); it cannot be told "use that one". So:

- a new pair installed with ``outbound_active`` True gets both SAs at once: the kernel sends
  on the new outbound SA from then on (make-before-break; the old inbound SA keeps working
  until deleted);
- a pair installed with ``outbound_active`` False (a rekey responder) gets its inbound SA now,
  and its outbound SA is held back here, keys in memory, until ``activate_outbound`` or until
  the reqid's active pair is deleted: then it is added and, being the newest, carries the
  traffic (what strongSwan does too: it installs a responder's outbound SA later).
- ``activate_outbound`` on a pair whose outbound SA is already in the kernel changes nothing
  (re-adding it to make it the newest would restart its sequence numbers); it is logged if
  that pair is not the newest.

Duplicate children (two reqids with the same selectors share a kernel policy) and guards:
``policies.py``.

Routes (``routes.py``): with ``install_routes`` a route per remote TS goes into a table of
our own (``routing_table``, looked up first by a rule at ``routing_priority``) when a reqid's
policies are installed, and leaves with them.

Traps (``install_trap``): the out/in/fwd policies (with their guards) and routes of a reqid
with no SA; what a child on it, the deletion of its last pair and ``remove_policy`` do:
``reqids.py``. A packet on such a policy makes the kernel send an ACQUIRE (our mark, the
template's reqid, the packet's addresses; forwarded traffic as local: ``translate.py``). What
the kernel does with the packet (measured in UML guests, kernel 6.1, ``test_xfrm_trap.py``):
with ``xfrm_larval_drop`` 1 (its default) it drops it silently (XfrmOutNoStates), forwarded
or local; with 0, which ``hold_packets`` sets in the plane's namespace with the first trap
(``sysctls.py``, restored at close), it holds it, forwarded or local (ping, UDP ``sendto``,
TCP SYN: the sender sees no error, no EAGAIN), up to 100 per policy, and retries the queue
after 0.1 s, doubling the wait each time (dropped when it reaches 60 s: kernel source). The SA
does not run the queue, so packets sent after it would overtake the held ones; a policy replaced
(UPDPOLICY) hands its queue over and runs it at once, so the first pair of a trapped reqid
re-sends its out policies right after its outbound SA is added: the held packets leave then,
in their order. A packet sent in the short window between that add and the re-send takes the
direct path and can overtake them (seen with probes every 5 ms in ``bench/run --trap``; pings
a second apart keep their order).
``acquire_retry`` sets ``xfrm_acq_expires`` (how long the ACQUIRE's larval state blocks the
next one; default 30 s) to the contract's ``ACQUIRE_RETRY``; held packets outlive it.

Every call comes from one thread (the runtime's data-plane thread: ``inline_calls`` is False
because netlink requests block); the event listener runs in a thread of its own and only
reads an immutable snapshot of what is installed.
"""

from __future__ import annotations

import errno
import logging
import socket
import threading
from collections.abc import Callable

from ..base import (
    ACQUIRE_RETRY,
    ChildSa,
    DataplaneEvent,
    Endpoint,
    IkeSink,
    SaCounters,
    SaExpired,
    TrapPolicy,
)
from .build import (
    DEFAULT_OWNER_MASK,
    DEFAULT_PRIORITY_BASE,
    sa_id,
    sa_message,
    socket_bypass_policy,
)
from .messages import XfrmMsg, XfrmPolicyDir, _XfrmMessage, xfrm_usersa_id
from .netlink import XfrmError, XfrmListener, XfrmSocket
from .policies import KernelPolicies
from .reqids import Pair, PolicyChange, Reqid, ReqidPolicies
from .routes import DEFAULT_ROUTING_PRIORITY, DEFAULT_ROUTING_TABLE, RouteTable, open_iproute
from .structs import unpack_address
from .sysctls import ACQ_EXPIRES, LARVAL_DROP, SYSCTL_ROOT, NamespaceSysctls
from .translate import event_for, owned, sa_counters

log = logging.getLogger(__name__)

SOL_UDP = 17
UDP_ENCAP = 100
UDP_ENCAP_ESPINUDP = 2
IP_XFRM_POLICY = 17
IPV6_XFRM_POLICY = 35


class XfrmDataplane:
    """SAs and policies in the Linux kernel (XFRM netlink); see the module docstring."""

    name = "xfrm"
    inline_calls = False
    requires_udp_encap = False

    def __init__(
        self,
        netns: str | None = None,
        owner_mask: int = DEFAULT_OWNER_MASK,
        priority_base: int = DEFAULT_PRIORITY_BASE,
        reconcile: bool = True,
        events: bool = True,
        connect: Callable[[str | None], XfrmSocket] = XfrmSocket,
        install_routes: bool = True,
        routing_table: int = DEFAULT_ROUTING_TABLE,
        routing_priority: int = DEFAULT_ROUTING_PRIORITY,
        iproute: Callable[[str | None], object] = open_iproute,
        hold_packets: bool = True,
        acquire_retry: int | None = int(ACQUIRE_RETRY),
        sysctl_root: str = SYSCTL_ROOT,
        sysctl_state: str | None = None,
    ) -> None:
        if not 0 < owner_mask <= 0xFFFF_FFFF:
            raise ValueError("owner_mask must be a non-zero 32-bit mask")
        self.netns = netns
        self.owner_mask = owner_mask
        self.priority_base = priority_base
        self.reconcile_on_start = reconcile
        self.events_enabled = events
        self._connect = connect  # the unit tests pass a fake kernel here
        self._sock: XfrmSocket | None = None
        self._listener: XfrmListener | None = None
        self._children: dict[int, Reqid] = {}
        # with the first trap: hold packets (xfrm_larval_drop 0), ACQUIREs every
        # ``acquire_retry`` s (xfrm_acq_expires); None/False leave the namespace's values
        self.hold_packets = hold_packets
        self.acquire_retry = acquire_retry
        # ``sysctl_state``: where the values to restore are kept (see ``sysctls``)
        self._sysctls = NamespaceSysctls(netns, sysctl_root, sysctl_state)
        self._routes = (
            RouteTable(netns, routing_table, routing_priority, iproute) if install_routes else None
        )
        # (SPI, destination) -> reqid of every SA in the kernel, replaced whole on change so
        # the listener thread reads a consistent snapshot
        self._spis: dict[tuple[int, str], int] = {}
        self._events: list[DataplaneEvent] = []
        self._events_lock = threading.Lock()
        self._wakeup: Callable[[], None] | None = None
        self._stats: dict[str, int] = dict.fromkeys(
            (
                "sas_installed",
                "sas_deleted",
                "policies_installed",
                "policies_removed",
                "install_failures",
                "traps_installed",
                "reconciled_sas",
                "reconciled_policies",
                "acquires",
                "expires",
                "foreign_events",
            ),
            0,
        )
        self._policies = ReqidPolicies(
            KernelPolicies(self._socket, owner_mask, self._stats), priority_base
        )

    # -- lifecycle --------------------------------------------------------------------------

    def start(self) -> None:
        if self._sock is not None:
            return
        self._sock = self._connect(self.netns)
        try:
            if self.reconcile_on_start:
                self.reconcile()
                self._sysctls.recover()
            if self._routes is not None:
                self._routes.start(self.reconcile_on_start)
            if self.events_enabled:
                self._listener = XfrmListener(self._on_kernel_message, self.netns)
                self._listener.start()
        except BaseException:
            if self._routes is not None:
                self._routes.close()
            self._sock.close()
            self._sock = None
            raise
        log.info("xfrm data plane started (owner mark 0/0x%x)", self.owner_mask)

    def close(self) -> None:
        if self._sock is None:
            return
        for reqid in list(self._children):
            try:
                self.remove_policy(reqid)
            except OSError as exc:
                log.warning("removing reqid %d failed: %s", reqid, exc)
        if self._routes is not None:
            self._routes.close()
        self._sysctls.restore()
        if self._listener is not None:
            self._listener.stop()
            self._listener = None
        self._sock.close()
        self._sock = None

    def reconcile(self) -> tuple[int, int]:
        """Delete every policy and SA carrying our owner mark (leftovers of an earlier run);
        returns (policies, SAs) removed. Nothing without exactly our mark is touched."""
        sock = self._socket()
        policies = self._policies.kernel.reconcile(sock)
        sas = 0
        for sa in sock.dump(xfrm_usersa_id(), XfrmMsg.GETSA, "dump SAs"):
            if not owned(sa, self.owner_mask):
                continue
            daddr = unpack_address(sa["id"]["daddr"], sa["family"])
            try:
                sock.request(
                    sa_id(daddr, sa["id"]["spi"], self.owner_mask),
                    XfrmMsg.DELSA,
                    "delete leftover SA",
                )
                sas += 1
            except XfrmError as exc:
                if exc.errno != errno.ESRCH:
                    raise
        self._stats["reconciled_policies"] += policies
        self._stats["reconciled_sas"] += sas
        if policies or sas:
            log.info("removed %d policies and %d SAs left by an earlier run", policies, sas)
        return policies, sas

    def attach_encap_socket(self, sock: object, local: Endpoint, ike_sink: IkeSink) -> bool:
        """Let the kernel take ESP-in-UDP off the NAT-T socket (UDP_ENCAP_ESPINUDP, RFC 3948)
        and exempt the socket's own datagrams from IPsec policies; the runtime keeps reading
        it (IKE, behind the non-ESP marker)."""
        setsockopt = sock.setsockopt  # type: ignore[attr-defined]
        setsockopt(SOL_UDP, UDP_ENCAP, UDP_ENCAP_ESPINUDP)
        family = getattr(sock, "family", socket.AF_INET)
        level, option = (
            (socket.IPPROTO_IPV6, IPV6_XFRM_POLICY)
            if family == socket.AF_INET6
            else (socket.IPPROTO_IP, IP_XFRM_POLICY)
        )
        for direction in (XfrmPolicyDir.IN, XfrmPolicyDir.OUT):
            try:
                setsockopt(level, option, socket_bypass_policy(family, direction))
            except OSError as exc:
                log.warning("no IPsec bypass on the NAT-T socket %s:%d: %s", *local, exc)
        return False

    # -- SAs and policies -------------------------------------------------------------------

    def install_policies(self, sa: ChildSa) -> bool:
        """Install the out/in/fwd policies of ``sa``'s reqid unless they are in already
        (True when this call added them). All or nothing: a refusal removes what was added."""
        if sa.reqid in self._children:
            return False
        self._children[sa.reqid] = self._policies.install(sa)
        if self._routes is not None:
            self._routes.install(sa)
        return True

    def install_trap(self, trap: TrapPolicy) -> None:
        """The policies and routes of ``trap``'s reqid, no SA (nothing changes in the
        kernel when the reqid has policies already). All or nothing."""
        entry = self._children.get(trap.reqid)
        if entry is None:
            entry = self._policies.install(trap)
            self._children[trap.reqid] = entry
            if self._routes is not None:
                self._routes.install(trap)
            log.info(
                "trap for reqid %d (%s) installed: %s === %s",
                trap.reqid,
                trap.name,
                ", ".join(map(str, trap.local_ts)),
                ", ".join(map(str, trap.remote_ts)),
            )
        elif entry.trap is None:
            log.info("reqid %d (%s) has its policies: trapped as they are", trap.reqid, trap.name)
        if entry.trap is None:
            self._stats["traps_installed"] += 1
        entry.trap = trap
        if self.hold_packets:
            why = "hold packets of trap policies until their SA is in"
            self._sysctls.set(LARVAL_DROP, 0, why)
        if self.acquire_retry:
            why = "a trap without SA raises its next ACQUIRE after this many seconds"
            self._sysctls.set(ACQ_EXPIRES, self.acquire_retry, why)

    def install_child(self, sa: ChildSa) -> None:
        entry = self._children.get(sa.reqid)
        added = entry is None
        if entry is None:
            self.install_policies(sa)
            entry = self._children[sa.reqid]
        installed: list[tuple[int, str]] = []
        change = PolicyChange()
        try:
            self._add_sa(sa, inbound=True)
            installed.append((sa.inbound.spi, sa.local_addr))
            if sa.outbound_active:
                self._add_sa(sa, inbound=False)
                installed.append((sa.outbound.spi, sa.remote_addr))
            if not added:  # a trap's reqid, or a further pair: what the policies lack
                armed = entry.trap is not None and not entry.pairs and sa.outbound_active
                change = self._policies.merge(entry, sa, release_held=armed)
        except BaseException:
            self._stats["install_failures"] += 1
            for spi, daddr in installed:
                self._del_sa(spi, daddr)
            if added and not entry.pairs:
                self._policies.release(entry)
                if self._routes is not None:
                    self._routes.remove(sa.reqid)
                del self._children[sa.reqid]
            raise
        if change.added and self._routes is not None:
            self._routes.install(sa)  # narrower than the trap's: shared, or more specific
        entry.pairs.append(Pair(sa, sa.outbound_active))
        self._publish_spis()
        log.info("installed %r in the kernel", sa)

    def activate_outbound(self, reqid: int, spi_in: int, spi_out: int) -> None:
        pair = self._pair(reqid, spi_in, spi_out)
        if pair is None:
            log.debug("no SA pair 0x%08x/0x%08x under reqid %d", spi_in, spi_out, reqid)
            return
        if not pair.outbound_installed:
            self._install_outbound(pair)
            return
        # already in the kernel: it carries the traffic if it is the newest outbound SA
        newest = [p for p in self._children[reqid].pairs if p.outbound_installed][-1]
        if newest is not pair:
            log.warning(
                "reqid %d: the kernel keeps sending on the newer SA 0x%08x, not 0x%08x",
                reqid,
                newest.sa.outbound.spi,
                spi_out,
            )

    def delete_child_sas(self, reqid: int, spi_in: int, spi_out: int) -> None:
        pair = self._pair(reqid, spi_in, spi_out)
        if pair is None:
            log.debug("no SA pair 0x%08x/0x%08x under reqid %d", spi_in, spi_out, reqid)
            return
        child = self._children[reqid]
        installed = [p for p in child.pairs if p.outbound_installed]
        if installed and installed[-1] is pair and len(installed) == 1:
            # the pair that carries the traffic goes and no other outbound SA is in the kernel:
            # a held-back successor takes over before it does, so outbound traffic never meets
            # a policy without SA; the oldest one (the engine names the right one with
            # activate_outbound first; a pair held back after ours lost a rekey collision is
            # newer, and about to go)
            held = [p for p in child.pairs if p is not pair and not p.outbound_installed]
            if held:
                self._install_outbound(held[0])
        self._del_sa(spi_in, pair.sa.local_addr)
        if pair.outbound_installed:
            self._del_sa(spi_out, pair.sa.remote_addr)
        child.pairs.remove(pair)
        self._publish_spis()
        if not child.pairs and child.trap is not None:
            self._policies.rearm(child)  # the policies stay: the next packet raises an ACQUIRE
            log.info("reqid %d: last SA pair deleted, trap armed again", reqid)

    def remove_policy(self, reqid: int) -> None:
        child = self._children.pop(reqid, None)
        if child is None:
            return
        self._policies.release(child)
        if self._routes is not None:
            self._routes.remove(reqid)
        for pair in child.pairs:
            self._del_sa(pair.sa.inbound.spi, pair.sa.local_addr)
            if pair.outbound_installed:
                self._del_sa(pair.sa.outbound.spi, pair.sa.remote_addr)
        self._publish_spis()

    def counters(self, reqid: int, spi_in: int, spi_out: int) -> SaCounters:
        pair = self._pair(reqid, spi_in, spi_out)
        if pair is None:
            raise KeyError((reqid, spi_in, spi_out))
        sock = self._socket()
        outbound = None
        try:
            inbound = sock.get(
                sa_id(pair.sa.local_addr, spi_in, self.owner_mask), XfrmMsg.GETSA, "read SA"
            )
            if pair.outbound_installed:
                outbound = sock.get(
                    sa_id(pair.sa.remote_addr, spi_out, self.owner_mask), XfrmMsg.GETSA, "read SA"
                )
        except XfrmError as exc:
            # gone from the kernel behind our back (``ip xfrm state flush``, a hard expiry
            # not yet handled): unknown, as the Protocol says, not a failed listing
            if exc.errno not in (errno.ESRCH, errno.ENOENT):
                raise
            raise KeyError((reqid, spi_in, spi_out)) from exc
        return sa_counters(inbound, outbound)

    def poll_events(self) -> list[DataplaneEvent]:
        with self._events_lock:
            events, self._events = self._events, []
        return events

    def set_event_callback(self, wakeup: Callable[[], None]) -> None:
        self._wakeup = wakeup

    def stats(self) -> dict[str, int]:
        merged = dict(self._stats)
        merged["children"] = len(self._children)
        merged["sa_pairs"] = sum(len(c.pairs) for c in self._children.values())
        merged["policies"] = sum(len(c.policies) for c in self._children.values())
        merged["traps"] = sum(c.trap is not None for c in self._children.values())
        if self._routes is not None:
            merged.update(self._routes.stats)
            merged["routes"] = len(self._routes.installed())
        if self._listener is not None:
            merged["event_overruns"] = self._listener.overruns
        return merged

    # -- kernel requests --------------------------------------------------------------------

    def _socket(self) -> XfrmSocket:
        if self._sock is None:
            raise XfrmError(errno.ENOTCONN, "xfrm data plane", "not started")
        return self._sock

    def _add_sa(self, sa: ChildSa, inbound: bool) -> None:
        keys = sa.inbound if inbound else sa.outbound
        what = f"add {'inbound' if inbound else 'outbound'} SA 0x{keys.spi:08x} (reqid {sa.reqid})"
        self._socket().request(sa_message(sa, inbound, self.owner_mask), XfrmMsg.NEWSA, what)
        self._stats["sas_installed"] += 1

    def _install_outbound(self, pair: Pair) -> None:
        self._add_sa(pair.sa, inbound=False)
        pair.outbound_installed = True
        self._publish_spis()
        entry = self._children.get(pair.sa.reqid)
        first = entry is not None and [p for p in entry.pairs if p.outbound_installed] == [pair]
        if first and entry is not None and entry.trap is not None:
            self._policies.release_held(entry)  # a trap's first outbound SA, held back

    def _del_sa(self, spi: int, daddr: str) -> None:
        try:
            self._socket().request(
                sa_id(daddr, spi, self.owner_mask), XfrmMsg.DELSA, f"delete SA 0x{spi:08x}"
            )
            self._stats["sas_deleted"] += 1
        except XfrmError as exc:
            if exc.errno != errno.ESRCH:  # already gone (e.g. a hard expiry)
                log.warning("%s", exc)

    def _pair(self, reqid: int, spi_in: int, spi_out: int) -> Pair | None:
        child = self._children.get(reqid)
        if child is None:
            return None
        for pair in child.pairs:
            if (pair.sa.inbound.spi, pair.sa.outbound.spi) == (spi_in, spi_out):
                return pair
        return None

    def _publish_spis(self) -> None:
        spis: dict[tuple[int, str], int] = {}
        for reqid, child in self._children.items():
            for pair in child.pairs:
                spis[(pair.sa.inbound.spi, pair.sa.local_addr)] = reqid
                if pair.outbound_installed:
                    spis[(pair.sa.outbound.spi, pair.sa.remote_addr)] = reqid
        self._spis = spis

    # -- kernel notifications (listener thread) --------------------------------------------

    def _on_kernel_message(self, msg: _XfrmMessage) -> None:
        event = self.event_for(msg)
        if event is None:
            self._stats["foreign_events"] += 1
            return
        self._stats["expires" if isinstance(event, SaExpired) else "acquires"] += 1
        with self._events_lock:
            self._events.append(event)
        wakeup = self._wakeup
        if wakeup is not None:
            try:
                wakeup()
            except Exception:
                log.exception("event wakeup failed")

    def event_for(self, msg: _XfrmMessage) -> DataplaneEvent | None:
        """The engine event for a kernel notification (``translate.event_for``)."""
        return event_for(msg, self.owner_mask, self._spis)
