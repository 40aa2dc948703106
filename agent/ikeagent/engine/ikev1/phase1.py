"""Phase 1: Main Mode (RFC 2409 5, six messages, identities encrypted) and Aggressive Mode
(RFC 2409 5, three messages, identities in the clear), with pre-shared keys, in both roles.

Main Mode                                 Aggressive Mode
  I: HDR, SA, VID                           I: HDR, SA, KE, Ni, IDii, VID
  R: HDR, SA, VID                           R: HDR, SA, KE, Nr, IDir, HASH_R, VID, NAT-D
  I: HDR, KE, Ni, NAT-D                     I: HDR, HASH_I, NAT-D
  R: HDR, KE, Nr, NAT-D
  I: HDR*, IDii, HASH_I
  R: HDR*, IDir, HASH_R
"""

from __future__ import annotations

import hmac
from typing import TYPE_CHECKING

from ikeagent.config.identity import identity_of_address
from ikeagent.config.model import AuthMethod, ConnectionConfig, Identity
from ikeagent.crypto import suites
from ikeagent.crypto.dh import InvalidPublicKey, KeyExchange
from ikeagent.crypto.v1 import keymat
from ikeagent.crypto.v1.cipher import V1Cipher
from ikeagent.engine.ikev1 import natt
from ikeagent.engine.ikev1.proposals import (
    choose_ike,
    describe_ike,
    describe_ike_offer,
    ike_offer,
    ike_sa_payload,
    same_ike,
)
from ikeagent.engine.ikev1.protect import ProtectionError, build, open_message
from ikeagent.engine.ikev1.sa import AGGRESSIVE, MAIN, Exchange, V1Sa
from ikeagent.engine.ikev2.identities import identity_from_wire, matches
from ikeagent.engine.ikev2.state import IkeState
from ikeagent.wire import v1 as w1

if TYPE_CHECKING:
    from ikeagent.dataplane.base import Endpoint
    from ikeagent.engine.ikev1.engine import V1Engine

NONCE_LEN = 32
ID_PROT = w1.ExchangeType.IDENTITY_PROTECTION
AGGR = w1.ExchangeType.AGGRESSIVE
AGGRESSIVE_WARNING = (
    "%s: Aggressive Mode with a pre-shared key: the peer's HASH can be used to guess the key "
    "offline; use Main Mode or certificates where the peer supports them"
)


def describe(sa: V1Sa) -> str:
    return describe_ike(sa.transform) if sa.transform is not None else "(none)"


def _exchange(sa: V1Sa) -> int:
    return AGGR if sa.mode == AGGRESSIVE else ID_PROT


def _local_identity(conn: ConnectionConfig, sa: V1Sa) -> Identity:
    if conn.local.id is not None:
        return conn.local.id
    return identity_of_address(sa.local[0])


def _id_payload(ident: Identity) -> w1.Identification:
    return w1.Identification(ident.id_type, 0, 0, ident.data)


def _body(opened_plain: bytes, span: tuple[int, int, int]) -> bytes:
    return opened_plain[span[1] + 4 : span[2]]


def _span_of(spans: list[tuple[int, int, int]], ptype: int) -> tuple[int, int, int] | None:
    return next((s for s in spans if s[0] == ptype), None)


def _enc_key_len(encr: suites.Algorithm) -> int:
    try:
        return suites.encr_key_len(encr.id, encr.key_bits)
    except (KeyError, ValueError):
        return (encr.key_bits or 192) // 8


def _derive(eng: V1Engine, sa: V1Sa, shared: bytes, now: float) -> None:
    """SKEYID and its derivatives, the cipher and the first IV (RFC 2409 5, appendix B)."""
    t = sa.transform
    assert t is not None and sa.psk is not None
    h = t.hash_id
    skeyid = keymat.skeyid_psk(h, sa.psk, sa.ni, sa.nr)
    sa.keys = keymat.derive_phase1(
        h,
        skeyid,
        shared,
        sa.spi_i.to_bytes(8, "big"),
        sa.spi_r.to_bytes(8, "big"),
        _enc_key_len(t.encr),
    )
    sa.cipher = V1Cipher(t.encr_id, sa.keys.enc_key)
    sa.iv = keymat.initial_iv(h, sa.gxi, sa.gxr, sa.cipher.block_size)


