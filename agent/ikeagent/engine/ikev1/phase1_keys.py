"""What Main and Aggressive Mode share: identities, SKEYID and its keys, HASH_I/HASH_R, the
KE and nonce payloads and the chosen transform (RFC 2409 5)."""

from __future__ import annotations

import hmac
from typing import TYPE_CHECKING

from ikeagent.config.identity import identity_of_address
from ikeagent.config.model import AuthMethod, ConnectionConfig, Identity
from ikeagent.crypto import suites
from ikeagent.crypto.dh import InvalidPublicKey
from ikeagent.crypto.pki.errors import PkiError
from ikeagent.crypto.v1 import keymat
from ikeagent.crypto.v1.cipher import V1Cipher
from ikeagent.engine.ikev1 import natt, pubkey
from ikeagent.engine.ikev1.proposals import (
    choose_ike,
    describe_ike,
    describe_ike_offer,
    same_ike,
)
from ikeagent.engine.ikev1.sa import Exchange, V1Sa
from ikeagent.engine.ikev2.identities import identity_from_wire, matches
from ikeagent.engine.ikev2.state import IkeState
from ikeagent.wire import v1 as w1

if TYPE_CHECKING:
    from ikeagent.engine.ikev1.engine import V1Engine

NONCE_LEN = 32
AGGRESSIVE_WARNING = (
    "%s: Aggressive Mode with a pre-shared key: the peer's HASH can be used to guess the key "
    "offline; use Main Mode or certificates where the peer supports them"
)


def describe(sa: V1Sa) -> str:
    return describe_ike(sa.transform) if sa.transform is not None else "(none)"


def local_identity(conn: ConnectionConfig, sa: V1Sa) -> Identity:
    if conn.local.id is not None:
        return conn.local.id
    if conn.local.auth is AuthMethod.PUBKEY and conn.local.certs:
        from ikeagent.crypto.pki.names import subject_identity

        return subject_identity(conn.local.certs[0])  # strongSwan's default: the subject DN
    return identity_of_address(sa.local[0])


def id_payload(ident: Identity) -> w1.Identification:
    return w1.Identification(ident.id_type, 0, 0, ident.data)


def body(opened_plain: bytes, span: tuple[int, int, int]) -> bytes:
    return opened_plain[span[1] + 4 : span[2]]


def span_of(spans: list[tuple[int, int, int]], ptype: int) -> tuple[int, int, int] | None:
    return next((s for s in spans if s[0] == ptype), None)


def enc_key_len(encr: suites.Algorithm) -> int:
    try:
        return suites.encr_key_len(encr.id, encr.key_bits)
    except (KeyError, ValueError):
        return (encr.key_bits or 192) // 8


def derive(eng: V1Engine, sa: V1Sa, shared: bytes, now: float) -> None:
    """SKEYID and its derivatives, the cipher and the first IV (RFC 2409 5, appendix B)."""
    t = sa.transform
    assert t is not None
    h = t.hash_id
    if pubkey.is_signature(t.auth_method):
        skeyid = keymat.skeyid_sig(h, sa.ni, sa.nr, shared)  # RFC 2409 5.1
    else:
        assert sa.psk is not None
        skeyid = keymat.skeyid_psk(h, sa.psk, sa.ni, sa.nr)
    sa.keys = keymat.derive_phase1(
        h,
        skeyid,
        shared,
        sa.spi_i.to_bytes(8, "big"),
        sa.spi_r.to_bytes(8, "big"),
        enc_key_len(t.encr),
    )
    sa.cipher = V1Cipher(t.encr_id, sa.keys.enc_key)
    sa.iv = keymat.initial_iv(h, sa.gxi, sa.gxr, sa.cipher.block_size)


def hash_i(sa: V1Sa, idii_b: bytes) -> bytes:
    assert sa.keys is not None
    ck_i, ck_r = sa.spi_i.to_bytes(8, "big"), sa.spi_r.to_bytes(8, "big")
    return keymat.hash_i(
        pubkey.auth_hash_id(sa), sa.keys.skeyid, sa.gxi, sa.gxr, ck_i, ck_r, sa.sai_b, idii_b
    )


def hash_r(sa: V1Sa, idir_b: bytes) -> bytes:
    assert sa.keys is not None
    ck_i, ck_r = sa.spi_i.to_bytes(8, "big"), sa.spi_r.to_bytes(8, "big")
    return keymat.hash_r(
        pubkey.auth_hash_id(sa), sa.keys.skeyid, sa.gxr, sa.gxi, ck_r, ck_i, sa.sai_b, idir_b
    )


def find_psk(eng: V1Engine, sa: V1Sa, remote_id: Identity | None, now: float) -> bool:
    """Set ``sa.psk`` to the key for our identity and ``remote_id`` (None: any); without one
    the SA fails, naming both identities."""
    assert sa.conn is not None
    if pubkey.is_signature(pubkey.conn_method(sa.conn)):
        return True  # signatures: SKEYID needs no key
    if sa.conn.local.auth is AuthMethod.PSK:
        sa.psk = eng.config.find_psk(sa.local_id, remote_id)
    if sa.psk is None:
        eng.fail_ike(sa, f"no pre-shared key for '{sa.local_id}' - '{remote_id or '%any'}'", now)
        return False
    return True


def chosen_transform(eng: V1Engine, sa: V1Sa, payloads: list, now: float) -> bool:
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


def ke_nonce(eng: V1Engine, sa: V1Sa, payloads: list, now: float) -> bytes | None:
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


