"""On-demand tunnels in the engine, IKEv1 and IKEv2: trap policies and Acquires, idle Child SAs
closed while the IKE SA stays, dpd_action, close_action and keyingtries (engine/ondemand.py).

Two engines in memory (harness.Pair); the memory data plane stands in for the kernel: a test
raises the Acquire a trapped packet would, and sets the counters' last use."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest
from harness import ADDR, NETS, Pair, assert_matching_children, site_config

from ikeagent.config.errors import ConfigError
from ikeagent.config.schema import parse_config
from ikeagent.dataplane.base import Acquire
from ikeagent.engine.events import ChildDown, QueryUsage, RemovePolicy
from ikeagent.wire import v1 as w1
from ikeagent.wire import v2 as w

V1 = {"version": 1}
V1_ALGS = {"proposals": ["aes256-sha256-modp2048"], "esp": ["aes256-sha256"]}
VERSIONS = [1, 2]


def pair(
    version: int,
    *,
    a_child: dict[str, Any] | None = None,
    b_child: dict[str, Any] | None = None,
    a_conn: dict[str, Any] | None = None,
    b_conn: dict[str, Any] | None = None,
    seed: int = 1,
) -> Pair:
    algs: dict[str, Any] = V1_ALGS if version == 1 else {}
    base = V1 if version == 1 else {}
    cfg_a = site_config(
        "a",
        start=False,
        conn={**base, **(a_conn or {})},
        child={"start_action": "trap", **(a_child or {})},
        **algs,
    )
    cfg_b = site_config(
        "b", start=False, conn={**base, **(b_conn or {})}, child=b_child or {}, **algs
    )
    return Pair(cfg_a, cfg_b, seed=seed)


def exchanges(p: Pair, since: int = 0) -> list[str]:
    """The exchange types of the datagrams on the wire from index ``since`` on."""
    out = []
    for _, d in p.wire[since:]:
        if d.data[17] >> 4 == 1:
            out.append(w1.ExchangeType(w1.Header.from_bytes(d.data).exchange).name)
        else:
            out.append(w.ExchangeType(w.Header.from_bytes(d.data).exchange).name)
    return out


def trap_reqid(p: Pair) -> int:
    (reqid,) = p.a.dp.traps
    return reqid


def acquire(p: Pair, reqid: int) -> None:
    p.a.engine.handle_dataplane_event(Acquire(reqid, "10.1.0.5", "10.2.0.7"), p.now)
    p.run()


def ike_uids(side: Any) -> list[int]:
    return [s.uid for s in side.engine.list_sas() if s.state == "ESTABLISHED"]


def children(side: Any) -> list[Any]:
    return [c for s in side.engine.list_sas() for c in s.children]


def removed_policies(side: Any) -> list[int]:
    return [e.reqid for e in side.events if isinstance(e, RemovePolicy)]


PHASE2 = {1: {"QUICK_MODE"}, 2: {"CREATE_CHILD_SA"}}
PHASE1 = {1: {"IDENTITY_PROTECTION"}, 2: {"IKE_SA_INIT", "IKE_AUTH"}}


@pytest.mark.parametrize("version", VERSIONS)
def test_trap_installs_only_the_policy_and_an_acquire_brings_the_child_up(version: int) -> None:
    p = pair(version)
    p.start()
    assert p.wire == []  # nothing negotiated before traffic
    reqid = trap_reqid(p)
    trap = p.a.dp.traps[reqid]
    assert [str(t) for t in trap.local_ts] == [NETS["a"]]
    assert [str(t) for t in trap.remote_ts] == [NETS["b"]]
    assert (trap.local_addr, trap.remote_addr) == (ADDR["a"], ADDR["b"])
    assert p.a.dp.pairs == {}
    (status,) = p.a.engine.list_traps()
    assert (status.name, status.child, status.reqid, status.acquires) == ("to-b", "net", reqid, 0)

    acquire(p, reqid)
    assert assert_matching_children(p.a, p.b) == 1
    # the child's SAs land under the trap's reqid, so the trapped policy carries them
    assert list(p.a.dp.pairs) == [reqid]
    assert p.a.engine.list_traps()[0].acquires == 1
    # a second Acquire while the child is up (a packet queued before the SA) changes nothing
    before = len(p.wire)
    acquire(p, reqid)
    assert p.wire[before:] == []


@pytest.mark.parametrize("version", VERSIONS)
def test_idle_child_is_closed_the_ike_sa_kept_and_the_trap_rearmed(version: int) -> None:
    p = pair(version, a_child={"inactivity": 30})
    p.start()
    reqid = trap_reqid(p)
    acquire(p, reqid)
    ike = ike_uids(p.a)
    assert len(ike) == 1 and len(children(p.a)) == 1
    (pair_a,) = p.a.pairs()
    # traffic keeps it: last used 20 s in, so it is still there at 45 s (idle 25 s)
    p.advance(20)
    p.a.dp.bump(reqid, pair_a.inbound.spi, pair_a.outbound.spi, packets_out=3, now=p.now)
    p.advance(25)
    assert len(children(p.a)) == 1 and len(children(p.b)) == 1
    # and closed once idle 30 s: both ends drop the child, the IKE SA stays on both
    p.advance(10)
    assert children(p.a) == [] and children(p.b) == []
    assert p.a.pairs() == [] and p.b.pairs() == []
    assert ike_uids(p.a) == ike
    assert len(ike_uids(p.b)) == 1
    assert not p.a.downs() and not p.b.downs()
    # the trap stays armed: its policy was never removed
    assert reqid in p.a.dp.traps and reqid not in removed_policies(p.a)
    queries = [e for e in p.a.events if isinstance(e, QueryUsage)]
    assert queries and all(q.reqid == reqid for q in queries)

    # the next packet needs only Phase 2, on the IKE SA that stayed
    before = len(p.wire)
    acquire(p, reqid)
    assert set(exchanges(p, before)) == PHASE2[version]
    assert ike_uids(p.a) == ike
    assert assert_matching_children(p.a, p.b) == 1
    assert list(p.a.dp.pairs) == [reqid]


@pytest.mark.parametrize("version", VERSIONS)
def test_inactivity_close_ike_closes_the_ike_sa_with_its_last_child(version: int) -> None:
    p = pair(version, a_child={"inactivity": 20}, a_conn={"inactivity_close_ike": True})
    p.start()
    reqid = trap_reqid(p)
    acquire(p, reqid)
    p.advance(25)
    # a pair that never carried a packet gets a second interval (it may have been slow to
    # install): still there after one
    assert len(children(p.a)) == 1
    p.advance(20)
    assert p.a.engine.list_sas() == [] and p.b.engine.list_sas() == []
    assert p.a.pairs() == [] and p.b.pairs() == []
    assert reqid in p.a.dp.traps
    # the trap brings up a whole new IKE SA
    before = len(p.wire)
    acquire(p, reqid)
    assert PHASE1[version] <= set(exchanges(p, before))
    assert assert_matching_children(p.a, p.b) == 1


@pytest.mark.parametrize("version", VERSIONS)
def test_inactivity_on_a_started_child_closes_it_for_good(version: int) -> None:
    p = pair(version, a_child={"start_action": "start", "inactivity": 15})
    p.start()
    reqid = next(iter(p.a.dp.pairs))
    p.advance(35)  # never used: two intervals
    assert p.a.pairs() == [] and p.b.pairs() == []
    assert len(ike_uids(p.a)) == 1
    # no trap: its policy went with it
    assert p.a.dp.traps == {} and reqid in removed_policies(p.a)


@pytest.mark.parametrize("version", VERSIONS)
def test_rekeyed_child_is_checked_for_inactivity_too(version: int) -> None:
    p = pair(version, a_child={"inactivity": 50, "rekey_time": 40, "life_time": 60})
    p.start()
    reqid = trap_reqid(p)
    acquire(p, reqid)
    first = {pr.inbound.spi for pr in p.a.pairs()}
    p.advance(45)  # rekeyed at about 36-40 s; the new pair has seen no traffic either
    assert {pr.inbound.spi for pr in p.a.pairs()} - first
    p.advance(60)
    assert p.a.pairs() == [] and p.b.pairs() == []
    assert len(ike_uids(p.a)) == 1


@pytest.mark.parametrize("version", VERSIONS)
def test_acquire_for_a_reqid_that_is_no_trap_is_counted_and_ignored(version: int) -> None:
    p = pair(version)
    p.start()
    p.a.engine.handle_dataplane_event(Acquire(999, "10.1.0.5", "10.2.0.7"), p.now)
    p.run()
    assert p.wire == []
    assert p.a.engine.stats()["acquires_unknown"] == 1


def test_reload_without_the_trap_removes_its_policy() -> None:
    p = pair(2)
    p.start()
    reqid = trap_reqid(p)
    cfg = site_config("a", start=False)  # the same tunnel, start_action none
    p.a.engine.load_config(parse_config(cfg), p.now)
    p.run()
    assert removed_policies(p.a) == [reqid] and p.a.dp.traps == {}
    assert p.a.engine.list_traps() == []


def test_reload_of_a_trapped_child_keeps_the_policy_while_its_sas_go() -> None:
    """A changed connection is torn down and trapped again: the trapped reqid's policy must
    not lapse while the old child's Delete is in flight."""
    p = pair(2)
    p.start()
    reqid = trap_reqid(p)
    acquire(p, reqid)
    cfg = site_config("a", start=False, child={"start_action": "trap"}, conn={"dpd_delay": 5})
    p.a.engine.load_config(parse_config(cfg), p.now)
    p.run()
    assert p.a.pairs() == []
    assert list(p.a.dp.traps) == [reqid] and reqid not in removed_policies(p.a)
    acquire(p, reqid)
    assert assert_matching_children(p.a, p.b) == 1