def _hash_i(sa: V1Sa, idii_b: bytes) -> bytes:
    assert sa.keys is not None
    ck_i, ck_r = sa.spi_i.to_bytes(8, "big"), sa.spi_r.to_bytes(8, "big")
    return keymat.hash_i(sa.hash_id, sa.keys.skeyid, sa.gxi, sa.gxr, ck_i, ck_r, sa.sai_b, idii_b)


def _hash_r(sa: V1Sa, idir_b: bytes) -> bytes:
    assert sa.keys is not None
    ck_i, ck_r = sa.spi_i.to_bytes(8, "big"), sa.spi_r.to_bytes(8, "big")
    return keymat.hash_r(sa.hash_id, sa.keys.skeyid, sa.gxr, sa.gxi, ck_r, ck_i, sa.sai_b, idir_b)


def _find_psk(eng: V1Engine, sa: V1Sa, remote_id: Identity | None) -> bytes | None:
    assert sa.conn is not None
    if sa.conn.local.auth is not AuthMethod.PSK:
        return None
    return eng.config.find_psk(sa.local_id, remote_id)


# ---- initiator -----------------------------------------------------------------------------------


def start(eng: V1Engine, sa: V1Sa, now: float) -> None:
    conn = sa.conn
    assert conn is not None
    if conn.local.auth is not AuthMethod.PSK or conn.remote.auth is not AuthMethod.PSK:
        eng.fail_ike(sa, "IKEv1 supports pre-shared keys only so far (auth: psk)", now)
        return
    sa.set_state(IkeState.CONNECTING)
    ex = Exchange("main" if sa.mode == MAIN else "aggressive", 0, True)
    sa.exchanges[0] = ex
    if sa.mode == MAIN:
        sa.offered = tuple(ike_offer(conn))
        sa_p = ike_sa_payload(sa.offered)
        sa.sai_b = w1.body_bytes(sa_p)
        payloads: list[w1.Payload] = [sa_p, *natt.our_vendor_ids()]
    else:
        if not conn.allow_aggressive_psk:
            eng.fail_ike(
                sa,
                "Aggressive Mode with a pre-shared key is refused: set allow_aggressive_psk "
                "on the connection to accept the risk",
                now,
            )
            return
        eng.log.warning(AGGRESSIVE_WARNING, sa.peer_label())
        group = next(iter(ike_offer(conn))).dh.id
        sa.offered = tuple(ike_offer(conn, group))
        try:
            sa.local_id = _local_identity(conn, sa)
        except ValueError:
            eng.fail_ike(
                sa,
                "Aggressive Mode sends our identity first: set local.id or local_addrs",
                now,
            )
            return
        sa.psk = _find_psk(eng, sa, conn.remote.id)
        if sa.psk is None:
            eng.fail_ike(
                sa, f"no pre-shared key for '{sa.local_id}' - '{conn.remote.id or '%any'}'", now
            )
            return
        sa.ke = KeyExchange.generate(group, eng.core.rng)
        sa.gxi = sa.ke.public
        sa.ni = eng.rand(NONCE_LEN)
        sa_p = ike_sa_payload(sa.offered)
        sa.sai_b = w1.body_bytes(sa_p)
        payloads = [
            sa_p,
            w1.KeyExchange(sa.gxi),
            w1.Nonce(sa.ni),
            _id_payload(sa.local_id),
            *natt.our_vendor_ids(),
        ]
    data, _ = build(sa, _exchange(sa), 0, payloads)
    ex.step = 1
    eng.exchange_send(sa, ex, data, now, wait=True)


def receive(eng: V1Engine, sa: V1Sa, data: bytes, header: w1.Header, now: float) -> None:
    ex = sa.exchanges.get(0)
    if ex is None or int(header.exchange) != _exchange(sa):
        eng.count("unexpected")
        return
    handler = _HANDLERS.get((sa.mode, sa.initiator, ex.step))
    if handler is None:
        eng.count("unexpected")
        return
    iv = sa.iv if header.encrypted else None
    try:
        opened = open_message(sa, header, data, iv)
    except ProtectionError as exc:
        if header.encrypted:
            eng.fail_ike(
                sa,
                f"AUTHENTICATION_FAILED: message {ex.step + 1} of {ex.kind} mode does not decrypt "
                f"({exc}): the pre-shared keys of the two sides differ",
                now,
            )
        else:
            eng.count("malformed")
        return
    ex.last_received = data
    if opened.next_iv is not None:
        sa.iv = opened.next_iv
    handler(eng, sa, ex, opened, now)


