"""CREATE_CHILD_SA for Child SAs: new pairs, rekeying (RFC 7296 1.3.1-1.3.3) and collisions
(2.8.1), and the Child SA part of IKE_AUTH."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ikeagent.config.model import ChildConfig
from ikeagent.crypto.dh import InvalidPublicKey, KeyExchange
from ikeagent.engine.ikev2 import children, proposals, selectors
from ikeagent.engine.ikev2.sa import ChildEntry, IkeSa
from ikeagent.engine.ikev2.state import ChildState
from ikeagent.wire import v2 as w

if TYPE_CHECKING:
    from ikeagent.engine.core import Engine

NONCE_LEN = 32


def notify(t: w.NotifyType, data: bytes = b"", protocol: int = 0, spi: bytes = b"") -> w.Notify:
    return w.Notify(t, protocol, spi, data)


def error_notify(payloads: list[w.Payload]) -> w.Notify | None:
    return next(
        (p for p in payloads if isinstance(p, w.Notify) and int(p.notify_type) < 16384), None
    )


def answer_ke(
    eng: Engine, payloads: list[w.Payload], group: int
) -> tuple[bytes, w.KeyExchange] | list[w.Payload]:
    """The responder's half of a CREATE_CHILD_SA key exchange in ``group``: the shared secret
    and our KE payload, or the notify to answer with instead."""
    ke = w.payload(payloads, w.KeyExchange)
    if ke is None or ke.group != group:
        return [notify(w.NotifyType.INVALID_KE_PAYLOAD, group.to_bytes(2, "big"))]
    mine = KeyExchange.generate(group, eng.rng)
    try:
        shared = mine.compute(ke.data)
    except InvalidPublicKey:
        return [notify(w.NotifyType.INVALID_SYNTAX)]
    return shared, w.KeyExchange(group, mine.public)


def _pfs_group(cfg: ChildConfig) -> int | None:
    for p in cfg.esp_proposals:
        if p.dh:
            return p.dh[0].id
    return None


class CreateChildTask:
    """Initiator of CREATE_CHILD_SA for a new Child SA or a rekey of ``rekey_of``."""

    exchange = w.ExchangeType.CREATE_CHILD_SA

    def __init__(
        self,
        cfg: ChildConfig,
        rekey_of: ChildEntry | None = None,
        *,
        packet: tuple[str, str] | None = None,
    ) -> None:
        self.cfg = cfg
        self.rekey_of = rekey_of
        self.packet = packet  # (source, destination) of the packet that asked for a new child
        self.spi_in = 0
        self.ni = b""
        self.ke: KeyExchange | None = None
        self.group: int | None = _pfs_group(cfg)
        self.ke_retries = 0
        self.local_ts: tuple[selectors.TsRange, ...] = ()
        self.remote_ts: tuple[selectors.TsRange, ...] = ()

    def describe(self) -> str:
        return f"{'rekey' if self.rekey_of else 'create'} CHILD_SA {self.cfg.name}"

    def build(self, eng: Engine, sa: IkeSa, now: float) -> list[w.Payload] | None:
        old = self.rekey_of
        if old is not None:
            if old.state not in (ChildState.INSTALLED, ChildState.REKEYING):
                return None  # deleted or rekeyed meanwhile
            old.set_state(ChildState.REKEYING)
            self.local_ts, self.remote_ts = old.local_ts, old.remote_ts
        else:
            self.local_ts, self.remote_ts = selectors.with_packet(
                selectors.from_config(self.cfg.local_ts),
                selectors.from_config(self.cfg.remote_ts),
                self.packet,
            )
        if not self.spi_in:
            self.spi_in = eng.new_spi_in()
        self.ni = eng.rng.randbytes(NONCE_LEN)
        payloads: list[w.Payload] = []
        if old is not None:
            payloads.append(
                notify(
                    w.NotifyType.REKEY_SA,
                    protocol=w.ProtocolId.ESP,
                    spi=old.spi_in.to_bytes(4, "big"),
                )
            )
        payloads.append(
            w.SecurityAssociation(
                proposals.to_wire(
                    self.cfg.esp_proposals,
                    w.ProtocolId.ESP,
                    self.spi_in.to_bytes(4, "big"),
                    dh_first=self.group,
                )
            )
        )
        payloads.append(w.Nonce(self.ni))
        if self.group is not None:
            self.ke = KeyExchange.generate(self.group, eng.rng)
            payloads.append(w.KeyExchange(self.group, self.ke.public))
        payloads.append(w.TrafficSelectorsInitiator(tuple(t.to_wire() for t in self.local_ts)))
        payloads.append(w.TrafficSelectorsResponder(tuple(t.to_wire() for t in self.remote_ts)))
        return payloads

    def _abort(self, eng: Engine, sa: IkeSa, reason: str) -> None:
        eng.release_spi_in(self.spi_in)
        if self.rekey_of is not None and self.rekey_of.state is ChildState.REKEYING:
            self.rekey_of.set_state(ChildState.INSTALLED)
            # try again later rather than letting the SA expire silently
            self.rekey_of.rekey_at = eng.now + 10.0 + eng.rng.random() * 10.0
        eng.log.warning("%s: %s failed: %s", sa.peer_label(), self.describe(), reason)

    def on_response(self, eng: Engine, sa: IkeSa, payloads: list[w.Payload], now: float) -> None:
        err = error_notify(payloads)
        if err is not None:
            t = w.NotifyType(int(err.notify_type))
            if t is w.NotifyType.INVALID_KE_PAYLOAD and len(err.data) >= 2 and self.ke_retries < 2:
                group = int.from_bytes(err.data[:2], "big")
                if any(d.id == group for p in self.cfg.esp_proposals for d in p.dh):
                    self.ke_retries += 1
                    self.group = group
                    eng.log.info("%s: peer asks for DH group %d, retrying", sa.peer_label(), group)
                    eng.queue_task(sa, self, now, front=True)
                    return
            if t is w.NotifyType.TEMPORARY_FAILURE:
                self._abort(eng, sa, "peer answered TEMPORARY_FAILURE (retry later)")
                if self.rekey_of is None:
                    eng.schedule_retry(sa, self.cfg, now + 2.0 + eng.rng.random() * 3.0)
                return
            self._abort(eng, sa, f"peer answered {t.name}")
            return
        sa_p = w.payload(payloads, w.SecurityAssociation)
        nonce = w.payload(payloads, w.Nonce)
        tsi = w.payload(payloads, w.TrafficSelectorsInitiator)
        tsr = w.payload(payloads, w.TrafficSelectorsResponder)
        if sa_p is None or nonce is None or tsi is None or tsr is None:
            self._abort(eng, sa, "response lacks SA, Nonce or TS payloads")
            return
        chosen = proposals.accept_response(self.cfg.esp_proposals, sa_p.proposals, w.ProtocolId.ESP)
        if chosen is None or len(chosen.spi) != 4:
            self._abort(eng, sa, "peer chose a proposal we did not offer")
            return
        if not 16 <= len(nonce.data) <= 256:
            self._abort(eng, sa, "bad nonce length")
            return
        shared = None
        if chosen.dh is not None:
            ke = w.payload(payloads, w.KeyExchange)
            if (
                ke is None
                or self.ke is None
                or ke.group != chosen.dh.id
                or self.ke.group != ke.group
            ):
                self._abort(eng, sa, "PFS key exchange missing or of the wrong group")
                return
            try:
                shared = self.ke.compute(ke.data)
            except InvalidPublicKey as exc:
                self._abort(eng, sa, f"invalid KE: {exc}")
                return
        l_ts = selectors.from_wire(tsi.selectors)
        r_ts = selectors.from_wire(tsr.selectors)
        if not (
            selectors.is_subset(l_ts, self.local_ts) and selectors.is_subset(r_ts, self.remote_ts)
        ):
            self._abort(eng, sa, "peer's traffic selectors are not within ours")
            return
        old = self.rekey_of
        entry = children.install(
            eng,
            sa,
            self.cfg,
            chosen,
            we_initiated=True,
            spi_in=self.spi_in,
            spi_out=int.from_bytes(chosen.spi, "big"),
            ni=self.ni,
            nr=nonce.data,
            shared=shared,
            local_ts=l_ts,
            remote_ts=r_ts,
            reqid=old.reqid if old else None,
            lineage=old.lineage if old else None,
            now=now,
            # a pair that lost a rekey collision is deleted at once: never send on it, or
            # what we send between the peer's removing it and ours is lost
            outbound_active=old is None
            or not eng.loses_rekey_collision(old, (self.ni, nonce.data)),
        )
        if old is None:
            return
        eng.finish_child_rekey(sa, old, entry, now)


def respond(
    eng: Engine,
    sa: IkeSa,
    payloads: list[w.Payload],
    now: float,
    *,
    in_auth: bool,
) -> list[w.Payload]:
    """The responder's Child SA negotiation, for IKE_AUTH and CREATE_CHILD_SA requests."""
    conn = sa.conn
    assert conn is not None
    sa_p = w.payload(payloads, w.SecurityAssociation)
    tsi = w.payload(payloads, w.TrafficSelectorsInitiator)
    tsr = w.payload(payloads, w.TrafficSelectorsResponder)
    if sa_p is None or tsi is None or tsr is None:
        if in_auth:
            return []  # childless IKE_AUTH
        return [notify(w.NotifyType.INVALID_SYNTAX)]
    rekey = next(
        (p for p in payloads if isinstance(p, w.Notify) and p.notify_type == w.NotifyType.REKEY_SA),
        None,
    )
    old: ChildEntry | None = None
    if rekey is not None:
        old = sa.child_by_spi_out(int.from_bytes(rekey.spi, "big")) if len(rekey.spi) == 4 else None
        if old is None or old.state is ChildState.DESTROYED:
            return [
                notify(w.NotifyType.CHILD_SA_NOT_FOUND, protocol=w.ProtocolId.ESP, spi=rekey.spi)
            ]
        if old.state in (ChildState.DELETING, ChildState.REKEYED):
            # RFC 7296 2.25: we are closing it; the peer should retry (or let it go)
            return [notify(w.NotifyType.TEMPORARY_FAILURE)]
    their_i = selectors.from_wire(tsi.selectors)
    their_r = selectors.from_wire(tsr.selectors)
    candidates = [old.config] if old is not None else list(conn.children.values())
    cfg = None
    local_ts: tuple[selectors.TsRange, ...] = ()
    remote_ts: tuple[selectors.TsRange, ...] = ()
    for c in candidates:
        ours_l = selectors.from_config(c.local_ts)
        ours_r = selectors.from_config(c.remote_ts)
        local_ts = selectors.narrow(ours_l, their_r)
        remote_ts = selectors.narrow(ours_r, their_i)
        if local_ts and remote_ts:
            cfg = c
            break
    if cfg is None:
        eng.log.warning(
            "%s: traffic selectors %s === %s unacceptable",
            sa.peer_label(),
            ", ".join(map(str, their_r)),
            ", ".join(map(str, their_i)),
        )
        return [notify(w.NotifyType.TS_UNACCEPTABLE)]
    ke_in = w.payload(payloads, w.KeyExchange)
    chosen = proposals.select(
        cfg.esp_proposals,
        sa_p.proposals,
        w.ProtocolId.ESP,
        ignore_dh=in_auth,
        prefer_dh=ke_in.group if ke_in is not None else None,
    )
    if chosen is None or len(chosen.spi) != 4:
        eng.log.warning(
            "%s: no acceptable ESP proposal for %s: peer offered %s, we accept %s",
            sa.peer_label(),
            cfg.name,
            proposals.describe_offer(sa_p.proposals),
            proposals.describe_configured(cfg.esp_proposals),
        )
        return [notify(w.NotifyType.NO_PROPOSAL_CHOSEN)]
    ni = sa.ni if in_auth else b""
    nr = sa.nr if in_auth else eng.rng.randbytes(NONCE_LEN)
    out: list[w.Payload] = []
    shared = None
    ke_out = None
    if not in_auth:
        nonce = w.payload(payloads, w.Nonce)
        if nonce is None or not 16 <= len(nonce.data) <= 256:
            return [notify(w.NotifyType.INVALID_SYNTAX)]
        ni = nonce.data
        if chosen.dh is not None:
            answer = answer_ke(eng, payloads, chosen.dh.id)
            if isinstance(answer, list):
                return answer
            shared, ke_out = answer
    spi_in = eng.new_spi_in()
    entry = children.install(
        eng,
        sa,
        cfg,
        chosen,
        we_initiated=False,
        spi_in=spi_in,
        spi_out=int.from_bytes(chosen.spi, "big"),
        ni=ni,
        nr=nr,
        shared=shared,
        local_ts=local_ts,
        remote_ts=remote_ts,
        reqid=old.reqid if old else None,
        lineage=old.lineage if old else None,
        now=now,
        # a rekey initiator installs its inbound SA only when our answer reaches it: we keep
        # sending on the old pair until the peer sends on the new one (or deletes the old)
        outbound_active=old is None,
    )
    if old is not None:
        eng.peer_rekeyed_child(sa, old, entry, now)
    out.append(
        w.SecurityAssociation(
            (proposals.chosen_to_wire(chosen, w.ProtocolId.ESP, spi_in.to_bytes(4, "big")),)
        )
    )
    if not in_auth:
        out.append(w.Nonce(nr))
        if ke_out is not None:
            out.append(ke_out)
    out.append(w.TrafficSelectorsInitiator(tuple(t.to_wire() for t in remote_ts)))
    out.append(w.TrafficSelectorsResponder(tuple(t.to_wire() for t in local_ts)))
    return out
