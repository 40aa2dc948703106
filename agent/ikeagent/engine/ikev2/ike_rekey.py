"""Rekeying the IKE SA with CREATE_CHILD_SA (RFC 7296 1.3.2, 2.18) and its collisions (2.8.2)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ikeagent.crypto.dh import InvalidPublicKey, KeyExchange
from ikeagent.engine.ikev2 import proposals
from ikeagent.engine.ikev2.child_create import CreateChildTask, answer_ke, error_notify, notify
from ikeagent.engine.ikev2.ike_init import NONCE_LEN, setup_keys
from ikeagent.engine.ikev2.informational import DeleteChildTask
from ikeagent.engine.ikev2.sa import IkeSa
from ikeagent.engine.ikev2.state import ChildState, IkeState
from ikeagent.wire import v2 as w

if TYPE_CHECKING:
    from ikeagent.engine.core import Engine


def _new_sa_from(
    eng: Engine, old: IkeSa, *, we_initiated: bool, spi_i: int, spi_r: int, now: float
) -> IkeSa:
    sa = IkeSa(
        uid=eng.new_uid(),
        conn=old.conn,
        initiator=we_initiated,
        spi_i=spi_i,
        spi_r=spi_r,
        local=old.local,
        remote=old.remote,
        created_at=now,
    )
    sa.local_id, sa.remote_id = old.local_id, old.remote_id
    sa.nat_local, sa.nat_remote, sa.force_encap = old.nat_local, old.nat_remote, old.force_encap
    sa.frag_supported = old.frag_supported
    sa.candidates = old.candidates
    sa.peer_hashes, sa.peer_cert = old.peer_hashes, old.peer_cert
    sa.local_auth, sa.remote_auth = old.local_auth, old.remote_auth
    return sa


class IkeRekeyTask:
    exchange = w.ExchangeType.CREATE_CHILD_SA

    def __init__(self) -> None:
        self.spi_i = 0
        self.ni = b""
        self.ke: KeyExchange | None = None
        self.group: int | None = None
        self.retries = 0

    def describe(self) -> str:
        return "rekey IKE_SA"

    def build(self, eng: Engine, sa: IkeSa, now: float) -> list[w.Payload] | None:
        if sa.state is not IkeState.ESTABLISHED:
            return None
        conn = sa.conn
        assert conn is not None
        sa.set_state(IkeState.REKEYING)
        self.spi_i = eng.new_ike_spi()
        self.ni = eng.rng.randbytes(NONCE_LEN)
        self.group = self.group or sa.dh_group or conn.proposals[0].dh[0].id
        self.ke = KeyExchange.generate(self.group, eng.rng)
        return [
            w.SecurityAssociation(
                proposals.to_wire(
                    conn.proposals,
                    w.ProtocolId.IKE,
                    self.spi_i.to_bytes(8, "big"),
                    dh_first=self.group,
                )
            ),
            w.Nonce(self.ni),
            w.KeyExchange(self.group, self.ke.public),
        ]

    def _abort(self, eng: Engine, sa: IkeSa, reason: str, now: float) -> None:
        eng.forget_ike_spi(self.spi_i)
        theirs = sa.rekeyed_by_peer
        if theirs is not None and theirs.state is not IkeState.DESTROYED:
            # ours failed but the peer's rekey succeeded: its SA carries on
            eng.peer_rekey_wins(sa, theirs, now)
        elif sa.state is IkeState.REKEYING:
            sa.set_state(IkeState.ESTABLISHED)
            sa.rekey_at = now + 10.0 + eng.rng.random() * 10.0
        eng.log.warning("%s: IKE_SA rekey failed: %s", sa.peer_label(), reason)

    def on_timeout(self, eng: Engine, sa: IkeSa, now: float) -> None:
        if sa.peer_deleted:
            eng.destroy_ike(sa, "deleted by peer after a rekey collision", now)
        else:
            eng.peer_dead(sa, "peer did not answer the IKE_SA rekey", now)

    def on_response(self, eng: Engine, sa: IkeSa, payloads: list[w.Payload], now: float) -> None:
        conn = sa.conn
        assert conn is not None
        err = error_notify(payloads)
        if err is not None:
            t = w.NotifyType(int(err.notify_type))
            if t is w.NotifyType.INVALID_KE_PAYLOAD and len(err.data) >= 2 and self.retries < 2:
                group = int.from_bytes(err.data[:2], "big")
                if any(d.id == group for p in conn.proposals for d in p.dh):
                    self.retries += 1
                    self.group = group
                    eng.forget_ike_spi(self.spi_i)
                    sa.set_state(IkeState.ESTABLISHED)
                    eng.queue_task(sa, self, now, front=True)
                    return
            self._abort(eng, sa, f"peer answered {t.name}", now)
            return
        sa_p = w.payload(payloads, w.SecurityAssociation)
        nonce = w.payload(payloads, w.Nonce)
        ke = w.payload(payloads, w.KeyExchange)
        if sa_p is None or nonce is None or ke is None or self.ke is None:
            self._abort(eng, sa, "response lacks SA, Nonce or KE", now)
            return
        chosen = proposals.accept_response(conn.proposals, sa_p.proposals, w.ProtocolId.IKE)
        if (
            chosen is None
            or chosen.dh is None
            or chosen.dh.id != self.ke.group
            or ke.group != self.ke.group
            or len(chosen.spi) != 8
        ):
            self._abort(eng, sa, "peer's choice is not within our offer", now)
            return
        if not 16 <= len(nonce.data) <= 256:
            self._abort(eng, sa, "bad nonce length", now)
            return
        try:
            shared = self.ke.compute(ke.data)
        except InvalidPublicKey as exc:
            self._abort(eng, sa, f"invalid KE: {exc}", now)
            return
        new = _new_sa_from(
            eng,
            sa,
            we_initiated=True,
            spi_i=self.spi_i,
            spi_r=int.from_bytes(chosen.spi, "big"),
            now=now,
        )
        new.ni, new.nr, new.dh_group = self.ni, nonce.data, chosen.dh.id
        setup_keys(new, chosen, shared, old=sa)
        eng.finish_ike_rekey(sa, new, now)


def respond(
    eng: Engine, sa: IkeSa, payloads: list[w.Payload], sa_p: w.SecurityAssociation, now: float
) -> list[w.Payload]:
    conn = sa.conn
    assert conn is not None
    if sa.state not in (IkeState.ESTABLISHED, IkeState.REKEYING):
        return [notify(w.NotifyType.TEMPORARY_FAILURE)]
    busy = sa.outstanding is not None and isinstance(
        sa.outstanding.task, CreateChildTask | DeleteChildTask
    )
    if busy or any(
        c.state in (ChildState.REKEYING, ChildState.DELETING, ChildState.CREATING)
        for c in sa.children
    ):
        # a child exchange of ours is in flight: ask the peer to retry (as charon does)
        return [notify(w.NotifyType.TEMPORARY_FAILURE)]
    chosen = proposals.select(conn.proposals, sa_p.proposals, w.ProtocolId.IKE)
    if chosen is None or chosen.dh is None or chosen.prf is None or len(chosen.spi) != 8:
        eng.log.warning(
            "%s: IKE rekey: NO_PROPOSAL_CHOSEN: peer offered %s",
            sa.peer_label(),
            proposals.describe_offer(sa_p.proposals),
        )
        return [notify(w.NotifyType.NO_PROPOSAL_CHOSEN)]
    nonce = w.payload(payloads, w.Nonce)
    if nonce is None or not 16 <= len(nonce.data) <= 256:
        return [notify(w.NotifyType.INVALID_SYNTAX)]
    answer = answer_ke(eng, payloads, chosen.dh.id)
    if isinstance(answer, list):
        return answer
    shared, ke_out = answer
    spi_r = eng.new_ike_spi()
    new = _new_sa_from(
        eng, sa, we_initiated=False, spi_i=int.from_bytes(chosen.spi, "big"), spi_r=spi_r, now=now
    )
    new.ni, new.nr, new.dh_group = nonce.data, eng.rng.randbytes(NONCE_LEN), chosen.dh.id
    setup_keys(new, chosen, shared, old=sa)
    eng.peer_rekeyed_ike(sa, new, now)
    return [
        w.SecurityAssociation(
            (proposals.chosen_to_wire(chosen, w.ProtocolId.IKE, spi_r.to_bytes(8, "big")),)
        ),
        w.Nonce(new.nr),
        ke_out,
    ]