def test_trap_needs_an_address_to_initiate_to() -> None:
    cfg = site_config("a", child={"start_action": "trap"}, conn={"remote_addrs": []})
    with pytest.raises(
        ConfigError, match=r"remote_addrs: required when a child has start_action trap"
    ):
        parse_config(cfg)
    cfg = site_config("a", child={"start_action": "trap"}, conn={"remote_addrs": ["10.9.0.0/16"]})
    with pytest.raises(ConfigError, match="needs an address to initiate to"):
        parse_config(cfg)
    # actions that initiate later need the peer's address too (a responder-only connection
    # with close_action none and dpd_action clear is fine)
    for key, value in (
        ("dpd_action", "trap"),
        ("dpd_action", "restart"),
        ("close_action", "start"),
    ):
        cfg = site_config("a", start=False, child={key: value}, conn={"remote_addrs": []})
        with pytest.raises(ConfigError, match=rf"net \({key} {value}\) initiates to the peer"):
            parse_config(cfg)
    parse_config(site_config("a", start=False, conn={"remote_addrs": ["10.9.0.0/16"]}))


# ---- dead peers ----------------------------------------------------------------------------


def vanish(p: Pair) -> None:
    p.filter = lambda src, d: False


def come_back(p: Pair) -> None:
    p.filter = None


