"""Main Mode (RFC 2409 5): six messages, the identities encrypted.

I: HDR, SA, VID                 R: HDR, SA, VID
I: HDR, KE, Ni, NAT-D           R: HDR, KE, Nr, NAT-D
I: HDR*, IDii, HASH_I           R: HDR*, IDir, HASH_R

With signatures (RFC 2409 5.1) messages 3/4 add CR payloads and 5/6 carry CERT(s) and SIG in
place of the HASH: I: HDR*, IDii, CERT, SIG_I   R: HDR*, IDir, CERT, SIG_R.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ikeagent.crypto.dh import KeyExchange
from ikeagent.engine.ikev1 import natt, pubkey
from ikeagent.engine.ikev1.phase1_keys import (
    NONCE_LEN,
    chosen_transform,
    derive,
    find_psk,
    id_payload,
    initial_contact,
    ke_nonce,
    local_identity,
    own_proof,
    peer_initial_contact,
    peer_proof,
    phase1_done,
)
from ikeagent.engine.ikev1.protect import build
from ikeagent.engine.ikev1.sa import Exchange, V1Sa
from ikeagent.wire import v1 as w1

if TYPE_CHECKING:
    from ikeagent.engine.ikev1.engine import V1Engine

ID_PROT = w1.ExchangeType.IDENTITY_PROTECTION


def mm_i_2(eng: V1Engine, sa: V1Sa, ex: Exchange, opened, now: float) -> None:
    if not chosen_transform(eng, sa, opened.payloads, now):
        return
    assert sa.transform is not None
    sa.ke = KeyExchange.generate(sa.transform.dh.id, eng.core.rng)
    sa.gxi = sa.ke.public
    sa.ni = eng.rand(NONCE_LEN)
    payloads = [
        w1.KeyExchange(sa.gxi),
        w1.Nonce(sa.ni),
        *_cert_requests(sa),
        *natt.nat_d_payloads(sa, eng.rand(64)),
    ]
    data, _ = build(sa, ID_PROT, 0, payloads)
    ex.step = 3
    eng.exchange_send(sa, ex, data, now, wait=True)


def mm_i_4(eng: V1Engine, sa: V1Sa, ex: Exchange, opened, now: float) -> None:
    conn = sa.conn
    assert conn is not None
    shared = ke_nonce(eng, sa, opened.payloads, now)
    if shared is None:
        return
    try:
        sa.local_id = local_identity(conn, sa)
    except ValueError as exc:
        eng.fail_ike(sa, f"no local identity: {exc}", now)
        return
    if not find_psk(eng, sa, conn.remote.id, now):
        return
    derive(eng, sa, shared, now)
    natt.process_nat_d(sa, opened.payloads)
    natt.float_ports(sa)
    id_p = id_payload(sa.local_id)
    proof = own_proof(eng, sa, id_p, now)
    if proof is None:
        return
    payloads = [id_p, *proof, *initial_contact(eng, sa)]
    data, sa.iv = build(sa, ID_PROT, 0, payloads, iv=sa.iv)
    ex.step = 5
    eng.exchange_send(sa, ex, data, now, wait=True)


def mm_i_6(eng: V1Engine, sa: V1Sa, ex: Exchange, opened, now: float) -> None:
    if peer_proof(eng, sa, opened, now) is not None:
        phase1_done(eng, sa, ex, now)


def mm_r_3(eng: V1Engine, sa: V1Sa, ex: Exchange, opened, now: float) -> None:
    conn = sa.conn
    assert conn is not None and sa.transform is not None
    sa.ke = KeyExchange.generate(sa.transform.dh.id, eng.core.rng)
    sa.gxr = sa.ke.public
    sa.nr = eng.rand(NONCE_LEN)
    shared = ke_nonce(eng, sa, opened.payloads, now)
    if shared is None:
        return
    # Main Mode: the key must be known before the initiator's identity: the connection's ids
    sa.local_id = local_identity(conn, sa)
    if not find_psk(eng, sa, conn.remote.id, now):
        return
    derive(eng, sa, shared, now)
    natt.process_nat_d(sa, opened.payloads)
    out = [
        w1.KeyExchange(sa.gxr),
        w1.Nonce(sa.nr),
        *_cert_requests(sa),
        *natt.nat_d_payloads(sa, eng.rand(64)),
    ]
    msg, _ = build(sa, ID_PROT, 0, out)
    ex.step = 4
    eng.exchange_send(sa, ex, msg, now, wait=False)


def mm_r_5(eng: V1Engine, sa: V1Sa, ex: Exchange, opened, now: float) -> None:
    if peer_proof(eng, sa, opened, now) is None:
        return
    assert sa.local_id is not None
    id_p = id_payload(sa.local_id)
    proof = own_proof(eng, sa, id_p, now)
    if proof is None:
        return
    out = [id_p, *proof]
    msg, sa.iv = build(sa, ID_PROT, 0, out, iv=sa.iv)
    ex.step = 6
    eng.exchange_send(sa, ex, msg, now, wait=False)
    sa.initial_contact = peer_initial_contact(opened.payloads)
    phase1_done(eng, sa, ex, now)


def _cert_requests(sa: V1Sa) -> list[w1.Payload]:
    """CR payloads in messages 3/4 when signatures authenticate (charon sends its certificate
    only when asked: its default send_cert is ifasked)."""
    assert sa.transform is not None and sa.conn is not None
    if not pubkey.is_signature(sa.transform.auth_method):
        return []
    return pubkey.cert_requests(sa.conn)