def _chosen_transform(eng: V1Engine, sa: V1Sa, payloads: list, now: float) -> bool:
    sa_p = next((p for p in payloads if isinstance(p, w1.SecurityAssociation)), None)
    if sa_p is None or len(sa_p.proposals) != 1 or len(sa_p.proposals[0].transforms) != 1:
        eng.fail_ike(sa, "peer's SA payload does not name exactly one transform", now)
        return False
    choice = choose_ike(sa_p, [sa.conn] if sa.conn else [])
    if choice is None or not any(same_ike(choice.transform, o) for o in sa.offered):
        eng.fail_ike(
            sa, f"peer chose a transform we did not offer: {describe_ike_offer(sa_p)}", now
        )
        return False
    t = choice.transform
    ours = next(o for o in sa.offered if same_ike(t, o))
    # the lifetime: the shorter of ours and what the responder answered
    if t.life_seconds is None or (ours.life_seconds and ours.life_seconds < t.life_seconds):
        t = ours
    sa.transform = t
    natt.note_vendor_ids(sa, payloads)
    return True


def _mm_i_2(eng: V1Engine, sa: V1Sa, ex: Exchange, opened, now: float) -> None:
    if not _chosen_transform(eng, sa, opened.payloads, now):
        return
    assert sa.transform is not None
    sa.ke = KeyExchange.generate(sa.transform.dh.id, eng.core.rng)
    sa.gxi = sa.ke.public
    sa.ni = eng.rand(NONCE_LEN)
    payloads = [w1.KeyExchange(sa.gxi), w1.Nonce(sa.ni), *natt.nat_d_payloads(sa, eng.rand(64))]
    data, _ = build(sa, ID_PROT, 0, payloads)
    ex.step = 3
    eng.exchange_send(sa, ex, data, now, wait=True)


def _ke_nonce(eng: V1Engine, sa: V1Sa, payloads: list, now: float) -> bytes | None:
    """The peer's KE and nonce: store them and return the DH shared secret."""
    ke = next((p for p in payloads if isinstance(p, w1.KeyExchange)), None)
    nonce = next((p for p in payloads if isinstance(p, w1.Nonce)), None)
    if ke is None or nonce is None or not 8 <= len(nonce.data) <= 256:
        eng.fail_ike(sa, "peer's message lacks its KE or a valid nonce", now)
        return None
    assert sa.ke is not None
    try:
        shared = sa.ke.compute(ke.data)
    except InvalidPublicKey as exc:
        eng.fail_ike(sa, f"INVALID_KEY_INFORMATION: peer's public value: {exc}", now)
        return None
    if sa.initiator:
        sa.gxr, sa.nr = ke.data, nonce.data
    else:
        sa.gxi, sa.ni = ke.data, nonce.data
    return shared


def _mm_i_4(eng: V1Engine, sa: V1Sa, ex: Exchange, opened, now: float) -> None:
    conn = sa.conn
    assert conn is not None
    shared = _ke_nonce(eng, sa, opened.payloads, now)
    if shared is None:
        return
    try:
        sa.local_id = _local_identity(conn, sa)
    except ValueError as exc:
        eng.fail_ike(sa, f"no local identity: {exc}", now)
        return
    sa.psk = _find_psk(eng, sa, conn.remote.id)
    if sa.psk is None:
        eng.fail_ike(
            sa, f"no pre-shared key for '{sa.local_id}' - '{conn.remote.id or '%any'}'", now
        )
        return
    _derive(eng, sa, shared, now)
    natt.process_nat_d(sa, opened.payloads)
    natt.float_ports(sa)
    id_p = _id_payload(sa.local_id)
    payloads = [id_p, w1.Hash(_hash_i(sa, w1.body_bytes(id_p)))]
    data, sa.iv = build(sa, ID_PROT, 0, payloads, iv=sa.iv)
    ex.step = 5
    eng.exchange_send(sa, ex, data, now, wait=True)


def _peer_identity(eng: V1Engine, sa: V1Sa, opened, now: float) -> tuple[Identity, bytes] | None:
    span = _span_of(opened.spans, w1.PayloadType.ID)
    idp = next((p for p in opened.payloads if isinstance(p, w1.Identification)), None)
    if idp is None or span is None:
        eng.fail_ike(sa, "peer's message lacks its identity", now)
        return None
    return identity_from_wire(idp.id_type, idp.data), _body(opened.plain, span)


def _received_hash(opened) -> bytes | None:
    h = next((p for p in opened.payloads if isinstance(p, w1.Hash)), None)
    return h.data if h is not None else None


