"""IKE_SA_INIT (RFC 7296 1.2): proposals, Diffie-Hellman, nonces, NAT detection (2.23),
COOKIE (2.6), INVALID_KE_PAYLOAD retry (1.2) and fragmentation support (RFC 7383)."""

from __future__ import annotations

import hashlib
import hmac
from typing import TYPE_CHECKING

from ikeagent.crypto import suites
from ikeagent.crypto.dh import InvalidPublicKey, KeyExchange
from ikeagent.crypto.keymat import derive_ike_keys
from ikeagent.crypto.nat import nat_hash
from ikeagent.crypto.sk import SkCipher
from ikeagent.dataplane.base import Endpoint
from ikeagent.engine.ikev2 import proposals, pubkey
from ikeagent.engine.ikev2.child_create import notify
from ikeagent.engine.ikev2.protect import encode_plain
from ikeagent.engine.ikev2.sa import IkeSa
from ikeagent.engine.ikev2.state import IkeState
from ikeagent.wire import v2 as w

if TYPE_CHECKING:
    from ikeagent.engine.core import Engine

NONCE_LEN = 32
NATT_PORT = 4500


def setup_keys(
    sa: IkeSa, chosen: proposals.Chosen, shared: bytes, *, old: IkeSa | None = None
) -> None:
    """Derive the IKE SA's keys and its SK ciphers for our role."""
    assert chosen.prf is not None
    sa.chosen = chosen
    sa.keys = derive_ike_keys(
        chosen.prf.id,
        chosen.encr.id,
        chosen.encr.key_bits,
        chosen.integ.id if chosen.integ else None,
        sa.ni,
        sa.nr,
        shared,
        sa.spi_i,
        sa.spi_r,
        old_sk_d=old.keys.sk_d if old is not None and old.keys is not None else None,
        old_prf_id=old.prf_id if old is not None else None,
    )
    k = sa.keys
    integ = chosen.integ.id if chosen.integ else None
    sk_i = SkCipher(chosen.encr.id, k.sk_ei, integ, k.sk_ai)
    sk_r = SkCipher(chosen.encr.id, k.sk_er, integ, k.sk_ar)
    sa.sk_out, sa.sk_in = (sk_i, sk_r) if sa.initiator else (sk_r, sk_i)


def _nat_notifies(eng: Engine, sa: IkeSa, spi_r: int) -> list[w.Payload]:
    src = (
        eng.rng.randbytes(20)  # a source hash that never matches forces UDP encapsulation
        if sa.force_encap
        else nat_hash(sa.spi_i, spi_r, sa.local[0] or "0.0.0.0", sa.local[1])
    )
    dst = nat_hash(sa.spi_i, spi_r, sa.remote[0], sa.remote[1])
    return [
        notify(w.NotifyType.NAT_DETECTION_SOURCE_IP, src),
        notify(w.NotifyType.NAT_DETECTION_DESTINATION_IP, dst),
    ]


def _detect_nat(sa: IkeSa, payloads: list[w.Payload], spi_r: int) -> None:
    srcs = [
        p.data
        for p in payloads
        if isinstance(p, w.Notify) and p.notify_type == w.NotifyType.NAT_DETECTION_SOURCE_IP
    ]
    dsts = [
        p.data
        for p in payloads
        if isinstance(p, w.Notify) and p.notify_type == w.NotifyType.NAT_DETECTION_DESTINATION_IP
    ]
    if srcs:
        theirs = nat_hash(sa.spi_i, spi_r, sa.remote[0], sa.remote[1])
        sa.nat_remote = not any(hmac.compare_digest(theirs, s) for s in srcs)
    if dsts and sa.local[0]:
        ours = nat_hash(sa.spi_i, spi_r, sa.local[0], sa.local[1])
        sa.nat_local = not any(hmac.compare_digest(ours, d) for d in dsts)


