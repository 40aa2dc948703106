"""Kernel messages into the data plane's types: ACQUIRE and EXPIRE notifications into events,
GETSA answers into counters.

An ACQUIRE (``build_acquire`` in the kernel's ``xfrm_user.c``) carries the larval state's
selector, made from the flow of the packet that hit the policy (``__xfrm_init_tempsel``: its
source and destination as /32 or /128, ports and protocol), the policy's templates
(XFRMA_TMPL, with the reqid) and the policy's mark (XFRMA_MARK, sent because our mask is not
zero). Forwarded traffic (a host behind the gateway) is looked up against the out policies like
local traffic (``__xfrm_route_forward``), so its ACQUIRE is the same, with the host's address
as source. The larval state's own EXPIRE (when ``xfrm_acq_expires`` runs out) names SPI 0,
which is no SA of ours: it is ignored.
"""

from __future__ import annotations

import socket
import time

from ..base import Acquire, DataplaneEvent, ExpireKind, SaCounters, SaExpired
from .messages import _XfrmMessage, xfrm_user_acquire, xfrm_user_expire
from .structs import unpack_address


def owned(msg: _XfrmMessage, owner_mask: int) -> bool:
    mark = msg.get_attr("XFRMA_MARK")
    return mark is not None and (mark["v"], mark["m"]) == (0, owner_mask)


def event_for(
    msg: _XfrmMessage, owner_mask: int, spis: dict[tuple[int, str], int]
) -> DataplaneEvent | None:
    """The engine event for a kernel notification, None when it is not about our SAs and
    policies (another daemon's, or a larval SA of an ACQUIRE). ``spis``: (SPI, destination)
    -> reqid of our SAs."""
    if not owned(msg, owner_mask):
        return None
    if isinstance(msg, xfrm_user_expire):
        state = msg["state"]
        daddr = unpack_address(state["id"]["daddr"], state["family"])
        reqid = spis.get((state["id"]["spi"], daddr))
        if reqid is None:
            return None
        kind = ExpireKind.HARD if msg["hard"] else ExpireKind.SOFT
        return SaExpired(reqid, state["id"]["spi"], kind)
    if isinstance(msg, xfrm_user_acquire):
        templates = msg.get_attr("XFRMA_TMPL") or []
        reqids = [t["reqid"] for t in templates if t["reqid"]]
        sel = msg["sel"]
        if not reqids or sel["family"] not in (socket.AF_INET, socket.AF_INET6):
            return None
        return Acquire(
            reqids[0],
            unpack_address(sel["saddr"], sel["family"]),
            unpack_address(sel["daddr"], sel["family"]),
        )
    return None


def sa_counters(inbound: _XfrmMessage, outbound: _XfrmMessage | None) -> SaCounters:
    """The counters of a pair from the GETSA answers of its SAs (no outbound one when it is
    held back)."""
    last = [t for t in (last_used(inbound), last_used(outbound)) if t is not None]
    stats = inbound["stats"]
    return SaCounters(
        bytes_in=inbound["curlft"]["bytes"],
        packets_in=inbound["curlft"]["packets"],
        bytes_out=outbound["curlft"]["bytes"] if outbound is not None else 0,
        packets_out=outbound["curlft"]["packets"] if outbound is not None else 0,
        last_used=max(last) if last else None,
        replay_drops=stats["replay"] + stats["replay_window"],
        auth_failures=stats["integrity_failed"],
    )


def last_used(msg: _XfrmMessage | None) -> float | None:
    """XFRMA_LASTUSED (wall-clock seconds) as a ``time.monotonic()`` value. Kernels before
    6.2 do not update it per packet (and then send none): the SA's first use
    (``curlft.use_time``) stands in, so "used at all" stays visible."""
    if msg is None:
        return None
    wall = msg.get_attr("XFRMA_LASTUSED") or msg["curlft"]["use_time"]
    if not wall:
        return None
    return time.monotonic() - max(0.0, time.time() - wall)