@pytest.mark.parametrize("version", VERSIONS)
def test_dpd_action_trap_keeps_the_policy_and_traffic_brings_the_tunnel_back(version: int) -> None:
    dpd = {"dpd_delay": 5, "dpd_timeout": 20} if version == 1 else {"dpd_delay": 5}
    p = pair(version, a_child={"start_action": "start", "dpd_action": "trap"}, a_conn=dpd)
    p.start()
    (reqid,) = p.a.dp.pairs
    assert p.a.dp.traps == {}
    vanish(p)
    p.advance(120)
    assert p.a.engine.list_sas() == []  # the peer was declared dead
    assert p.a.pairs() == []
    # the child is trapped under the same reqid, and its policy never lapsed
    assert list(p.a.dp.traps) == [reqid] and reqid not in removed_policies(p.a)
    assert p.a.engine.list_traps()[0].reason == "dpd_action"
    come_back(p)
    # b still holds its stale SA; it goes when a's new one says INITIAL_CONTACT
    acquire(p, reqid)
    assert len(ike_uids(p.a)) == 1
    assert len(p.a.pairs()) == 1 and list(p.a.dp.pairs) == [reqid]


@pytest.mark.parametrize("version", VERSIONS)
def test_dpd_action_restart_retries_until_the_peer_returns(version: int) -> None:
    dpd = {"dpd_delay": 5, "dpd_timeout": 20} if version == 1 else {"dpd_delay": 5}
    p = pair(
        version,
        a_child={"start_action": "start", "dpd_action": "restart"},
        a_conn={**dpd, "keyingtries": 0},
    )
    p.start()
    first = ike_uids(p.a)
    vanish(p)
    p.advance(300)  # dead, then several attempts that get no answer
    assert ike_uids(p.a) == []
    attempts = [s for s in p.a.engine.list_sas() if s.state == "CONNECTING"]
    assert len(attempts) == 1  # one attempt at a time, still trying
    come_back(p)
    p.advance(120)
    assert len(ike_uids(p.a)) == 1 and ike_uids(p.a) != first
    assert len(p.a.pairs()) == 1 and len(children(p.a)) == 1


