"""Informational exchanges over an ISAKMP SA (RFC 2408 4.8, RFC 2409 5.7): notifications, Delete
payloads and Dead Peer Detection (RFC 3706). They are one message each, never answered (DPD's
R-U-THERE is answered by an R-U-THERE-ACK in an Informational of its own)."""

from __future__ import annotations

import hmac
from typing import TYPE_CHECKING

from ikeagent.crypto.v1 import keymat
from ikeagent.engine.ikev1.protect import ProtectionError, after_hash, build, open_message
from ikeagent.engine.ikev1.sa import V1Sa
from ikeagent.engine.ikev2.state import ChildState, IkeState
from ikeagent.wire import v1 as w1

if TYPE_CHECKING:
    from ikeagent.engine.ikev1.engine import V1Engine

INFO = w1.ExchangeType.INFORMATIONAL
MAX_SEEN = 4096  # Informational message IDs remembered per SA against replays


def remember(sa: V1Sa, mid: int) -> None:
    """Note a message ID of an Informational or Quick Mode: one seen again is a replay."""
    if len(sa.seen_info) >= MAX_SEEN:
        sa.seen_info.clear()
    sa.seen_info.add(mid)


def _send(eng: V1Engine, sa: V1Sa, payloads: list[w1.Payload]) -> None:
    if sa.keys is None or sa.cipher is None or not sa.p1_last_block:
        return
    mid = eng.new_message_id(sa)
    remember(sa, mid)
    iv = keymat.phase2_iv(sa.hash_id, sa.p1_last_block, mid, sa.cipher.block_size)
    _, rest = w1.encode_payloads(payloads)
    h = keymat.qm_hash1(sa.hash_id, sa.keys.skeyid_a, mid, rest)
    data, _ = build(sa, INFO, mid, [w1.Hash(h), *payloads], iv=iv)
    eng.send(sa, data)


def send_notify(eng: V1Engine, sa: V1Sa, notify: int, data: bytes = b"") -> None:
    n = w1.Notification(notify, w1.ProtocolId.ISAKMP, sa.cookies, data)
    _send(eng, sa, [n])


def send_delete_esp(eng: V1Engine, sa: V1Sa, spis: list[int]) -> None:
    """IKEv1 Delete for ESP SAs: the SPIs are our inbound ones (those the peer sends to)."""
    _send(eng, sa, [w1.Delete(w1.ProtocolId.IPSEC_ESP, tuple(s.to_bytes(4, "big") for s in spis))])
    eng.count("deletes_sent")


def send_delete_isakmp(eng: V1Engine, sa: V1Sa) -> None:
    _send(eng, sa, [w1.Delete(w1.ProtocolId.ISAKMP, (sa.cookies,))])
    eng.count("deletes_sent")


def receive_plain(eng: V1Engine, sa: V1Sa, data: bytes, header: w1.Header, now: float) -> None:
    """An unprotected notify during Phase 1: the responder refused our offer (or our keys)."""
    try:
        payloads = w1.decode_payloads(header.next_payload, data[w1.HEADER_LEN :])
    except Exception:  # noqa: BLE001 - any DecodeError of peer input
        eng.count("malformed")
        return
    for p in payloads:
        if isinstance(p, w1.Notification) and int(p.notify_type) < 16384:
            name = w1.NotifyType(int(p.notify_type)).name
            eng.fail_ike(sa, f"peer refused Phase 1: {name}", now)
            return
    eng.count("unexpected")


def receive(eng: V1Engine, sa: V1Sa, data: bytes, header: w1.Header, now: float) -> None:
    mid = header.message_id
    if mid in sa.seen_info:
        eng.count("replayed")
        return
    assert sa.cipher is not None and sa.keys is not None
    base = sa.p1_last_block or sa.iv  # Phase 1 still running: its last block so far
    iv = keymat.phase2_iv(sa.hash_id, base, mid, sa.cipher.block_size)
    try:
        opened = open_message(sa, header, data, iv)
    except ProtectionError as exc:
        eng.count("undecryptable")
        eng.log.debug("%s: Informational %08x dropped: %s", sa.peer_label(), mid, exc)
        return
    first = opened.payloads[0] if opened.payloads else None
    if not isinstance(first, w1.Hash) or not hmac.compare_digest(
        first.data, keymat.qm_hash1(sa.hash_id, sa.keys.skeyid_a, mid, after_hash(opened))
    ):
        eng.count("bad_hash")
        eng.log.warning("%s: Informational %08x: HASH does not verify", sa.peer_label(), mid)
        return
    remember(sa, mid)
    eng.received(sa, now)
    for p in opened.payloads[1:]:
        if isinstance(p, w1.Delete):
            _on_delete(eng, sa, p, now)
        elif isinstance(p, w1.Notification):
            _on_notify(eng, sa, p, now)
        if sa.state is IkeState.DESTROYED:
            return