def _mm_i_6(eng: V1Engine, sa: V1Sa, ex: Exchange, opened, now: float) -> None:
    conn = sa.conn
    assert conn is not None
    got = _peer_identity(eng, sa, opened, now)
    if got is None:
        return
    remote_id, idir_b = got
    if not matches(conn.remote.id, remote_id):
        eng.fail_ike(sa, f"peer identity '{remote_id}' does not match '{conn.remote.id}'", now)
        return
    received = _received_hash(opened)
    if received is None or not hmac.compare_digest(received, _hash_r(sa, idir_b)):
        eng.fail_ike(
            sa,
            f"AUTHENTICATION_FAILED: HASH_R of '{remote_id}' does not verify "
            "(the pre-shared keys differ)",
            now,
        )
        return
    sa.remote_id = remote_id
    eng.received(sa, now)
    eng.finish_exchange(sa, ex, now)
    sa.p1_last_block = sa.iv
    eng.ike_established(sa, now)


def _am_i_2(eng: V1Engine, sa: V1Sa, ex: Exchange, opened, now: float) -> None:
    conn = sa.conn
    assert conn is not None
    if not _chosen_transform(eng, sa, opened.payloads, now):
        return
    shared = _ke_nonce(eng, sa, opened.payloads, now)
    if shared is None:
        return
    got = _peer_identity(eng, sa, opened, now)
    if got is None:
        return
    remote_id, idir_b = got
    if not matches(conn.remote.id, remote_id):
        eng.fail_ike(sa, f"peer identity '{remote_id}' does not match '{conn.remote.id}'", now)
        return
    _derive(eng, sa, shared, now)
    received = _received_hash(opened)
    if received is None or not hmac.compare_digest(received, _hash_r(sa, idir_b)):
        eng.fail_ike(
            sa,
            f"AUTHENTICATION_FAILED: HASH_R of '{remote_id}' does not verify "
            "(the pre-shared keys differ)",
            now,
        )
        return
    sa.remote_id = remote_id
    natt.process_nat_d(sa, opened.payloads)
    natt.float_ports(sa)
    idii_b = w1.body_bytes(_id_payload(sa.local_id)) if sa.local_id else b""
    payloads = [w1.Hash(_hash_i(sa, idii_b)), *natt.nat_d_payloads(sa, eng.rand(64))]
    data, _ = build(sa, AGGR, 0, payloads)  # in the clear, as strongSwan sends it
    ex.step = 3
    eng.exchange_send(sa, ex, data, now, wait=False)
    eng.received(sa, now)
    eng.finish_exchange(sa, ex, now)
    sa.p1_last_block = sa.iv
    eng.ike_established(sa, now)


# ---- responder -----------------------------------------------------------------------------------


