"""Phase 1: Main Mode (RFC 2409 5, six messages, identities encrypted) and Aggressive Mode
(RFC 2409 5, three messages, identities in the clear), with pre-shared keys or signatures
(RFC 2409 5.1; RSA, and ECDSA per RFC 4754), in both roles.

Main Mode                                 Aggressive Mode
  I: HDR, SA, VID                           I: HDR, SA, KE, Ni, IDii, VID
  R: HDR, SA, VID                           R: HDR, SA, KE, Nr, IDir, HASH_R, VID, NAT-D
  I: HDR, KE, Ni, NAT-D                     I: HDR, HASH_I, NAT-D
  R: HDR, KE, Nr, NAT-D
  I: HDR*, IDii, HASH_I
  R: HDR*, IDir, HASH_R

With signatures, messages 3 and 4 of Main Mode also carry CR (one per trusted CA, its DER
subject), HASH_x becomes [CERT...], SIG_x, and Aggressive Mode carries CERT, SIG likewise.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ikeagent.config.model import ConnectionConfig
from ikeagent.crypto.dh import KeyExchange
from ikeagent.crypto.pki.errors import PkiError
from ikeagent.engine.addresses import UNBOUND, is_ip
from ikeagent.engine.ikev1 import natt, pubkey
from ikeagent.engine.ikev1.phase1_keys import (
    AGGRESSIVE_WARNING,
    NONCE_LEN,
    body,
    derive,
    find_psk,
    id_payload,
    ke_nonce,
    local_identity,
    own_proof,
    span_of,
)
from ikeagent.engine.ikev1.proposals import (
    choose_ike,
    describe_ike_offer,
    ike_offer,
    ike_sa_payload,
    ike_unsupported,
)
from ikeagent.engine.ikev1.protect import ProtectionError, build, open_message
from ikeagent.engine.ikev1.sa import AGGRESSIVE, MAIN, Exchange, V1Sa
from ikeagent.engine.ikev2.identities import identity_from_wire, matches
from ikeagent.engine.ikev2.state import IkeState
from ikeagent.wire import v1 as w1

if TYPE_CHECKING:
    from ikeagent.dataplane.base import Endpoint
    from ikeagent.engine.ikev1.engine import V1Engine
from ikeagent.engine.ikev1 import aggressive_mode, main_mode

HALF_OPEN_TIMEOUT = 30.0  # a responder's Phase 1 that does not complete is dropped then
ID_PROT = w1.ExchangeType.IDENTITY_PROTECTION
AGGR = w1.ExchangeType.AGGRESSIVE


def _exchange(sa: V1Sa) -> int:
    return AGGR if sa.mode == AGGRESSIVE else ID_PROT


def start(eng: V1Engine, sa: V1Sa, now: float) -> None:
    conn = sa.conn
    assert conn is not None
    method = pubkey.conn_method(conn)
    if method is None:
        eng.fail_ike(sa, f"no IKEv1 authentication method: {pubkey.method_problem(conn)}", now)
        return
    signatures = pubkey.is_signature(method)
    if signatures:
        try:  # no message before we know we can sign (the key may be missing or refused)
            pubkey.signer(eng, sa)
        except PkiError as exc:
            eng.fail_ike(sa, f"cannot authenticate ourselves: {exc}", now)
            return
    unusable = ike_unsupported(conn)
    if not ike_offer(conn):
        eng.fail_ike(
            sa, "no proposal of the connection is usable with IKEv1: " + "; ".join(unusable), now
        )
        return
    if unusable:
        eng.log.warning(
            "%s: proposals not offered in IKEv1: %s", sa.peer_label(), "; ".join(unusable)
        )
    sa.set_state(IkeState.CONNECTING)
    ex = Exchange("main" if sa.mode == MAIN else "aggressive", 0, True)
    sa.exchanges[0] = ex
    if sa.mode == MAIN:
        sa.offered = tuple(ike_offer(conn))
        sa_p = ike_sa_payload(sa.offered)
        sa.sai_b = w1.body_bytes(sa_p)
        payloads: list[w1.Payload] = [sa_p, *natt.our_vendor_ids()]
    else:
        if not signatures and not conn.allow_aggressive_psk:
            eng.fail_ike(
                sa,
                "Aggressive Mode with a pre-shared key is refused: set allow_aggressive_psk "
                "on the connection to accept the risk",
                now,
            )
            return
        if not signatures:
            eng.log.warning(AGGRESSIVE_WARNING, sa.peer_label())
        group = next(iter(ike_offer(conn))).dh.id
        sa.offered = tuple(ike_offer(conn, group))
        try:
            sa.local_id = local_identity(conn, sa)
        except ValueError:
            eng.fail_ike(
                sa,
                "Aggressive Mode sends our identity first: set local.id or local_addrs",
                now,
            )
            return
        if not find_psk(eng, sa, conn.remote.id, now):
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
            id_payload(sa.local_id),
            *(pubkey.cert_requests(conn) if signatures else []),
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
    sa_span = span_of(spans, w1.PayloadType.SA)
    if sa_p is None or sa_span is None:
        eng.count("malformed")
        return
    candidates = list(eng.candidates_for(local, remote))
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
        refused = [c for c in candidates if not _aggressive_ok(c)]
        candidates = [c for c in candidates if _aggressive_ok(c)]
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
            describe_ike_offer(sa_p, auth=True),
            "; ".join(
                ", ".join(str(p) for p in c.proposals) + f" ({_accepts(c)})" for c in candidates
            ),
        )
        _notify_plain(eng, header, local, remote, w1.NotifyType.NO_PROPOSAL_CHOSEN)
        return
    conn = choice.conn
    if local[0] in UNBOUND and conn.local_addrs and is_ip(conn.local_addrs[0]):
        local = (conn.local_addrs[0], local[1])
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
    sa.force_encap = eng.core.force_encap or conn.encap
    sa.half_open_until = now + HALF_OPEN_TIMEOUT
    sa.transform = choice.transform
    sa.sai_b = body(data[w1.HEADER_LEN :], sa_span)
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
    signatures = pubkey.is_signature(choice.transform.auth_method)
    if not signatures:
        eng.log.warning(AGGRESSIVE_WARNING, sa.peer_label())
    sa.remote_id = remote_id
    id_span = span_of(spans, w1.PayloadType.ID)
    sa.idii_b = body(data[w1.HEADER_LEN :], id_span) if id_span else b""
    sa.local_id = local_identity(conn, sa)
    if not find_psk(eng, sa, remote_id, now):
        return
    sa.ke = KeyExchange.generate(choice.transform.dh.id, eng.core.rng)
    sa.gxr = sa.ke.public
    sa.nr = eng.rand(NONCE_LEN)
    shared = ke_nonce(eng, sa, payloads, now)
    if shared is None:
        return
    derive(eng, sa, shared, now)
    id_p = id_payload(sa.local_id)
    proof = own_proof(eng, sa, id_p, now)
    if proof is None:
        if sa.state is not IkeState.DESTROYED:
            eng.fail_ike(sa, "cannot authenticate ourselves", now)
        _notify_plain(eng, header, local, remote, w1.NotifyType.AUTHENTICATION_FAILED)
        return
    out = [
        choice.reply,
        w1.KeyExchange(sa.gxr),
        w1.Nonce(sa.nr),
        id_p,
        *proof,
        *(pubkey.cert_requests(conn) if signatures else []),
        *natt.our_vendor_ids(),
        *natt.nat_d_payloads(sa, eng.rand(64)),
    ]
    msg, _ = build(sa, AGGR, 0, out)
    ex.step = 2
    eng.exchange_send(sa, ex, msg, now, wait=True)  # resend until the initiator's HASH_I
    eng.refresh(sa)


def _aggressive_ok(conn: ConnectionConfig) -> bool:
    """Aggressive Mode is accepted for a connection that asks for it, with a pre-shared key
    only when allow_aggressive_psk accepts the risk (signatures have no offline guess)."""
    if not conn.aggressive:
        return False
    return conn.allow_aggressive_psk or pubkey.is_signature(pubkey.conn_method(conn))


def _accepts(conn: ConnectionConfig) -> str:
    method = pubkey.conn_method(conn)
    return pubkey.method_name(method) if method is not None else pubkey.method_problem(conn)


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


_HANDLERS = {
    (MAIN, True, 1): main_mode.mm_i_2,
    (MAIN, True, 3): main_mode.mm_i_4,
    (MAIN, True, 5): main_mode.mm_i_6,
    (AGGRESSIVE, True, 1): aggressive_mode.am_i_2,
    (MAIN, False, 2): main_mode.mm_r_3,
    (MAIN, False, 4): main_mode.mm_r_5,
    (AGGRESSIVE, False, 2): aggressive_mode.am_r_3,
}
