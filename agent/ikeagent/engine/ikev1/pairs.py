"""The pair of ESP SAs a Quick Mode agreed on: its KEYMAT (RFC 2409 5.5), its lifetimes and
its hand-over to the data plane, replacing an older pair make-before-break."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ikeagent.crypto import suites
from ikeagent.crypto.v1 import attributes as at
from ikeagent.crypto.v1 import keymat
from ikeagent.dataplane.base import ChildSa, SaKeys
from ikeagent.engine.events import ActivateOutbound, ChildUp, InstallChild
from ikeagent.engine.ikev1.proposals import describe_esp
from ikeagent.engine.ikev1.sa import V1Child, V1Sa
from ikeagent.engine.ikev2.children import volume_lifetime
from ikeagent.engine.ikev2.selectors import to_config
from ikeagent.engine.ikev2.state import ChildState
from ikeagent.wire import v1 as w1

if TYPE_CHECKING:
    from ikeagent.config.model import ChildConfig
    from ikeagent.engine.ikev1.engine import V1Engine
    from ikeagent.engine.ikev1.quick_mode import QuickTask


def _key_lengths(t: at.EspTransform) -> tuple[int, int]:
    encr = suites.encr_key_len(t.encr.id, t.encr.key_bits)
    integ = suites.integ_info(t.integ.id).key_len if t.integ is not None else 0
    return encr, integ


def _keys(sa: V1Sa, task: QuickTask, spi: int) -> tuple[bytes, bytes]:
    """KEYMAT for the SA whose SPI is ``spi`` (RFC 2409 5.5): encryption key, then integrity."""
    assert sa.keys is not None and task.chosen is not None
    e, i = _key_lengths(task.chosen)
    ni, nr = (task.ni, task.nr)
    material = keymat.keymat(
        sa.hash_id,
        sa.keys.skeyid_d,
        w1.ProtocolId.IPSEC_ESP,
        spi,
        ni,
        nr,
        e + i,
        task.shared,
    )
    return material[:e], material[e:]


def _deadlines(eng: V1Engine, cfg: ChildConfig, life: int, now: float, initiator: bool):
    if cfg.rekey_time <= 0 and not life:
        return None, None
    expire = now + life if life else None
    rekey = cfg.rekey_time if cfg.rekey_time > 0 else life * 0.9
    if life and rekey >= life:
        rekey = life * 0.9
    margin = (life - rekey) if life else rekey * 0.1
    rand = cfg.rand_time if cfg.rand_time > 0 else margin
    jitter = eng.core.rng.random() * min(rand, rekey * 0.5)
    if not initiator:
        # the responder of the Quick Mode waits a little longer: the initiator rekeys first
        jitter = -min(margin * 0.5, rekey * 0.05) + jitter * 0.1
    return now + rekey - jitter, expire


def install(
    eng: V1Engine,
    sa: V1Sa,
    task: QuickTask,
    *,
    we_initiated: bool,
    outbound_active: bool,
    now: float,
) -> V1Child:
    """Derive the pair's keys and hand it to the data plane (state CREATING)."""
    t = task.chosen
    assert t is not None and task.local_ts is not None and task.remote_ts is not None
    cfg = task.cfg
    in_e, in_a = _keys(sa, task, task.spi_in)
    out_e, out_a = _keys(sa, task, task.spi_out)
    old = task.rekey_of
    if old is not None and old.state is not ChildState.DESTROYED:
        reqid, lineage = old.reqid, old.lineage
    else:
        reqid = eng.core.policy_reqid(
            ("v1", sa.name, cfg.name, (task.local_ts,), (task.remote_ts,), sa.remote[0])
        )
        lineage = eng.core.lineage_for(reqid)
    child = V1Child(
        config=cfg,
        reqid=reqid,
        spi_in=task.spi_in,
        spi_out=task.spi_out,
        esp=t,
        local_ts=task.local_ts,
        remote_ts=task.remote_ts,
        encap=sa.encap,
        installed_at=now,
        lineage=lineage,
        state=ChildState.CREATING,
    )
    integ_id = t.integ.id if t.integ is not None else None
    lifetime = volume_lifetime(cfg)
    child_sa = ChildSa(
        reqid=reqid,
        name=cfg.name,
        local_addr=sa.local[0],
        remote_addr=sa.remote[0],
        inbound=SaKeys(task.spi_in, t.encr.id, in_e, integ_id, in_a, t.esn),
        outbound=SaKeys(task.spi_out, t.encr.id, out_e, integ_id, out_a, t.esn),
        local_ts=to_config((task.local_ts,)),
        remote_ts=to_config((task.remote_ts,)),
        encap=(sa.local[1], sa.remote[1]) if sa.encap else None,
        replay_window=cfg.replay_window,
        lifetime=lifetime,
        outbound_active=outbound_active,
    )
    sa.children.append(child)
    eng.core.emit(InstallChild(child_sa))
    return child


def established(
    eng: V1Engine, sa: V1Sa, task: QuickTask, child: V1Child, *, we_initiated: bool, now: float
) -> None:
    t = task.chosen
    assert t is not None
    cfg = task.cfg
    child.set_state(ChildState.INSTALLED)
    child.installed_at = now
    child.rekey_at, child.expire_at = _deadlines(eng, cfg, task.life, now, we_initiated)
    eng.core.ondemand.arm_idle_check(sa, child, now)
    eng.core.emit(ChildUp(cfg.name, sa.name, child.reqid))
    eng.log.info(
        "%s: CHILD_SA %s{%d} established with SPIs %08x_i %08x_o, %s, TS %s === %s",
        sa.peer_label(),
        cfg.name,
        child.reqid,
        task.spi_in,
        task.spi_out,
        describe_esp(t),
        task.local_ts,
        task.remote_ts,
    )
    old = task.rekey_of
    if old is not None and old.state is not ChildState.DESTROYED:
        if old.state is not ChildState.REKEYED:
            old.set_state(ChildState.REKEYED)
        old.rekey_at = None
        if we_initiated:
            # make-before-break: the old pair lingers for packets in flight, then we delete it
            old.delete_at = now + 2.0
        else:
            # HASH(3) says the initiator has installed the new pair (it does so before sending
            # it): send on it at once, since it may delete the old pair right away (charon
            # does with delete_rekeyed); the old pair still receives until its Delete
            eng.core.emit(ActivateOutbound(child.reqid, child.spi_in, child.spi_out))
            old.delete_at = now + 30.0  # the initiator deletes it; if it never does, we do
