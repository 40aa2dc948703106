"""Child SA key derivation and the hand-over of a negotiated pair to the data plane."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from ikeagent.config.model import ChildConfig
from ikeagent.crypto.keymat import derive_child_keys
from ikeagent.dataplane.base import ChildSa, Lifetime, SaKeys
from ikeagent.engine.events import ChildUp, InstallChild
from ikeagent.engine.ikev2.proposals import Chosen
from ikeagent.engine.ikev2.sa import ChildEntry, IkeSa
from ikeagent.engine.ikev2.selectors import TsRange, covering, to_config

if TYPE_CHECKING:
    from ikeagent.engine.core import Engine


def rekey_deadlines(eng: Engine, cfg: ChildConfig, now: float) -> tuple[float | None, float | None]:
    """(rekey_at, expire_at) with jitter, strongSwan-style: life = life_time or 1.1 * rekey."""
    if cfg.rekey_time <= 0:
        life = cfg.life_time
        return None, (now + life if life > 0 else None)
    life = cfg.life_time if cfg.life_time > 0 else cfg.rekey_time * 1.1
    rand = cfg.rand_time if cfg.rand_time > 0 else max(life - cfg.rekey_time, 0.0)
    jitter = eng.rng.random() * min(rand, cfg.rekey_time * 0.5)
    return now + cfg.rekey_time - jitter, now + life


def volume_lifetime(cfg: ChildConfig) -> Lifetime:
    """The byte and packet limits of a child's SAs: rekey at the soft one, delete at the hard
    one (by default 10% beyond the soft one, as strongSwan does)."""
    return Lifetime(
        soft_bytes=cfg.rekey_bytes,
        hard_bytes=cfg.life_bytes or (int(cfg.rekey_bytes * 1.1) if cfg.rekey_bytes else 0),
        soft_packets=cfg.rekey_packets,
        hard_packets=cfg.life_packets or (int(cfg.rekey_packets * 1.1) if cfg.rekey_packets else 0),
    )


def install(
    eng: Engine,
    sa: IkeSa,
    cfg: ChildConfig,
    chosen: Chosen,
    *,
    we_initiated: bool,
    spi_in: int,
    spi_out: int,
    ni: bytes,
    nr: bytes,
    shared: bytes | None,
    local_ts: tuple[TsRange, ...],
    remote_ts: tuple[TsRange, ...],
    reqid: int | None,
    now: float,
    lineage: int | None = None,
    outbound_active: bool = True,
) -> ChildEntry:
    """Derive the keys of a negotiated pair, emit InstallChild and return the entry."""
    assert sa.keys is not None
    keys = derive_child_keys(
        sa.prf_id,
        sa.keys.sk_d,
        ni,
        nr,
        chosen.encr.id,
        chosen.encr.key_bits,
        chosen.integ.id if chosen.integ else None,
        shared,
    )
    # keys.encr_i/integ_i protect traffic from the exchange initiator to the responder
    if we_initiated:
        out_e, out_a, in_e, in_a = keys.encr_i, keys.integ_i, keys.encr_r, keys.integ_r
    else:
        out_e, out_a, in_e, in_a = keys.encr_r, keys.integ_r, keys.encr_i, keys.integ_i
    integ_id = chosen.integ.id if chosen.integ else None
    if reqid is None:
        # the packet selectors an acquire put first (RFC 7296 2.9) lie within the others: a
        # child that got both shares the reqid of its configured policy (a trap's)
        key = (cfg.name, covering(local_ts), covering(remote_ts), sa.remote[0])
        reqid = eng.policy_reqid((sa.name, *key))
    if lineage is None:
        lineage = eng.lineage_for(reqid)
    entry = ChildEntry(
        config=cfg,
        reqid=reqid,
        spi_in=spi_in,
        spi_out=spi_out,
        chosen=chosen,
        local_ts=local_ts,
        remote_ts=remote_ts,
        encap=sa.encap,
        installed_at=now,
        nonces=(ni, nr),
        lineage=lineage,
        order=eng.next_install(),
    )
    entry.rekey_at, entry.expire_at = rekey_deadlines(eng, cfg, now)
    lifetime = volume_lifetime(cfg)
    child_sa = ChildSa(
        reqid=reqid,
        name=cfg.name,
        local_addr=sa.local[0],
        remote_addr=sa.remote[0],
        inbound=SaKeys(spi_in, chosen.encr.id, in_e, integ_id, in_a, chosen.esn),
        outbound=SaKeys(spi_out, chosen.encr.id, out_e, integ_id, out_a, chosen.esn),
        local_ts=to_config(local_ts),
        remote_ts=to_config(remote_ts),
        encap=(sa.local[1], sa.remote[1]) if sa.encap else None,
        replay_window=cfg.replay_window,
        lifetime=lifetime,
        outbound_active=outbound_active,
    )
    eng.ondemand.arm_idle_check(sa, entry, now)
    sa.children.append(entry)
    eng.emit(InstallChild(child_sa))
    eng.emit(ChildUp(cfg.name, sa.name, reqid))
    if eng.log.isEnabledFor(logging.INFO):  # the selectors' text is not free
        eng.log.info(
            "%s: CHILD_SA %s{%d} established with SPIs %08x_i %08x_o, %s, TS %s === %s",
            sa.peer_label(),
            cfg.name,
            reqid,
            spi_in,
            spi_out,
            chosen.describe(),
            ", ".join(map(str, local_ts)),
            ", ".join(map(str, remote_ts)),
        )
    return entry