@pytest.mark.parametrize("version", VERSIONS)
def test_dpd_action_clear_removes_everything(version: int) -> None:
    dpd = {"dpd_delay": 5, "dpd_timeout": 20} if version == 1 else {"dpd_delay": 5}
    p = pair(version, a_child={"start_action": "start", "dpd_action": "clear"}, a_conn=dpd)
    p.start()
    (reqid,) = p.a.dp.pairs
    vanish(p)
    p.advance(120)
    assert p.a.engine.list_sas() == [] and p.a.dp.traps == {} and p.a.dp.policies == {}
    assert reqid in removed_policies(p.a)


@pytest.mark.parametrize("version", VERSIONS)
def test_keyingtries_bounds_the_attempts(version: int) -> None:
    p = pair(version, a_child={"start_action": "start"}, a_conn={"keyingtries": 3})
    vanish(p)
    p.start()
    p.advance(600)
    assert p.a.engine.list_sas() == []
    first = "IKE_SA_INIT" if version == 2 else "IDENTITY_PROTECTION"
    # three attempts, each a fresh SPI, each retransmitted retransmit_tries (4) times
    spis = {d.data[:8] for src, d in p.wire if src == "a" and first in exchanges_of(d)}
    assert len(spis) == 3


def exchanges_of(d: Any) -> str:
    if d.data[17] >> 4 == 1:
        return w1.ExchangeType(w1.Header.from_bytes(d.data).exchange).name
    return w.ExchangeType(w.Header.from_bytes(d.data).exchange).name


# ---- peers that close --------------------------------------------------------------------