def respond_first(
    eng: V1Engine, data: bytes, header: w1.Header, local: Endpoint, remote: Endpoint, now: float
) -> None:
    try:
        spans = w1.payload_spans(header.next_payload, data[w1.HEADER_LEN :])
        payloads = w1.decode_payloads(header.next_payload, data[w1.HEADER_LEN :])
    except Exception:  # noqa: BLE001 - any DecodeError of peer input
        eng.count("malformed")
        return
    aggressive = int(header.exchange) == AGGR
    sa_p = next((p for p in payloads if isinstance(p, w1.SecurityAssociation)), None)
    sa_span = _span_of(spans, w1.PayloadType.SA)
    if sa_p is None or sa_span is None:
        eng.count("malformed")
        return
    candidates = [c for c in eng.candidates_for(local, remote) if c.local.auth is AuthMethod.PSK]
    remote_id = None
    if aggressive:
        idp = next((p for p in payloads if isinstance(p, w1.Identification)), None)
        ke = next((p for p in payloads if isinstance(p, w1.KeyExchange)), None)
        nonce = next((p for p in payloads if isinstance(p, w1.Nonce)), None)
        if idp is None or ke is None or nonce is None:
            eng.count("malformed")
            return
        remote_id = identity_from_wire(idp.id_type, idp.data)
        candidates = [c for c in candidates if matches(c.remote.id, remote_id)]
        refused = [c for c in candidates if not (c.aggressive and c.allow_aggressive_psk)]
        candidates = [c for c in candidates if c.aggressive and c.allow_aggressive_psk]
        if not candidates:
            eng.count("aggressive_refused" if refused else "no_connection")
            if refused:
                eng.log.warning(
                    "%s:%d: Aggressive Mode from '%s' refused: connection %s does not set "
                    "aggressive and allow_aggressive_psk",
                    remote[0],
                    remote[1],
                    remote_id,
                    refused[0].name,
                )
            else:
                eng.log.warning(
                    "%s:%d: no IKEv1 connection matches peer '%s'", remote[0], remote[1], remote_id
                )
            _notify_plain(eng, header, local, remote, w1.NotifyType.INVALID_ID_INFORMATION)
            return
    if not candidates:
        eng.count("no_connection")
        eng.log.warning("%s:%d: no IKEv1 connection for this peer", remote[0], remote[1])
        _notify_plain(eng, header, local, remote, w1.NotifyType.NO_PROPOSAL_CHOSEN)
        return
    group = None
    if aggressive:
        ke_group = _group_of_offer(sa_p)
        group = ke_group
    choice = choose_ike(sa_p, candidates, group)
    if choice is None:
        eng.count("no_proposal_chosen")
        eng.log.warning(
            "%s:%d: NO_PROPOSAL_CHOSEN: peer offered %s; we accept %s",
            remote[0],
            remote[1],
            describe_ike_offer(sa_p),
            "; ".join(", ".join(str(p) for p in c.proposals) for c in candidates),
        )
        _notify_plain(eng, header, local, remote, w1.NotifyType.NO_PROPOSAL_CHOSEN)
        return
    conn = choice.conn
    sa = V1Sa(
        uid=eng.core.new_uid(),
        conn=conn,
        initiator=False,
        mode=AGGRESSIVE if aggressive else MAIN,
        spi_i=header.spi_i,
        spi_r=eng.core.new_ike_spi(),
        local=local,
        remote=remote,
        created_at=now,
        last_recv=now,
    )
    sa.candidates = tuple(candidates)
    sa.force_encap = eng.core.force_encap or conn.encap
    sa.half_open_until = now + 30.0
    sa.transform = choice.transform
    sa.sai_b = _body(data[w1.HEADER_LEN :], sa_span)
    sa.set_state(IkeState.CONNECTING)
    natt.note_vendor_ids(sa, payloads)
    eng.register(sa)
    eng.half_open[(sa.spi_i, remote[0])] = sa
    ex = Exchange("main" if not aggressive else "aggressive", 0, False, last_received=data)
    sa.exchanges[0] = ex
    if not aggressive:
        out = [choice.reply, *natt.our_vendor_ids()]
        msg, _ = build(sa, ID_PROT, 0, out)
        ex.step = 2
        eng.exchange_send(sa, ex, msg, now, wait=False)
        eng.refresh(sa)
        return
    # Aggressive Mode: everything in one answer
    eng.log.warning(AGGRESSIVE_WARNING, sa.peer_label())
    sa.remote_id = remote_id
    id_span = _span_of(spans, w1.PayloadType.ID)
    sa.idii_b = _body(data[w1.HEADER_LEN :], id_span) if id_span else b""
    sa.local_id = _local_identity(conn, sa)
    sa.psk = _find_psk(eng, sa, remote_id)
    if sa.psk is None:
        eng.fail_ike(sa, f"no pre-shared key for '{sa.local_id}' - '{remote_id}'", now)
        return
    sa.ke = KeyExchange.generate(choice.transform.dh.id, eng.core.rng)
    sa.gxr = sa.ke.public
    sa.nr = eng.rand(NONCE_LEN)
    shared = _ke_nonce(eng, sa, payloads, now)
    if shared is None:
        return
    _derive(eng, sa, shared, now)
    id_p = _id_payload(sa.local_id)
    out = [
        choice.reply,
        w1.KeyExchange(sa.gxr),
        w1.Nonce(sa.nr),
        id_p,
        w1.Hash(_hash_r(sa, w1.body_bytes(id_p))),
        *natt.our_vendor_ids(),
        *natt.nat_d_payloads(sa, eng.rand(64)),
    ]
    msg, _ = build(sa, AGGR, 0, out)
    ex.step = 2
    eng.exchange_send(sa, ex, msg, now, wait=True)  # resend until the initiator's HASH_I
    eng.refresh(sa)


def _group_of_offer(sa_p: w1.SecurityAssociation) -> int | None:
    from ikeagent.crypto.v1 import attributes as at
    from ikeagent.engine.ikev1.proposals import _pairs

    for prop in sa_p.proposals:
        for tr in prop.transforms:
            try:
                return at.from_attributes(_pairs(tr.attributes)).dh.id
            except ValueError:
                continue
    return None


