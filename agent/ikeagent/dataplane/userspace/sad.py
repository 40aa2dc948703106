"""SA and policy database of the userspace data plane (no I/O; testable without root).

The data-plane threads read these structures while the runtime thread changes them, so every
change replaces a whole dict or tuple (a single attribute store, atomic under the GIL) instead
of mutating one the threads may be iterating; the per-SA counters are plain attributes, each
written by one thread only (inbound counters by the inbound thread, outbound by the outbound).
A trapped policy changes its outbound SA through its ``Trap`` (see ``trap``).
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable
from dataclasses import dataclass

from ikeagent.crypto.esp import EspCipher

from ..base import ChildSa, ExpireKind, Lifetime, SaCounters, SaKeys, TrapPolicy
from ..replay import ReplayWindow
from ..selector import PacketInfo, SelectorPair, address_key, packet_info
from .trap import Trap

_INF = float("inf")
CACHE_LIMIT = 65536


class _Metered:
    """Byte/packet counters with soft and hard lifetime limits (0 = none)."""

    __slots__ = (
        "spi",
        "reqid",
        "cipher",
        "bytes",
        "packets",
        "last_used",
        "lifetime",
        "soft_done",
        "hard_done",
        "check_bytes",
        "check_packets",
    )

    def __init__(self, reqid: int, keys: SaKeys, lifetime: Lifetime) -> None:
        self.spi = keys.spi
        self.reqid = reqid
        self.cipher = EspCipher(
            keys.encr_id, keys.encr_key, keys.integ_id, keys.integ_key, keys.esn
        )
        self.bytes = 0
        self.packets = 0
        self.last_used: float | None = None
        self.lifetime = lifetime
        self.soft_done = not (lifetime.soft_bytes or lifetime.soft_packets)
        self.hard_done = False
        self._rearm()

    def _rearm(self) -> None:
        lt = self.lifetime
        limits_b = []
        limits_p = []
        if not self.soft_done:
            limits_b.append(lt.soft_bytes)
            limits_p.append(lt.soft_packets)
        if not self.hard_done:
            limits_b.append(lt.hard_bytes)
            limits_p.append(lt.hard_packets)
        self.check_bytes = min((x for x in limits_b if x), default=_INF)
        self.check_packets = min((x for x in limits_p if x), default=_INF)

    def expired_kinds(self) -> list[ExpireKind]:
        """Called when a check threshold was reached: the kinds that just ran out (once each)."""
        lt = self.lifetime
        kinds = []
        if not self.soft_done and (
            (lt.soft_bytes and self.bytes >= lt.soft_bytes)
            or (lt.soft_packets and self.packets >= lt.soft_packets)
        ):
            self.soft_done = True
            kinds.append(ExpireKind.SOFT)
        if not self.hard_done and (
            (lt.hard_bytes and self.bytes >= lt.hard_bytes)
            or (lt.hard_packets and self.packets >= lt.hard_packets)
        ):
            self.hard_done = True
            self.soft_done = True
            kinds.append(ExpireKind.HARD)
        self._rearm()
        return kinds


class InboundSa(_Metered):
    __slots__ = ("window", "esn", "policy", "replay_drops", "auth_failures", "activates")

    def __init__(self, reqid: int, keys: SaKeys, lifetime: Lifetime, window: int) -> None:
        super().__init__(reqid, keys, lifetime)
        self.esn = keys.esn
        self.window = ReplayWindow(window, keys.esn)
        self.policy: Policy | None = None
        self.replay_drops = 0
        self.auth_failures = 0
        # the outbound SA of this pair, while it waits for the peer to use this inbound SA
        self.activates: OutboundSa | None = None

    def activate(self) -> None:
        """The peer sends on this pair: it has it installed, so we may send on it too."""
        out, self.activates = self.activates, None
        if (
            out is not None
            and self.policy is not None
            and any(p.outbound is out for p in self.policy.pairs)
        ):
            self.policy.set_out(out)


class OutboundSa(_Metered):
    __slots__ = ("seq", "seq_max", "remote", "family")

    def __init__(self, reqid: int, keys: SaKeys, lifetime: Lifetime, remote: tuple) -> None:
        super().__init__(reqid, keys, lifetime)
        self.seq = 0
        # the counter must never cycle (RFC 4303 3.3.3): the last usable number
        self.seq_max = (1 << 64) - 1 if keys.esn else (1 << 32) - 1
        self.remote = remote
        self.family = socket.AF_INET6 if ":" in remote[0] else socket.AF_INET


@dataclass(slots=True)
class SaPair:
    child: ChildSa
    inbound: InboundSa
    outbound: OutboundSa

    def counters(self) -> SaCounters:
        used = [t for t in (self.inbound.last_used, self.outbound.last_used) if t is not None]
        return SaCounters(
            bytes_in=self.inbound.bytes,
            packets_in=self.inbound.packets,
            bytes_out=self.outbound.bytes,
            packets_out=self.outbound.packets,
            last_used=max(used) if used else None,
            replay_drops=self.inbound.replay_drops,
            auth_failures=self.inbound.auth_failures,
        )


class Policy:
    """The selectors of one reqid and its SA pairs (oldest first); ``out`` is the newest
    outbound SA, the one outbound traffic uses. ``first`` (the first ChildSa, or the trap)
    gave the selectors and routes; ``trap`` is set when the policy is a trap (``trap``)."""

    __slots__ = ("reqid", "name", "selectors", "pairs", "out", "in_cache", "first", "trap")

    def __init__(self, child: ChildSa | TrapPolicy) -> None:
        self.reqid = child.reqid
        self.name = child.name
        self.first = child
        self.selectors = SelectorPair(child.local_ts, child.remote_ts)
        self.pairs: tuple[SaPair, ...] = ()
        self.out: OutboundSa | None = None
        self.in_cache: dict[tuple, bool] = {}
        self.trap: Trap | None = None

    def set_out(self, sa: OutboundSa | None) -> None:
        """Send on ``sa`` from now on (a trap publishes it after its held packets left)."""
        if self.trap is None:
            self.out = sa
        else:
            self.trap.set_out(self, sa)

    def current_out(self) -> OutboundSa | None:
        """The outbound SA in use, or about to be (a trap's pending release)."""
        return self.out if self.trap is None else self.trap.current(self)

    def allows_inbound(self, buf: bytearray | memoryview, pos: int, length: int) -> bool:
        """Whether the decrypted inner packet ``buf[pos:pos+length]`` fits the child's
        selectors (RFC 4301 5.2: source remote, destination local)."""
        sel = self.selectors
        if sel.narrow:
            info = packet_info(memoryview(buf)[pos : pos + length])
            return info is not None and sel.inbound(info)
        key = address_key(buf, pos, length)
        if key is None:
            return False
        ok = self.in_cache.get(key)
        if ok is None:
            info = packet_info(memoryview(buf)[pos : pos + length])
            ok = info is not None and sel.inbound(info)
            if len(self.in_cache) >= CACHE_LIMIT:
                self.in_cache = {}
            self.in_cache[key] = ok
        return ok


class Sad:
    """Policies by reqid, inbound SAs by SPI and the outbound lookup.

    ``on_release(policy)`` is called (from the thread that made the change) when a trapped
    policy got a usable outbound SA that the outbound thread has to publish (see ``trap``)."""

    def __init__(self, on_release: Callable[[Policy], None] = lambda policy: None) -> None:
        self.policies: dict[int, Policy] = {}
        self.inbound: dict[int, InboundSa] = {}
        # outbound match order: install order, trapped policies after the others (a trap
        # yields to a narrower child that has a reqid and policy of its own)
        self.order: tuple[Policy, ...] = ()
        self.narrow: tuple[Policy, ...] = ()
        self.traps: tuple[Policy, ...] = ()
        self.out_cache: dict[tuple, Policy | None] = {}
        self.on_release = on_release

    def install(self, child: ChildSa) -> tuple[Policy, bool]:
        """Add an SA pair; returns its policy and whether the policy is new."""
        if child.inbound.spi in self.inbound:
            raise ValueError(f"inbound SPI 0x{child.inbound.spi:08x} already installed")
        remote_port = child.encap[1] if child.encap else 4500
        remote = (str(ipaddress.ip_address(child.remote_addr)), remote_port)
        inbound = InboundSa(child.reqid, child.inbound, child.lifetime, child.replay_window)
        outbound = OutboundSa(child.reqid, child.outbound, child.lifetime, remote)
        policy = self.policies.get(child.reqid)
        new = policy is None
        if policy is None:
            policy = Policy(child)
        inbound.policy = policy
        policy.pairs = (*policy.pairs, SaPair(child, inbound, outbound))
        # held back (``outbound_active`` False) until activated or the peer uses the pair;
        # a first pair only under a trap (what it holds must not leave before the peer can
        # take it), else at once: there is no other pair to send on meanwhile
        send_now = child.outbound_active or (policy.current_out() is None and policy.trap is None)
        if not send_now:
            inbound.activates = outbound
        # the inbound SA first: the peer's answer to what the outbound SA (e.g. a trap's held
        # packets) sends may come back at once
        self.inbound = {**self.inbound, inbound.spi: inbound}
        if send_now:
            policy.set_out(outbound)
        if new:
            self.policies = {**self.policies, child.reqid: policy}
            self._reindex()
        return policy, new

    def activate(self, reqid: int, spi_in: int, spi_out: int) -> bool:
        """Make this pair the one the reqid sends on (as its first inbound packet would)."""
        policy = self.policies.get(reqid)
        if policy is None:
            return False
        for pair in policy.pairs:
            if (pair.inbound.spi, pair.outbound.spi) == (spi_in, spi_out):
                pair.inbound.activates = None
                policy.set_out(pair.outbound)
                return True
        return False

    def install_trap(self, trap: TrapPolicy) -> tuple[Policy, bool]:
        """Arm a trap on the reqid's policy; returns the policy and whether it is new (then it
        has the trap's selectors and no SA). An existing policy keeps its selectors and SAs;
        it traps from then on (when its last pair goes, e.g. ``dpd_action: trap``)."""
        policy = self.policies.get(trap.reqid)
        new = policy is None
        if policy is None:
            policy = Policy(trap)
        elif policy.trap is not None:
            return policy, False
        policy.trap = Trap(self.on_release)
        if new:
            self.policies = {**self.policies, trap.reqid: policy}
        self._reindex()
        return policy, new

    def delete(self, reqid: int, spi_in: int, spi_out: int) -> SaPair | None:
        policy = self.policies.get(reqid)
        if policy is None:
            return None
        found = None
        for pair in policy.pairs:
            if (pair.inbound.spi, pair.outbound.spi) == (spi_in, spi_out):
                found = pair
        if found is None:
            return None
        policy.pairs = tuple(p for p in policy.pairs if p is not found)
        current = policy.current_out()
        if current is found.outbound or current is None:
            # the pair we sent on is gone: the newest remaining one carries on (none left: a
            # trap is armed again)
            if policy.pairs:
                policy.pairs[-1].inbound.activates = None
            policy.set_out(policy.pairs[-1].outbound if policy.pairs else None)
        self.inbound = {k: v for k, v in self.inbound.items() if v is not found.inbound}
        return found

    def remove(self, reqid: int) -> Policy | None:
        policy = self.policies.get(reqid)
        if policy is None:
            return None
        spis = {p.inbound.spi for p in policy.pairs}
        if policy.trap is not None:
            policy.trap.clear()  # first: a release the outbound thread publishes now fails
        policy.out = None
        self.inbound = {k: v for k, v in self.inbound.items() if k not in spis}
        self.policies = {k: v for k, v in self.policies.items() if k != reqid}
        policy.pairs = ()
        self._reindex()
        return policy

    def pair(self, reqid: int, spi_in: int, spi_out: int) -> SaPair:
        policy = self.policies[reqid]
        for pair in policy.pairs:
            if (pair.inbound.spi, pair.outbound.spi) == (spi_in, spi_out):
                return pair
        raise KeyError((reqid, spi_in, spi_out))

    def _reindex(self) -> None:
        policies = self.policies.values()
        self.traps = tuple(p for p in policies if p.trap is not None)
        self.order = tuple(p for p in policies if p.trap is None) + self.traps
        self.narrow = tuple(p for p in self.order if p.selectors.narrow)
        self.out_cache = {}

    def match_outbound(self, info: PacketInfo) -> Policy | None:
        for policy in self.order:
            if policy.selectors.outbound(info):
                return policy
        return None

    def lookup_outbound(self, buf: bytearray | memoryview, pos: int, length: int) -> Policy | None:
        """The policy protecting the packet ``buf[pos:pos+length]`` read from the TUN device,
        None when none does.

        Address-only policies are cached by the packet's addresses; while any policy narrows
        protocols or ports, every packet is matched against the policies in install order."""
        if self.narrow:
            info = packet_info(memoryview(buf)[pos : pos + length])
            return self.match_outbound(info) if info is not None else None
        key = address_key(buf, pos, length)
        if key is None:
            return None
        cache = self.out_cache
        policy = cache.get(key, _MISS)
        if policy is not _MISS:
            return policy
        info = packet_info(memoryview(buf)[pos : pos + length])
        policy = self.match_outbound(info) if info is not None else None
        if len(cache) >= CACHE_LIMIT:
            cache = self.out_cache = {}
        cache[key] = policy
        return policy


_MISS = object()