def _on_delete(eng: V1Engine, sa: V1Sa, p: w1.Delete, now: float) -> None:
    proto = int(p.protocol)
    if proto == w1.ProtocolId.ISAKMP:
        for spi in p.spis:
            if len(spi) == 16 and spi == sa.cookies:
                eng.log.info("%s: peer deleted the ISAKMP SA", sa.peer_label())
                closed = [
                    c.config
                    for c in sa.children
                    if c.state is ChildState.INSTALLED and eng.core.closes_lineage(c, sa)
                ]
                conn = sa.conn
                start = eng.core.ondemand.peer_closing(conn, closed)
                eng.destroy_ike(sa, "deleted by peer", now)
                eng.core.ondemand.start_closed(conn, start, now)
                return
        eng.count("unknown_delete")
        return
    if proto != w1.ProtocolId.IPSEC_ESP:
        eng.count("unknown_delete")
        return
    for spi in p.spis:
        if len(spi) != 4:
            continue
        value = int.from_bytes(spi, "big")
        holder, child = _find_child_out(eng, sa, value)
        if child is None:
            eng.count("unknown_delete")
            continue
        start = []
        if child.state is ChildState.INSTALLED and eng.core.closes_lineage(child):
            start = eng.core.ondemand.peer_closing(holder.conn, [child.config])
        eng.remove_child(holder, child, "deleted by peer", now)
        eng.core.ondemand.start_closed(holder.conn, start, now)


def _find_child_out(eng: V1Engine, sa: V1Sa, spi_out: int):  # noqa: ANN202
    """The pair whose outbound SPI the peer names; also on an ISAKMP SA that replaced ``sa``."""
    for s in [sa, *[o for o in eng.sas.values() if o is not sa and o.conn is sa.conn]]:
        c = s.child_by_spi_out(spi_out)
        if c is not None and c.state is not ChildState.DESTROYED:
            return s, c
    return sa, None


def _on_notify(eng: V1Engine, sa: V1Sa, n: w1.Notification, now: float) -> None:
    t = int(n.notify_type)
    if t == w1.NotifyType.R_U_THERE:
        if len(n.data) == 4:
            ack = w1.Notification(
                w1.NotifyType.R_U_THERE_ACK, w1.ProtocolId.ISAKMP, sa.cookies, n.data
            )
            _send(eng, sa, [ack])
            eng.count("dpd_answered")
        return
    if t == w1.NotifyType.R_U_THERE_ACK:
        if len(n.data) == 4 and int.from_bytes(n.data, "big") == sa.dpd_seq:
            sa.dpd_waiting_since = None
        return
    if t == w1.NotifyType.INITIAL_CONTACT:
        initial_contact(eng, sa, now)
        return
    if t < 16384 and sa.state is IkeState.CONNECTING:
        name = w1.NotifyType(t).name
        eng.fail_ike(
            sa,
            f"peer refused Phase 1 with {name} (it did not accept our proof, or could not prove its own identity)",
            now,
        )
        return
    if t < 16384:
        from ikeagent.engine.ikev1 import quick_mode

        name = w1.NotifyType(t).name
        eng.log.warning("%s: peer sent %s", sa.peer_label(), name)
        quick_mode.peer_refused(eng, sa, name, now)


def initial_contact(eng: V1Engine, sa: V1Sa, now: float) -> None:
    for o in list(eng.sas.values()):
        if o is sa or o.conn is not sa.conn or o.remote[0] != sa.remote[0]:
            continue
        if o.remote_id == sa.remote_id and o.state is IkeState.ESTABLISHED:
            eng.log.info("%s: INITIAL-CONTACT: dropping stale ISAKMP SA %d", sa.peer_label(), o.uid)
            eng.destroy_ike(o, "replaced after the peer restarted (INITIAL-CONTACT)", now)


# ---- Dead Peer Detection (RFC 3706) -----------------------------------------------------------------


def dpd_timer(eng: V1Engine, sa: V1Sa, now: float) -> None:
    conn = sa.conn
    assert conn is not None
    delay = conn.dpd_delay
    timeout = conn.dpd_timeout if conn.dpd_timeout > 0 else 150.0
    if sa.dpd_waiting_since is not None and now - sa.dpd_waiting_since >= timeout:
        _peer_dead(eng, sa, now)
        return
    idle = now - sa.last_recv
    if sa.dpd_waiting_since is None and idle < delay:
        sa.dpd_at = sa.last_recv + delay
        return
    sa.dpd_seq = (sa.dpd_seq + 1) & 0xFFFFFFFF or 1
    if sa.dpd_waiting_since is None:
        sa.dpd_waiting_since = now
    n = w1.Notification(
        w1.NotifyType.R_U_THERE, w1.ProtocolId.ISAKMP, sa.cookies, sa.dpd_seq.to_bytes(4, "big")
    )
    _send(eng, sa, [n])
    eng.count("dpd_sent")
    sa.dpd_at = now + min(delay, max(timeout - (now - sa.dpd_waiting_since), 0.1))


def _peer_dead(eng: V1Engine, sa: V1Sa, now: float) -> None:
    eng.count("dpd_dead")
    eng.log.warning("%s: peer did not answer DPD: it is dead", sa.peer_label())
    eng.peer_dead(sa, "dead peer (DPD)", now)