def _notify_plain(
    eng: V1Engine, header: w1.Header, local: Endpoint, remote: Endpoint, notify: int
) -> None:
    """An unprotected Informational with an error notify, as RFC 2408 5 allows before keys."""
    n = w1.Notification(notify, w1.ProtocolId.ISAKMP, header.spi_i.to_bytes(8, "big") + bytes(8))
    first_type, body = w1.encode_payloads([n])
    h = w1.Header(
        spi_i=header.spi_i,
        spi_r=0,
        next_payload=first_type,
        exchange=w1.ExchangeType.INFORMATIONAL,
        flags=0,
        message_id=0,
        length=w1.HEADER_LEN + len(body),
    )
    eng.core.send_plain(h.to_bytes() + body, local, remote)


def _mm_r_3(eng: V1Engine, sa: V1Sa, ex: Exchange, opened, now: float) -> None:
    conn = sa.conn
    assert conn is not None and sa.transform is not None
    sa.ke = KeyExchange.generate(sa.transform.dh.id, eng.core.rng)
    sa.gxr = sa.ke.public
    sa.nr = eng.rand(NONCE_LEN)
    shared = _ke_nonce(eng, sa, opened.payloads, now)
    if shared is None:
        return
    # Main Mode: the key must be known before the initiator's identity: the connection's ids
    sa.local_id = _local_identity(conn, sa)
    sa.psk = _find_psk(eng, sa, conn.remote.id)
    if sa.psk is None:
        eng.fail_ike(
            sa, f"no pre-shared key for '{sa.local_id}' - '{conn.remote.id or '%any'}'", now
        )
        return
    _derive(eng, sa, shared, now)
    natt.process_nat_d(sa, opened.payloads)
    out = [w1.KeyExchange(sa.gxr), w1.Nonce(sa.nr), *natt.nat_d_payloads(sa, eng.rand(64))]
    msg, _ = build(sa, ID_PROT, 0, out)
    ex.step = 4
    eng.exchange_send(sa, ex, msg, now, wait=False)


def _mm_r_5(eng: V1Engine, sa: V1Sa, ex: Exchange, opened, now: float) -> None:
    conn = sa.conn
    assert conn is not None
    got = _peer_identity(eng, sa, opened, now)
    if got is None:
        return
    remote_id, idii_b = got
    if not matches(conn.remote.id, remote_id):
        eng.fail_ike(sa, f"peer identity '{remote_id}' does not match '{conn.remote.id}'", now)
        return
    received = _received_hash(opened)
    if received is None or not hmac.compare_digest(received, _hash_i(sa, idii_b)):
        eng.fail_ike(
            sa,
            f"AUTHENTICATION_FAILED: HASH_I of '{remote_id}' does not verify "
            "(the pre-shared keys differ)",
            now,
        )
        return
    sa.remote_id = remote_id
    assert sa.local_id is not None
    id_p = _id_payload(sa.local_id)
    out = [id_p, w1.Hash(_hash_r(sa, w1.body_bytes(id_p)))]
    msg, sa.iv = build(sa, ID_PROT, 0, out, iv=sa.iv)
    ex.step = 6
    eng.exchange_send(sa, ex, msg, now, wait=False)
    eng.received(sa, now)
    eng.finish_exchange(sa, ex, now)
    sa.p1_last_block = sa.iv
    eng.ike_established(sa, now)


def _am_r_3(eng: V1Engine, sa: V1Sa, ex: Exchange, opened, now: float) -> None:
    received = _received_hash(opened)
    idii_b = sa.idii_b
    if received is None or not hmac.compare_digest(received, _hash_i(sa, idii_b)):
        eng.fail_ike(
            sa,
            f"AUTHENTICATION_FAILED: HASH_I of '{sa.remote_id}' does not verify "
            "(the pre-shared keys differ)",
            now,
        )
        return
    natt.process_nat_d(sa, opened.payloads)
    eng.received(sa, now)
    eng.finish_exchange(sa, ex, now)
    sa.p1_last_block = sa.iv
    eng.ike_established(sa, now)


_HANDLERS = {
    (MAIN, True, 1): _mm_i_2,
    (MAIN, True, 3): _mm_i_4,
    (MAIN, True, 5): _mm_i_6,
    (AGGRESSIVE, True, 1): _am_i_2,
    (MAIN, False, 2): _mm_r_3,
    (MAIN, False, 4): _mm_r_5,
    (AGGRESSIVE, False, 2): _am_r_3,
}
