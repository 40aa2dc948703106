"""Quick Mode (RFC 2409 5.5): a pair of ESP SAs over an ISAKMP SA, with optional PFS, the
subnets as client IDs, tunnel mode (UDP-encapsulated behind a NAT, RFC 3947) and lifetimes.

  I: HDR*, HASH(1), SA, Ni [, KE] [, IDci, IDcr]
  R: HDR*, HASH(2), SA, Nr [, KE] [, IDci, IDcr] [, N(RESPONDER-LIFETIME)]
  I: HDR*, HASH(3)
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ikeagent.config.model import ChildConfig
from ikeagent.crypto.dh import InvalidPublicKey, KeyExchange
from ikeagent.crypto.v1 import attributes as at
from ikeagent.crypto.v1 import keymat
from ikeagent.engine.ikev1 import informational, natt
from ikeagent.engine.ikev1.pairs import established, install
from ikeagent.engine.ikev1.proposals import (
    choose_esp,
    describe_esp,
    describe_esp_offer,
    esp_from,
    esp_offer,
    esp_sa_payload,
    esp_unsupported,
    pfs_group,
    phase2_life,
    same_esp,
)
from ikeagent.engine.ikev1.protect import (
    ProtectionError,
    after_hash,
    build,
    exchange_iv,
    open_message,
)
from ikeagent.engine.ikev1.sa import Exchange, V1Child, V1Sa
from ikeagent.engine.ikev1.selectors import BadClientId, from_id, host, to_id
from ikeagent.engine.ikev2.selectors import TsRange, from_config
from ikeagent.engine.ikev2.state import ChildState
from ikeagent.wire import v1 as w1

if TYPE_CHECKING:
    from ikeagent.engine.ikev1.engine import V1Engine

NONCE_LEN = 32
QM = w1.ExchangeType.QUICK_MODE
RETRY_AFTER_FAILURE = 30.0
# a new pair's first outbound packet waits this long (bounds) after HASH(3) went out
FIRST_SEND_MIN = 0.05
FIRST_SEND_MAX = 1.0


@dataclass(eq=False)
class QuickTask:
    cfg: ChildConfig
    rekey_of: V1Child | None = None
    spi_in: int = 0
    spi_out: int = 0
    ni: bytes = b""
    nr: bytes = b""
    ke: KeyExchange | None = None
    shared: bytes = b""
    local_ts: TsRange | None = None
    remote_ts: TsRange | None = None
    ids_sent: bool = True
    offered: list[at.EspTransform] = field(default_factory=list)
    chosen: at.EspTransform | None = None
    life: int = 0
    pending: V1Child | None = None  # responder: the pair installed before HASH(3)
    sent_at: float = 0.0  # initiator: when our first message left (first try)


def start(
    eng: V1Engine, sa: V1Sa, cfg: ChildConfig, now: float, *, rekey_of: V1Child | None = None
) -> None:
    """Initiate a Quick Mode for ``cfg`` (a new pair, or the replacement of ``rekey_of``)."""
    for ex in sa.exchanges.values():
        t = ex.task
        if ex.kind == "quick" and not ex.done and t is not None and t.cfg.name == cfg.name:
            return  # one negotiation per child at a time
    if not esp_offer(cfg, at.EncapsulationMode.TUNNEL):
        eng.log.error(
            "%s: CHILD_SA %s: no ESP proposal is usable with IKEv1: %s",
            sa.peer_label(),
            cfg.name,
            "; ".join(esp_unsupported(cfg)),
        )
        eng.count("child_failures")
        return
    if rekey_of is not None:
        if rekey_of.state is not ChildState.INSTALLED:
            return
        rekey_of.set_state(ChildState.REKEYING)
    task = QuickTask(cfg, rekey_of)
    if rekey_of is not None:
        task.local_ts, task.remote_ts = rekey_of.local_ts, rekey_of.remote_ts
    else:
        task.local_ts = from_config(cfg.local_ts)[0] if cfg.local_ts else host(sa.local[0])
        task.remote_ts = from_config(cfg.remote_ts)[0] if cfg.remote_ts else host(sa.remote[0])
        if len(cfg.local_ts) > 1 or len(cfg.remote_ts) > 1:
            eng.log.warning(
                "%s: IKEv1 negotiates one subnet per side: CHILD_SA %s uses %s === %s only",
                sa.peer_label(),
                cfg.name,
                task.local_ts,
                task.remote_ts,
            )
    task.spi_in = eng.core.new_spi_in()
    task.sent_at = now
    task.ni = eng.rand(NONCE_LEN)
    mode = natt.encap_mode(sa)
    offer = esp_offer(cfg, mode)
    task.offered = [t for ts in offer for t in ts]
    group = pfs_group(cfg)
    payloads: list[w1.Payload] = [esp_sa_payload(offer, task.spi_in), w1.Nonce(task.ni)]
    if group is not None:
        task.ke = KeyExchange.generate(group, eng.core.rng)
        payloads.append(w1.KeyExchange(task.ke.public))
    payloads += [to_id(task.local_ts), to_id(task.remote_ts)]
    mid = eng.new_message_id(sa)
    informational.remember(sa, mid)
    ex = Exchange("quick", mid, True, task=task)
    sa.exchanges[mid] = ex
    _, rest = w1.encode_payloads(payloads)
    assert sa.keys is not None
    h1 = keymat.qm_hash1(sa.hash_id, sa.keys.skeyid_a, mid, rest)
    data, ex.iv = build(sa, QM, mid, [w1.Hash(h1), *payloads], iv=exchange_iv(sa, ex))
    ex.step = 1
    eng.log.info(
        "%s: %s CHILD_SA %s with Quick Mode %08x",
        sa.peer_label(),
        "rekeying" if rekey_of else "establishing",
        cfg.name,
        mid,
    )
    eng.exchange_send(sa, ex, data, now, wait=True)


def receive(eng: V1Engine, sa: V1Sa, data: bytes, header: w1.Header, now: float) -> None:
    if not header.encrypted or sa.keys is None:
        eng.count("unprotected")
        return
    mid = header.message_id
    ex = sa.exchanges.get(mid)
    new = ex is None
    if new and mid in sa.seen_info:
        # a Quick Mode we finished and forgot (or an Informational's ID): a replay
        eng.count("replayed")
        return
    if ex is None:
        ex = Exchange("quick", mid, False)
    elif ex.done:
        eng.count("unexpected")
        return
    saved_iv = ex.iv
    try:
        opened = open_message(sa, header, data, exchange_iv(sa, ex))
    except ProtectionError as exc:
        ex.iv = saved_iv
        eng.count("undecryptable")
        eng.log.debug("%s: Quick Mode %08x dropped: %s", sa.peer_label(), mid, exc)
        return
    first = opened.payloads[0] if opened.payloads else None
    if not isinstance(first, w1.Hash):
        ex.iv = saved_iv
        eng.count("bad_hash")
        return
    assert sa.keys is not None
    h, a = sa.hash_id, sa.keys.skeyid_a
    if new:
        expected = keymat.qm_hash1(h, a, mid, after_hash(opened))
    elif ex.initiator and ex.step == 1:
        expected = keymat.qm_hash2(h, a, mid, ex.task.ni, after_hash(opened))
    elif not ex.initiator and ex.step == 2:
        expected = keymat.qm_hash3(h, a, mid, ex.task.ni, ex.task.nr)
    else:
        eng.count("unexpected")
        return
    if not hmac.compare_digest(first.data, expected):
        ex.iv = saved_iv
        eng.count("bad_hash")
        eng.log.warning("%s: Quick Mode %08x: HASH does not verify, dropped", sa.peer_label(), mid)
        return
    if opened.next_iv is not None:
        ex.iv = opened.next_iv
    ex.last_received = data
    eng.received(sa, now)
    if new:
        informational.remember(sa, mid)
        sa.exchanges[mid] = ex
        _respond(eng, sa, ex, opened.payloads, now)
    elif ex.initiator:
        _initiator_2(eng, sa, ex, opened.payloads, now)
    else:
        _responder_3(eng, sa, ex, now)


def _ids(payloads: list) -> list[w1.Identification]:
    return [p for p in payloads if isinstance(p, w1.Identification)]


def _responder_lifetime(payloads: list) -> int | None:
    for p in payloads:
        if (
            isinstance(p, w1.Notification)
            and int(p.notify_type) == w1.NotifyType.RESPONDER_LIFETIME
        ):
            try:
                attrs = w1.decode_attributes(p.data)
            except Exception:  # noqa: BLE001 - peer input
                return None
            life_type = None
            for attr in attrs:
                if attr.type == at.IpsecAttr.SA_LIFE_TYPE:
                    life_type = attr.int_value
                elif (
                    attr.type == at.IpsecAttr.SA_LIFE_DURATION and life_type == at.LifeType.SECONDS
                ):
                    return attr.int_value
    return None


def _initiator_2(eng: V1Engine, sa: V1Sa, ex: Exchange, payloads: list, now: float) -> None:
    task: QuickTask = ex.task
    sa_p = next((p for p in payloads if isinstance(p, w1.SecurityAssociation)), None)
    nonce = next((p for p in payloads if isinstance(p, w1.Nonce)), None)
    if (
        sa_p is None
        or nonce is None
        or len(sa_p.proposals) != 1
        or len(sa_p.proposals[0].transforms) != 1
        or len(sa_p.proposals[0].spi) != 4
    ):
        _abort(eng, sa, ex, "peer's Quick Mode answer lacks one SA transform or its nonce", now)
        return
    try:
        chosen = esp_from(sa_p.proposals[0].transforms[0])
    except ValueError as exc:
        _abort(eng, sa, ex, f"peer chose an unsupported ESP transform: {exc}", now)
        return
    if not any(same_esp(chosen, o) for o in task.offered):
        _abort(
            eng,
            sa,
            ex,
            f"peer chose an ESP transform we did not offer: {describe_esp(chosen)}",
            now,
        )
        return
    ids = _ids(payloads)
    if ids and (len(ids) != 2 or ids[0] != to_id(task.local_ts) or ids[1] != to_id(task.remote_ts)):
        _abort(eng, sa, ex, "peer answered with other client IDs than we proposed", now)
        return
    shared = b""
    if chosen.dh is not None:
        ke = next((p for p in payloads if isinstance(p, w1.KeyExchange)), None)
        if ke is None or task.ke is None or task.ke.group != chosen.dh.id:
            _abort(eng, sa, ex, "peer chose PFS without a matching KE payload", now)
            return
        try:
            shared = task.ke.compute(ke.data)
        except InvalidPublicKey as exc:
            _abort(eng, sa, ex, f"peer's PFS public value: {exc}", now)
            return
    task.spi_out = int.from_bytes(sa_p.proposals[0].spi, "big")
    task.nr = nonce.data
    task.shared = shared
    task.chosen = chosen
    life = phase2_life(task.cfg)
    for theirs in (chosen.life_seconds, _responder_lifetime(payloads)):
        if theirs:
            life = min(life, theirs)
    task.life = life
    assert sa.keys is not None
    h3 = keymat.qm_hash3(sa.hash_id, sa.keys.skeyid_a, ex.message_id, task.ni, task.nr)
    data, ex.iv = build(sa, QM, ex.message_id, [w1.Hash(h3)], iv=ex.iv)
    ex.step = 3
    eng.exchange_send(sa, ex, data, now, wait=False)
    eng.finish_exchange(sa, ex, now)
    # The peer installs its SAs when HASH(3) reaches it, and nothing tells us when that was
    # (charon sets no commit bit, RFC 2409 5.5). A replacement pair sends once the peer uses
    # it (the old pair carries on until then); a first pair after a settling delay of about
    # one more round trip, so what it sends first (a trap's held packets) is not dropped.
    old = task.rekey_of
    child = install(eng, sa, task, we_initiated=True, outbound_active=False, now=now)
    if old is None or old.state is ChildState.DESTROYED:
        rtt = max(now - task.sent_at, 0.0)
        child.activate_at = now + min(max(1.5 * rtt, FIRST_SEND_MIN), FIRST_SEND_MAX)
    established(eng, sa, task, child, we_initiated=True, now=now)


def _abort(eng: V1Engine, sa: V1Sa, ex: Exchange, reason: str, now: float) -> None:
    task: QuickTask = ex.task
    eng.log.error("%s: CHILD_SA %s failed: %s", sa.peer_label(), task.cfg.name, reason)
    eng.count("child_failures")
    eng.finish_exchange(sa, ex, now)
    eng.core.release_spi_in(task.spi_in)
    if task.rekey_of is not None and task.rekey_of.state is ChildState.REKEYING:
        task.rekey_of.set_state(ChildState.INSTALLED)
        task.rekey_of.rekey_at = now + RETRY_AFTER_FAILURE


def timed_out(eng: V1Engine, sa: V1Sa, ex: Exchange, now: float) -> None:
    if ex.initiator and ex.task is not None:
        _abort(eng, sa, ex, "peer did not answer the Quick Mode", now)
    else:
        eng.finish_exchange(sa, ex, now)
        pending = ex.task.pending if ex.task is not None else None
        if pending is not None and pending.state is ChildState.CREATING:
            eng.remove_child(sa, pending, "the Quick Mode was never confirmed", now)
        elif ex.task is not None:
            eng.core.release_spi_in(ex.task.spi_in)
        eng.log.warning(
            "%s: Quick Mode %08x: the initiator never confirmed (no HASH(3))",
            sa.peer_label(),
            ex.message_id,
        )


def peer_refused(eng: V1Engine, sa: V1Sa, notify: str, now: float) -> None:
    """An error notify from the peer while Quick Modes of ours are pending: they failed."""
    for ex in list(sa.exchanges.values()):
        if ex.kind == "quick" and ex.initiator and not ex.done and ex.task is not None:
            _abort(eng, sa, ex, f"peer refused the Quick Mode: {notify}", now)
            if ex.task.rekey_of is None:
                sa.child_retries.append((now + RETRY_AFTER_FAILURE, ex.task.cfg))


# ---- responder -----------------------------------------------------------------------------------


def _find_child(sa: V1Sa, theirs_local: TsRange, theirs_remote: TsRange) -> ChildConfig | None:
    """The child whose selectors contain what the initiator proposed (its local is our remote)."""
    conn = sa.conn
    if conn is None:
        return None
    for cfg in conn.children.values():
        ours_local = from_config(cfg.local_ts) if cfg.local_ts else (host(sa.local[0]),)
        ours_remote = from_config(cfg.remote_ts) if cfg.remote_ts else (host(sa.remote[0]),)
        if any(r.contains(theirs_remote) for r in ours_local) and any(
            r.contains(theirs_local) for r in ours_remote
        ):
            return cfg
    return None


def _respond(eng: V1Engine, sa: V1Sa, ex: Exchange, payloads: list, now: float) -> None:
    sa_p = next((p for p in payloads if isinstance(p, w1.SecurityAssociation)), None)
    nonce = next((p for p in payloads if isinstance(p, w1.Nonce)), None)
    if sa_p is None or nonce is None or not 8 <= len(nonce.data) <= 256:
        _refuse(eng, sa, ex, w1.NotifyType.PAYLOAD_MALFORMED, "no SA or nonce", now)
        return
    ids = _ids(payloads)
    try:
        if ids:
            if len(ids) != 2:
                raise BadClientId(f"{len(ids)} ID payloads")
            their_local, their_remote = from_id(ids[0]), from_id(ids[1])
        else:
            their_local, their_remote = host(sa.remote[0]), host(sa.local[0])
    except BadClientId as exc:
        _refuse(eng, sa, ex, w1.NotifyType.INVALID_ID_INFORMATION, str(exc), now)
        return
    cfg = _find_child(sa, their_local, their_remote)
    if cfg is None:
        _refuse(
            eng,
            sa,
            ex,
            w1.NotifyType.INVALID_ID_INFORMATION,
            f"no child accepts {their_remote} === {their_local}",
            now,
        )
        return
    choice = choose_esp(sa_p, cfg)
    if choice is None:
        _refuse(
            eng,
            sa,
            ex,
            w1.NotifyType.NO_PROPOSAL_CHOSEN,
            f"peer offered {describe_esp_offer(sa_p)}; CHILD_SA {cfg.name} accepts "
            + ", ".join(str(p) for p in cfg.esp_proposals),
            now,
        )
        return
    task = QuickTask(cfg, None)
    task.local_ts, task.remote_ts = their_remote, their_local
    task.ni = nonce.data
    task.spi_out = choice.spi
    task.spi_in = eng.core.new_spi_in()
    task.nr = eng.rand(NONCE_LEN)
    task.chosen = choice.transform
    ours_life = phase2_life(cfg)
    theirs_life = choice.transform.life_seconds
    task.life = min(ours_life, theirs_life) if theirs_life else ours_life
    out: list[w1.Payload] = []
    proposal = w1.Proposal(
        choice.proposal.number,
        choice.proposal.protocol,
        task.spi_in.to_bytes(4, "big"),
        choice.proposal.transforms,
    )
    out.append(w1.SecurityAssociation((proposal,), sa_p.doi, sa_p.situation))
    out.append(w1.Nonce(task.nr))
    if choice.transform.dh is not None:
        ke = next((p for p in payloads if isinstance(p, w1.KeyExchange)), None)
        if ke is None:
            eng.core.release_spi_in(task.spi_in)
            _refuse(eng, sa, ex, w1.NotifyType.INVALID_KEY_INFORMATION, "PFS without KE", now)
            return
        mine = KeyExchange.generate(choice.transform.dh.id, eng.core.rng)
        try:
            task.shared = mine.compute(ke.data)
        except InvalidPublicKey as exc:
            eng.core.release_spi_in(task.spi_in)
            _refuse(eng, sa, ex, w1.NotifyType.INVALID_KEY_INFORMATION, str(exc), now)
            return
        out.append(w1.KeyExchange(mine.public))
    if ids:
        out += ids
    if theirs_life and theirs_life > ours_life:
        # RFC 2407 4.6.3.1: tell the initiator the lifetime we will use
        out.append(
            w1.Notification(
                w1.NotifyType.RESPONDER_LIFETIME,
                w1.ProtocolId.IPSEC_ESP,
                task.spi_in.to_bytes(4, "big"),
                w1.Attribute(at.IpsecAttr.SA_LIFE_TYPE, int(at.LifeType.SECONDS)).to_bytes()
                + w1.Attribute(at.IpsecAttr.SA_LIFE_DURATION, ours_life).to_bytes(),
            )
        )
    ex.task = task
    _, rest = w1.encode_payloads(out)
    assert sa.keys is not None
    h2 = keymat.qm_hash2(sa.hash_id, sa.keys.skeyid_a, ex.message_id, task.ni, rest)
    data, ex.iv = build(sa, QM, ex.message_id, [w1.Hash(h2), *out], iv=ex.iv)
    ex.step = 2
    # a Quick Mode for selectors a pair of ours already covers replaces that pair (rekey)
    task.rekey_of = next(
        (
            c
            for c in sa.children
            if c.state is ChildState.INSTALLED
            and c.config.name == task.cfg.name
            and c.local_ts == task.local_ts
            and c.remote_ts == task.remote_ts
        ),
        None,
    )
    # The initiator has the keys as soon as it reads our answer and may send at once: the
    # inbound SA is ready before that. Our outbound switches to the new pair when the first
    # packet arrives on it (or the old pair goes); the pair counts as up with HASH(3).
    task.pending = install(
        eng, sa, task, we_initiated=False, outbound_active=task.rekey_of is None, now=now
    )
    # resend until HASH(3) arrives
    eng.exchange_send(sa, ex, data, now, wait=True)


def _refuse(eng: V1Engine, sa: V1Sa, ex: Exchange, notify: int, reason: str, now: float) -> None:
    eng.log.warning(
        "%s: Quick Mode %08x refused: %s: %s",
        sa.peer_label(),
        ex.message_id,
        w1.NotifyType(notify).name,
        reason,
    )
    eng.count("quick_mode_refused")
    sa.exchanges[ex.message_id] = ex
    eng.finish_exchange(sa, ex, now)
    informational.send_notify(eng, sa, notify)


def _responder_3(eng: V1Engine, sa: V1Sa, ex: Exchange, now: float) -> None:
    task: QuickTask = ex.task
    eng.finish_exchange(sa, ex, now)
    child = task.pending
    if child is None or child.state is not ChildState.CREATING:
        return
    established(eng, sa, task, child, we_initiated=False, now=now)
