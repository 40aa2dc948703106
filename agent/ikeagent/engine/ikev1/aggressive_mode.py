"""Aggressive Mode (RFC 2409 5): three messages, identities in the clear.

I: HDR, SA, KE, Ni, IDii, VID
R: HDR, SA, KE, Nr, IDir, HASH_R, VID, NAT-D
I: HDR, HASH_I, NAT-D

With signatures the HASH_R/HASH_I become CERT, SIG_R / CERT, SIG_I (one CERT each, as charon
accepts), and the first two messages add CR payloads.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ikeagent.engine.ikev1 import natt
from ikeagent.engine.ikev1.phase1_keys import (
    chosen_transform,
    derive,
    id_payload,
    initial_contact,
    ke_nonce,
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

AGGR = w1.ExchangeType.AGGRESSIVE


def am_i_2(eng: V1Engine, sa: V1Sa, ex: Exchange, opened, now: float) -> None:
    if not chosen_transform(eng, sa, opened.payloads, now):
        return
    shared = ke_nonce(eng, sa, opened.payloads, now)
    if shared is None:
        return
    derive(eng, sa, shared, now)
    if peer_proof(eng, sa, opened, now) is None:
        return
    natt.process_nat_d(sa, opened.payloads)
    natt.float_ports(sa)
    assert sa.local_id is not None
    proof = own_proof(eng, sa, id_payload(sa.local_id), now)
    if proof is None:
        return
    payloads = [
        *proof,
        *natt.nat_d_payloads(sa, eng.rand(64)),
        *initial_contact(eng, sa),
    ]
    data, _ = build(sa, AGGR, 0, payloads)  # in the clear, as strongSwan sends it
    ex.step = 3
    eng.exchange_send(sa, ex, data, now, wait=False)
    phase1_done(eng, sa, ex, now)


def am_r_3(eng: V1Engine, sa: V1Sa, ex: Exchange, opened, now: float) -> None:
    if peer_proof(eng, sa, opened, now, with_identity=False) is None:
        return
    natt.process_nat_d(sa, opened.payloads)
    sa.initial_contact = peer_initial_contact(opened.payloads)
    phase1_done(eng, sa, ex, now)
