"""Aggressive Mode (RFC 2409 5): three messages, identities in the clear.

I: HDR, SA, KE, Ni, IDii, VID
R: HDR, SA, KE, Nr, IDir, HASH_R, VID, NAT-D
I: HDR, HASH_I, NAT-D
"""

from __future__ import annotations

import hmac
from typing import TYPE_CHECKING

from ikeagent.engine.ikev1 import natt
from ikeagent.engine.ikev1.phase1_keys import (
    chosen_transform,
    derive,
    hash_i,
    hash_r,
    id_payload,
    initial_contact,
    ke_nonce,
    peer_identity,
    peer_initial_contact,
    received_hash,
)
from ikeagent.engine.ikev1.protect import build
from ikeagent.engine.ikev1.sa import Exchange, V1Sa
from ikeagent.engine.ikev2.identities import matches
from ikeagent.wire import v1 as w1

if TYPE_CHECKING:
    from ikeagent.engine.ikev1.engine import V1Engine

AGGR = w1.ExchangeType.AGGRESSIVE


def am_i_2(eng: V1Engine, sa: V1Sa, ex: Exchange, opened, now: float) -> None:
    conn = sa.conn
    assert conn is not None
    if not chosen_transform(eng, sa, opened.payloads, now):
        return
    shared = ke_nonce(eng, sa, opened.payloads, now)
    if shared is None:
        return
    got = peer_identity(eng, sa, opened, now)
    if got is None:
        return
    remote_id, idir_b = got
    if not matches(conn.remote.id, remote_id):
        eng.fail_ike(sa, f"peer identity '{remote_id}' does not match '{conn.remote.id}'", now)
        return
    derive(eng, sa, shared, now)
    received = received_hash(opened)
    if received is None or not hmac.compare_digest(received, hash_r(sa, idir_b)):
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
    idii_b = w1.body_bytes(id_payload(sa.local_id)) if sa.local_id else b""
    payloads = [
        w1.Hash(hash_i(sa, idii_b)),
        *natt.nat_d_payloads(sa, eng.rand(64)),
        *initial_contact(eng, sa),
    ]
    data, _ = build(sa, AGGR, 0, payloads)  # in the clear, as strongSwan sends it
    ex.step = 3
    eng.exchange_send(sa, ex, data, now, wait=False)
    eng.received(sa, now)
    eng.finish_exchange(sa, ex, now)
    sa.p1_last_block = sa.iv
    eng.ike_established(sa, now)


def am_r_3(eng: V1Engine, sa: V1Sa, ex: Exchange, opened, now: float) -> None:
    received = received_hash(opened)
    idii_b = sa.idii_b
    if received is None or not hmac.compare_digest(received, hash_i(sa, idii_b)):
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
    sa.initial_contact = peer_initial_contact(opened.payloads)
    eng.ike_established(sa, now)