class IkeInitTask:
    exchange = w.ExchangeType.IKE_SA_INIT
    plain = True

    def describe(self) -> str:
        return "IKE_SA_INIT"

    def build_plain(self, eng: Engine, sa: IkeSa, now: float) -> bytes:
        conn = sa.conn
        assert conn is not None
        group = sa.dh_group or conn.proposals[0].dh[0].id
        sa.dh_group = group
        if not sa.local[0]:
            # our source address is unknown, so our NAT-D hash cannot match: encapsulate
            # (strongSwan fakes a NAT the same way)
            sa.force_encap = True
        if sa.ke is None or sa.ke.group != group:
            sa.ke = KeyExchange.generate(group, eng.rng)
        if not sa.ni:
            sa.ni = eng.rng.randbytes(NONCE_LEN)
        payloads: list[w.Payload] = []
        if sa.cookie is not None:
            payloads.append(notify(w.NotifyType.COOKIE, sa.cookie))
        payloads += [
            w.SecurityAssociation(
                proposals.to_wire(conn.proposals, w.ProtocolId.IKE, b"", dh_first=group)
            ),
            w.KeyExchange(group, sa.ke.public),
            w.Nonce(sa.ni),
            *_nat_notifies(eng, sa, 0),
        ]
        if conn.fragmentation:
            payloads.append(notify(w.NotifyType.IKEV2_FRAGMENTATION_SUPPORTED))
        if pubkey.uses_pubkey((conn,)):
            payloads.append(pubkey.hash_notify())
        sa.init_request = encode_plain(
            sa.spi_i, 0, w.ExchangeType.IKE_SA_INIT, w.FLAG_INITIATOR, 0, payloads
        )
        return sa.init_request

    def on_plain_response(
        self,
        eng: Engine,
        sa: IkeSa,
        data: bytes,
        header: w.Header,
        payloads: list[w.Payload],
        now: float,
    ) -> None:
        conn = sa.conn
        assert conn is not None
        cookie = w.find_notify(payloads, w.NotifyType.COOKIE)
        if cookie is not None:
            if sa.cookie is not None and sa.cookie == cookie.data and sa.ke_retries > 4:
                eng.fail_ike(sa, "peer keeps demanding a COOKIE", now, notify_peer=False)
                return
            sa.cookie = cookie.data
            sa.ke_retries += 1
            eng.log.info("%s: peer demands a COOKIE, retrying IKE_SA_INIT", sa.peer_label())
            eng.restart_init(sa, now)
            return
        invalid_ke = w.find_notify(payloads, w.NotifyType.INVALID_KE_PAYLOAD)
        if invalid_ke is not None:
            group = int.from_bytes(invalid_ke.data[:2], "big") if len(invalid_ke.data) >= 2 else 0
            allowed = {d.id for p in conn.proposals for d in p.dh}
            if group in allowed and group != sa.dh_group and sa.ke_retries < 3:
                sa.ke_retries += 1
                sa.dh_group = group
                sa.ke = None
                eng.log.info(
                    "%s: peer asks for DH group %s, retrying IKE_SA_INIT",
                    sa.peer_label(),
                    _group_name(group),
                )
                eng.restart_init(sa, now)
                return
            eng.fail_ike(
                sa,
                f"peer answered INVALID_KE_PAYLOAD for group {_group_name(group)}, which we do not offer",
                now,
                notify_peer=False,
            )
            return
        err = next(
            (p for p in payloads if isinstance(p, w.Notify) and int(p.notify_type) < 16384), None
        )
        if err is not None:
            name = w.NotifyType(int(err.notify_type)).name
            if err.notify_type == w.NotifyType.NO_PROPOSAL_CHOSEN:
                eng.fail_ike(
                    sa,
                    f"peer answered NO_PROPOSAL_CHOSEN to our offer {proposals.describe_configured(conn.proposals)}",
                    now,
                    notify_peer=False,
                )
            else:
                eng.fail_ike(sa, f"peer answered {name}", now, notify_peer=False)
            return
        sa_p = w.payload(payloads, w.SecurityAssociation)
        ke = w.payload(payloads, w.KeyExchange)
        nonce = w.payload(payloads, w.Nonce)
        if sa_p is None or ke is None or nonce is None or header.spi_r == 0:
            eng.fail_ike(sa, "IKE_SA_INIT response lacks SA, KE or Nonce", now, notify_peer=False)
            return
        chosen = proposals.accept_response(conn.proposals, sa_p.proposals, w.ProtocolId.IKE)
        if chosen is None or chosen.dh is None or chosen.prf is None:
            eng.fail_ike(sa, "peer chose an IKE proposal we did not offer", now, notify_peer=False)
            return
        assert sa.ke is not None
        if chosen.dh.id != sa.ke.group or ke.group != sa.ke.group:
            eng.fail_ike(
                sa, "peer's KE group differs from the chosen proposal", now, notify_peer=False
            )
            return
        if not 16 <= len(nonce.data) <= 256:
            eng.fail_ike(sa, "peer's nonce length is out of range", now, notify_peer=False)
            return
        try:
            shared = sa.ke.compute(ke.data)
        except InvalidPublicKey as exc:
            eng.fail_ike(sa, f"invalid KE payload: {exc}", now, notify_peer=False)
            return
        eng.set_spi_r(sa, header.spi_r)
        sa.nr = nonce.data
        sa.init_response = data
        _detect_nat(sa, payloads, header.spi_r)
        sa.frag_supported = (
            conn.fragmentation
            and w.find_notify(payloads, w.NotifyType.IKEV2_FRAGMENTATION_SUPPORTED) is not None
        )
        sa.peer_hashes = pubkey.peer_hashes(payloads)
        setup_keys(sa, chosen, shared)
        sa.ke = None  # the private value is no longer needed
        if sa.encap and sa.local[1] != NATT_PORT and sa.remote[1] == 500:
            sa.local = (sa.local[0], NATT_PORT)
            sa.remote = (sa.remote[0], NATT_PORT)
        eng.log.info(
            "%s: IKE_SA_INIT done: %s%s",
            sa.peer_label(),
            chosen.describe(),
            ", NAT/UDP encapsulation" if sa.encap else "",
        )
        eng.start_auth(sa, now)


def _group_name(group: int) -> str:
    try:
        return suites.dh_info(group).name
    except KeyError:
        return str(group)