@pytest.mark.parametrize("version", VERSIONS)
def test_close_action_start_brings_a_child_the_peer_deleted_back(
    version: int, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("INFO", logger="ikeagent.engine")
    p = pair(version, a_child={"start_action": "start", "close_action": "start"})
    p.start()
    ike = ike_uids(p.a)
    old = {pr.inbound.spi for pr in p.a.pairs()}
    before = len(p.wire)
    p.b.engine.terminate_child("to-a", "net", p.now)
    p.run()
    assert assert_matching_children(p.a, p.b) == 1
    assert {pr.inbound.spi for pr in p.a.pairs()}.isdisjoint(old)
    assert ike_uids(p.a) == ike
    assert PHASE2[version] <= set(exchanges(p, before))
    assert "close_action start: initiating net again" in caplog.text


@pytest.mark.parametrize("version", VERSIONS)
def test_close_action_trap_arms_a_trap_when_the_peer_closes_the_ike_sa(version: int) -> None:
    p = pair(version, a_child={"start_action": "start", "close_action": "trap"})
    p.start()
    (reqid,) = p.a.dp.pairs
    p.b.engine.terminate("to-a", p.now)
    p.run()
    assert p.a.engine.list_sas() == [] and p.a.pairs() == []
    assert list(p.a.dp.traps) == [reqid] and reqid not in removed_policies(p.a)
    acquire(p, reqid)
    assert assert_matching_children(p.a, p.b) == 1


@pytest.mark.parametrize("version", VERSIONS)
def test_close_action_none_and_rekeys_do_not_restart(
    version: int, caplog: pytest.LogCaptureFixture
) -> None:
    p = pair(version, a_child={"start_action": "start", "close_action": "start"})
    p.start()
    # a rekey from the peer deletes the old pair: that is no close (a restart would be
    # swallowed by initiate, which sees the live child: the log says whether one was tried)
    caplog.set_level("INFO", logger="ikeagent.engine")
    p.b.engine.rekey("to-a", p.now, ike=False)
    p.run()
    p.advance(5)
    assert len(children(p.a)) == 1 and len(p.a.pairs()) == 1
    assert "close_action start" not in caplog.text
    q = pair(version, a_child={"start_action": "start"})
    q.start()
    q.b.engine.terminate_child("to-a", "net", q.now)
    q.run()
    assert q.a.pairs() == [] and len(ike_uids(q.a)) == 1


@pytest.mark.parametrize("version", VERSIONS)
def test_a_growing_packet_count_keeps_a_child_whose_use_time_is_only_its_first_use(
    version: int,
) -> None:
    """Kernels before 6.2 report an SA's first use, not its last: the packet count decides."""
    p = pair(version, a_child={"inactivity": 30})
    p.start()
    reqid = trap_reqid(p)
    acquire(p, reqid)
    (pr,) = p.a.pairs()
    key = (reqid, pr.inbound.spi, pr.outbound.spi)
    p.a.dp.bump(*key, packets_out=1, now=p.now + 1)  # first (and only reported) use
    p.a.dp.counter_table[key] = replace(p.a.dp.counter_table[key], last_used_exact=False)
    for _ in range(6):  # two minutes of traffic the use time does not show
        p.advance(20)
        p.a.dp.bump(*key, packets_out=5)
    assert len(children(p.a)) == 1
    p.advance(70)  # then silence: closed within two checks
    assert children(p.a) == [] and len(ike_uids(p.a)) == 1


def test_list_sas_view_shows_idle_time_and_inactivity() -> None:
    from ikeagent.dataplane.base import SaCounters
    from ikeagent.runtime.views import child_sa_view, trap_view

    p = pair(2, a_child={"inactivity": 30})
    p.start()
    reqid = trap_reqid(p)
    acquire(p, reqid)
    p.advance(12)
    (sa,) = p.a.engine.list_sas()
    (child,) = sa.children
    view = child_sa_view(child, SaCounters(last_used=p.now - 4), p.now)
    assert (view["idle"], view["inactivity"]) == (4, 30)
    assert child_sa_view(child, None, p.now)["idle"] == 12  # never used: since installed
    (trap,) = p.a.engine.list_traps()
    tv = trap_view(trap, p.now, True)
    assert (tv["reqid"], tv["acquires"], tv["last_acquire"], tv["active"]) == (reqid, 1, 12, True)


def test_ikev1_initiator_sends_on_a_first_pair_only_once_the_peer_can_have_it() -> None:
    """The Quick Mode responder installs its SAs when HASH(3) reaches it: the initiator holds
    its new outbound SA back (a trap's held packets would be dropped) for about a round trip."""
    from ikeagent.engine.events import ActivateOutbound

    p = pair(1)
    p.start()
    reqid = trap_reqid(p)
    acquire(p, reqid)
    (installed,) = p.a.dp.pairs[reqid]
    assert not installed.outbound_active
    assert not [e for e in p.a.events if isinstance(e, ActivateOutbound)]
    p.advance(1.5)
    (installed,) = p.a.dp.pairs[reqid]
    assert installed.outbound_active
    (act,) = [e for e in p.a.events if isinstance(e, ActivateOutbound)]
    assert (act.spi_in, act.spi_out) == (installed.inbound.spi, installed.outbound.spi)


@pytest.mark.parametrize("version", VERSIONS)
def test_trapped_children_of_one_connection_share_one_ike_sa(version: int) -> None:
    """Two children, each with its trap: their Acquires (the second while the IKE SA is still
    being set up, then one later) give one IKE SA carrying both, never a second IKE SA."""
    algs: dict[str, Any] = V1_ALGS if version == 1 else {}
    esp = algs.get("esp", ["aes256gcm16"])
    kids = {
        "web": {"local_ts": ["10.1.0.0/25"], "remote_ts": ["10.2.0.0/25"], "esp_proposals": esp},
        "db": {"local_ts": ["10.1.0.128/25"], "remote_ts": ["10.2.0.128/25"], "esp_proposals": esp},
    }
    base = {"version": 1} if version == 1 else {}
    props = {"proposals": algs["proposals"]} if version == 1 else {}
    cfg_a = site_config(
        "a",
        conn=base,
        children={k: {**v, "start_action": "trap"} for k, v in kids.items()},
        **props,
    )
    mirrored = {
        k: {**v, "local_ts": v["remote_ts"], "remote_ts": v["local_ts"]} for k, v in kids.items()
    }
    cfg_b = site_config("b", conn=base, children=mirrored, **props)
    p = Pair(cfg_a, cfg_b)
    p.start()
    web, db = sorted(p.a.dp.traps)
    p.a.engine.handle_dataplane_event(Acquire(web, "10.1.0.5", "10.2.0.5"), p.now)
    p.a.engine.handle_dataplane_event(Acquire(db, "10.1.0.130", "10.2.0.130"), p.now)
    p.run()
    p.advance(2)
    assert len(ike_uids(p.a)) == 1 and len(ike_uids(p.b)) == 1
    assert sorted(c.name for c in children(p.a)) == ["db", "web"]
    assert assert_matching_children(p.a, p.b) == 2
    assert sorted(p.a.dp.pairs) == [web, db]  # each child under its own trap's reqid


def test_ike_sa_not_rekeyed_by_its_hard_lifetime_goes() -> None:
    """IKEv2 over_time: rekey_time 60 s (jittered down by at most over_time), then 5 s more; a
    peer that never answers the rekey does not keep the IKE SA alive past that."""
    p = pair(2, a_child={"start_action": "start"}, a_conn={"rekey_time": 60, "over_time": 5})
    p.start()
    (sa,) = p.a.engine.list_sas()
    assert sa.expire_at == pytest.approx(p.now + 65)

    def no_rekey(src: str, d: Any) -> bool:
        h = w.Header.from_bytes(d.data)
        return not (src == "a" and h.exchange == w.ExchangeType.CREATE_CHILD_SA)

    p.filter = no_rekey
    p.advance(66)
    (down,) = p.a.downs()
    assert "hard lifetime" in down.reason
    assert p.a.engine.list_sas() == [] and p.b.engine.list_sas() == []  # b got the Delete


def test_ikev2_reauthentication_is_make_before_break() -> None:
    """reauth_time: a new IKE SA (authenticated again, no INITIAL_CONTACT) takes the child
    over under the same reqid before the old IKE SA and its pair go; the policy never lapses
    and neither end reports the tunnel down."""
    p = pair(2, a_child={"start_action": "start"}, a_conn={"reauth_time": 100})
    p.start()
    ((reqid, (first,)),) = p.a.dp.pairs.items()
    (old,) = p.a.engine.list_sas()
    assert old.reauth_at is not None and 1090 <= old.reauth_at <= 1100
    before = len(p.wire)
    p.advance(105)
    (new,) = p.a.engine.list_sas()
    assert new.uid != old.uid and (new.spi_i, new.spi_r) != (old.spi_i, old.spi_r)
    assert {"IKE_SA_INIT", "IKE_AUTH"} <= set(exchanges(p, before))
    assert len(p.b.engine.list_sas()) == 1
    assert assert_matching_children(p.a, p.b) == 1
    ((now_reqid, (second,)),) = p.a.dp.pairs.items()
    assert now_reqid == reqid and second.inbound.spi != first.inbound.spi
    # make-before-break: the new pair was installed before the old one was deleted
    log = [e for e in p.a.dp.log if e[0] in ("install", "delete", "remove_policy")]
    installed = log.index(("install", reqid, second.inbound.spi, second.outbound.spi))
    deleted = log.index(("delete", reqid, first.inbound.spi, first.outbound.spi))
    assert installed < deleted and ("remove_policy", reqid) not in log
    assert not p.a.downs()
    # the tunnel never went down: the old pair's going is no CHILD_SA down at either end
    for side in (p.a, p.b):
        assert not [e for e in side.events if isinstance(e, ChildDown)]
    # and the next one is scheduled on the new IKE SA
    assert new.reauth_at is not None and new.reauth_at > p.now + 80


def test_ikev2_reauthentication_deletes_the_old_ike_sa_after_its_exchange_in_flight() -> None:
    """A child rekey on the old IKE SA is unanswered (its response lost) when the new IKE SA
    takes over: the old SA's Delete waits for it (sent again at once, the peer answers from its
    cache), so the peer deletes that SA too (a Delete in the rekey's message ID would get the
    cached rekey answer and delete nothing)."""
    p = pair(2, a_child={"start_action": "start"}, a_conn={"reauth_time": 1000})
    p.start()
    (old,) = p.a.engine.sas.values()
    dropped: list[int] = []

    def lose_first_rekey_answer(src: str, d: Any) -> bool:
        h = w.Header.from_bytes(d.data)
        if src == "b" and h.exchange == w.ExchangeType.CREATE_CHILD_SA and not dropped:
            dropped.append(h.message_id)
            return False
        return True

    p.filter = lose_first_rekey_answer
    p.a.engine.rekey("to-b", p.now, ike=False)
    p.run()
    assert dropped and old.outstanding is not None  # the rekey waits for its answer
    retransmits = p.a.engine.stats().get("retransmits", 0)
    p.a.engine.reauthenticate(old, p.now)
    p.run()
    assert p.a.engine.stats()["retransmits"] == retransmits + 1
    assert len(p.a.engine.list_sas()) == 1 and len(p.b.engine.list_sas()) == 1
    assert p.a.engine.list_sas()[0].uid != old.uid
    p.advance(2)  # the replaced pairs' linger
    assert assert_matching_children(p.a, p.b) == 1
    assert not p.a.downs()


def test_ikev2_failed_reauthentication_keeps_the_ike_sa_and_tries_again() -> None:
    p = pair(2, a_child={"start_action": "start"}, a_conn={"reauth_time": 100})
    p.start()
    (old,) = p.a.engine.list_sas()

    def no_new_ike_sa(src: str, d: Any) -> bool:
        return w.Header.from_bytes(d.data).exchange != w.ExchangeType.IKE_SA_INIT

    p.filter = no_new_ike_sa
    p.advance(140)  # the attempt times out (4 retransmits)
    (still,) = [s for s in p.a.engine.list_sas() if s.state == "ESTABLISHED"]
    assert still.uid == old.uid and len(p.a.pairs()) == 1
    assert still.reauth_at is not None and still.reauth_at > p.now  # retried later
    p.filter = None
    p.advance(80)
    (new,) = p.a.engine.list_sas()
    assert new.uid != old.uid and len(p.a.pairs()) == 1


def test_ikev1_reauth_time_is_when_the_new_phase1_comes() -> None:
    cfg = site_config("a", conn={"version": 1, "reauth_time": "30m"}, **V1_ALGS)
    assert parse_config(cfg).connections["to-b"].rekey_time == 1800
    cfg = site_config(
        "a", conn={"version": 1, "reauth_time": "30m", "rekey_time": "10m"}, **V1_ALGS
    )
    assert parse_config(cfg).connections["to-b"].rekey_time == 600


def test_an_acquired_ikev2_child_offers_the_packets_selectors_first() -> None:
    """RFC 7296 2.9: the packet that sprang the trap goes first in TSi/TSr, then the configured
    ranges; a responder that takes both gives a child under the trap's reqid (IKE_AUTH, and
    CREATE_CHILD_SA on the IKE SA that stayed)."""
    p = pair(2, a_child={"inactivity": 20})
    p.start()
    reqid = trap_reqid(p)

    acquire(p, reqid)
    (child,) = children(p.a)
    assert child.local_ts == ["10.1.0.5/32", NETS["a"]]
    assert child.remote_ts == ["10.2.0.7/32", NETS["b"]]
    (theirs,) = children(p.b)
    assert (theirs.local_ts, theirs.remote_ts) == (child.remote_ts, child.local_ts)
    assert list(p.a.dp.pairs) == [reqid]
    # idle, then a packet between two other hosts: Phase 2 offers that one first
    p.advance(45)
    assert children(p.a) == []
    p.a.engine.handle_dataplane_event(Acquire(reqid, "10.1.0.9", "10.2.0.3"), p.now)
    p.run()
    (child,) = children(p.a)
    assert (child.local_ts, child.remote_ts) == (
        ["10.1.0.9/32", NETS["a"]],
        ["10.2.0.3/32", NETS["b"]],
    )
    assert list(p.a.dp.pairs) == [reqid]
    # a child asked for by a command offers only the configured ranges
    p.a.engine.terminate("to-b", p.now)
    p.run()
    p.a.engine.initiate("to-b", p.now)
    p.run()
    (child,) = children(p.a)
    assert (child.local_ts, child.remote_ts) == ([NETS["a"]], [NETS["b"]])