def peer_identity(eng: V1Engine, sa: V1Sa, opened, now: float) -> tuple[Identity, bytes] | None:
    span = span_of(opened.spans, w1.PayloadType.ID)
    idp = next((p for p in opened.payloads if isinstance(p, w1.Identification)), None)
    if idp is None or span is None:
        eng.fail_ike(sa, "peer's message lacks its identity", now)
        return None
    return identity_from_wire(idp.id_type, idp.data), body(opened.plain, span)


def received_hash(opened) -> bytes | None:
    h = next((p for p in opened.payloads if isinstance(p, w1.Hash)), None)
    return h.data if h is not None else None


def initial_contact(eng: V1Engine, sa: V1Sa) -> list[w1.Payload]:
    """INITIAL-CONTACT (RFC 2407 4.6.3.3) when we hold no other ISAKMP SA with this peer: it
    may then drop whatever it still has from an earlier run of ours (strongSwan sends it too)."""
    if sa.rekey_of is not None:
        return []
    for o in eng.sas.values():
        if (
            o is not sa
            and o.conn is sa.conn
            and o.remote[0] == sa.remote[0]
            and o.state in (IkeState.ESTABLISHED, IkeState.CONNECTING)
        ):
            return []
    return [w1.Notification(w1.NotifyType.INITIAL_CONTACT, w1.ProtocolId.ISAKMP, sa.cookies)]


def peer_initial_contact(payloads: list) -> bool:
    return any(
        isinstance(p, w1.Notification) and int(p.notify_type) == w1.NotifyType.INITIAL_CONTACT
        for p in payloads
    )


def peer_proof(
    eng: V1Engine, sa: V1Sa, opened, now: float, *, with_identity: bool = True
) -> tuple[Identity, bytes] | None:
    """The peer's identity (it must match the connection's remote id) and the body of its ID
    payload; with its HASH_I (initiator) or HASH_R (responder) verified over that body. On a
    mismatch the SA fails with a log naming the peer, and None is returned."""
    conn = sa.conn
    assert conn is not None
    if with_identity:
        got = peer_identity(eng, sa, opened, now)
        if got is None:
            return None
        remote_id, id_b = got
        if not matches(conn.remote.id, remote_id):
            eng.fail_ike(sa, f"peer identity '{remote_id}' does not match '{conn.remote.id}'", now)
            return None
    else:  # Aggressive Mode responder: the identity came with the first message
        assert sa.remote_id is not None
        remote_id, id_b = sa.remote_id, sa.idii_b
    expected = hash_r(sa, id_b) if sa.initiator else hash_i(sa, id_b)
    assert sa.transform is not None
    if pubkey.is_signature(sa.transform.auth_method):
        reason = pubkey.verify_peer(eng, sa, opened.payloads, remote_id, expected)
        if reason is not None:
            refuse_peer(eng, sa, f"AUTHENTICATION_FAILED: peer '{remote_id}': {reason}", now)
            return None
        sa.remote_id = remote_id
        return remote_id, id_b
    received = received_hash(opened)
    if received is None or not hmac.compare_digest(received, expected):
        which = "HASH_R" if sa.initiator else "HASH_I"
        eng.fail_ike(
            sa,
            f"AUTHENTICATION_FAILED: {which} of '{remote_id}' does not verify "
            "(the pre-shared keys differ)",
            now,
        )
        return None
    sa.remote_id = remote_id
    return remote_id, id_b


def own_proof(eng: V1Engine, sa: V1Sa, id_p: w1.Identification, now: float) -> list | None:
    """What follows our ID payload in message 5/6 (Main Mode) or 2/3 (Aggressive Mode):
    HASH_I/HASH_R, or for signatures our certificate(s) and SIG over it. None (and the SA
    failed, the responder telling the peer) when our key is missing or refused."""
    idb = w1.body_bytes(id_p)
    h = hash_i(sa, idb) if sa.initiator else hash_r(sa, idb)
    assert sa.transform is not None and sa.conn is not None
    if not pubkey.is_signature(sa.transform.auth_method):
        return [w1.Hash(h)]
    try:
        key = pubkey.signer(eng, sa)
        sig = pubkey.sign(sa, key, h)
    except PkiError as exc:
        reason = f"cannot authenticate ourselves: {exc}"
        if sa.initiator or sa.mode == "aggressive":  # the caller tells an Aggressive peer
            eng.fail_ike(sa, reason, now)
        else:
            refuse_peer(eng, sa, reason, now)
        return None
    limit = 1 if sa.mode == "aggressive" else None  # charon takes one CERT in Aggressive Mode
    return [*pubkey.cert_payloads(sa.conn, max_certs=limit), sig]


def refuse_peer(eng: V1Engine, sa: V1Sa, reason: str, now: float) -> None:
    """The peer's authentication failed after keys exist: tell it (an encrypted
    AUTHENTICATION_FAILED, as charon sends; the initiator also deletes the ISAKMP SA, as charon
    does, so a responder that considers it established drops it) and fail the SA."""
    from ikeagent.engine.ikev1 import informational

    if sa.keys is not None and sa.cipher is not None:
        sa.p1_last_block = sa.iv  # the Phase 2 IV base: the last Phase 1 block so far
        informational.send_notify(eng, sa, w1.NotifyType.AUTHENTICATION_FAILED)
        if sa.initiator:
            informational.send_delete_isakmp(eng, sa)
    eng.fail_ike(sa, reason, now)


def phase1_done(eng: V1Engine, sa: V1Sa, ex: Exchange, now: float) -> None:
    eng.received(sa, now)
    eng.finish_exchange(sa, ex, now)
    sa.p1_last_block = sa.iv
    eng.ike_established(sa, now)