def cookie_for(secret: bytes, ni: bytes, remote: Endpoint, spi_i: int) -> bytes:
    digest = hashlib.sha256(ni + remote[0].encode() + spi_i.to_bytes(8, "big") + secret).digest()
    return b"\x00" + digest


def respond(
    eng: Engine,
    data: bytes,
    header: w.Header,
    payloads: list[w.Payload],
    local: Endpoint,
    remote: Endpoint,
    now: float,
) -> None:
    """Handle a new IKE_SA_INIT request (retransmits were answered by the caller)."""

    def reply(ps: list[w.Payload], spi_r: int = 0) -> None:
        eng.send_plain(
            encode_plain(header.spi_i, spi_r, w.ExchangeType.IKE_SA_INIT, w.FLAG_RESPONSE, 0, ps),
            local,
            remote,
        )

    candidates = eng.candidates_for(local, remote)
    if not candidates:
        eng.count("no_connection")
        eng.log.info("%s:%d: IKE_SA_INIT from an address no connection accepts, ignored", *remote)
        return
    sa_p = w.payload(payloads, w.SecurityAssociation)
    ke = w.payload(payloads, w.KeyExchange)
    nonce = w.payload(payloads, w.Nonce)
    if sa_p is None or ke is None or nonce is None or not 16 <= len(nonce.data) <= 256:
        eng.count("invalid_syntax")
        reply([notify(w.NotifyType.INVALID_SYNTAX)])
        return
    if eng.cookies_required():
        got = w.find_notify(payloads, w.NotifyType.COOKIE)
        want = cookie_for(eng.cookie_secret, nonce.data, remote, header.spi_i)
        if got is None or not hmac.compare_digest(got.data, want):
            eng.count("cookie_sent")
            reply([notify(w.NotifyType.COOKIE, want)])
            return
    chosen = None
    conn = None
    for c in candidates:
        chosen = proposals.select(c.proposals, sa_p.proposals, w.ProtocolId.IKE, prefer_dh=ke.group)
        if chosen is not None and chosen.dh is not None and chosen.prf is not None:
            conn = c
            break
    if conn is None or chosen is None or chosen.dh is None:
        eng.count("no_proposal_chosen")
        eng.log.warning(
            "%s:%d: NO_PROPOSAL_CHOSEN: peer offered %s; we accept %s",
            remote[0],
            remote[1],
            proposals.describe_offer(sa_p.proposals),
            "; ".join(proposals.describe_configured(c.proposals) for c in candidates),
        )
        reply([notify(w.NotifyType.NO_PROPOSAL_CHOSEN)])
        return
    if ke.group != chosen.dh.id:
        eng.count("invalid_ke")
        eng.log.info(
            "%s:%d: KE group %s, asking for %s",
            remote[0],
            remote[1],
            _group_name(ke.group),
            chosen.dh.keyword,
        )
        reply([notify(w.NotifyType.INVALID_KE_PAYLOAD, chosen.dh.id.to_bytes(2, "big"))])
        return
    mine = KeyExchange.generate(chosen.dh.id, eng.rng)
    try:
        shared = mine.compute(ke.data)
    except InvalidPublicKey as exc:
        eng.count("invalid_ke_data")
        eng.log.warning("%s:%d: invalid KE payload: %s", remote[0], remote[1], exc)
        reply([notify(w.NotifyType.INVALID_SYNTAX)])
        return
    sa = eng.new_responder_sa(conn, candidates, header.spi_i, local, remote, now)
    sa.init_offer = sa_p.proposals
    sa.ni = nonce.data
    sa.nr = eng.rng.randbytes(NONCE_LEN)
    sa.dh_group = chosen.dh.id
    sa.init_request = data
    _detect_nat(sa, payloads, 0)
    sa.frag_supported = (
        conn.fragmentation
        and w.find_notify(payloads, w.NotifyType.IKEV2_FRAGMENTATION_SUPPORTED) is not None
    )
    sa.peer_hashes = pubkey.peer_hashes(payloads)
    setup_keys(sa, chosen, shared)
    out: list[w.Payload] = [
        w.SecurityAssociation((proposals.chosen_to_wire(chosen, w.ProtocolId.IKE, b""),)),
        w.KeyExchange(chosen.dh.id, mine.public),
        w.Nonce(sa.nr),
        *_nat_notifies(eng, sa, sa.spi_r),
    ]
    if sa.frag_supported:
        out.append(notify(w.NotifyType.IKEV2_FRAGMENTATION_SUPPORTED))
    if pubkey.uses_pubkey(candidates):
        out.append(pubkey.hash_notify())
        req = pubkey.responder_certreq(candidates)
        if req is not None:
            out.insert(3, req)  # CERTREQ follows Nr (RFC 7296 1.2)
    sa.init_response = encode_plain(
        sa.spi_i, sa.spi_r, w.ExchangeType.IKE_SA_INIT, w.FLAG_RESPONSE, 0, out
    )
    sa.set_state(IkeState.CONNECTING)
    sa.expected_msgid = 1
    sa.last_response = (0, [sa.init_response])
    eng.send_plain(sa.init_response, local, remote)
