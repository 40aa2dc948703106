"""Main Mode (RFC 2409 5): six messages, the identities encrypted.

I: HDR, SA, VID                 R: HDR, SA, VID
I: HDR, KE, Ni, NAT-D           R: HDR, KE, Nr, NAT-D
I: HDR*, IDii, HASH_I           R: HDR*, IDir, HASH_R
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ikeagent.crypto.dh import KeyExchange
from ikeagent.engine.ikev1 import natt
from ikeagent.engine.ikev1.phase1_keys import (
    NONCE_LEN,
    chosen_transform,
    derive,
    find_psk,
    hash_i,
    hash_r,
    id_payload,
    initial_contact,
    ke_nonce,
    local_identity,
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
    payloads = [w1.KeyExchange(sa.gxi), w1.Nonce(sa.ni), *natt.nat_d_payloads(sa, eng.rand(64))]
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
    payloads = [id_p, w1.Hash(hash_i(sa, w1.body_bytes(id_p))), *initial_contact(eng, sa)]
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
    out = [w1.KeyExchange(sa.gxr), w1.Nonce(sa.nr), *natt.nat_d_payloads(sa, eng.rand(64))]
    msg, _ = build(sa, ID_PROT, 0, out)
    ex.step = 4
    eng.exchange_send(sa, ex, msg, now, wait=False)


def mm_r_5(eng: V1Engine, sa: V1Sa, ex: Exchange, opened, now: float) -> None:
    if peer_proof(eng, sa, opened, now) is None:
        return
    assert sa.local_id is not None
    id_p = id_payload(sa.local_id)
    out = [id_p, w1.Hash(hash_r(sa, w1.body_bytes(id_p)))]
    msg, sa.iv = build(sa, ID_PROT, 0, out, iv=sa.iv)
    ex.step = 6
    eng.exchange_send(sa, ex, msg, now, wait=False)
    sa.initial_contact = peer_initial_contact(opened.payloads)
    phase1_done(eng, sa, ex, now)
