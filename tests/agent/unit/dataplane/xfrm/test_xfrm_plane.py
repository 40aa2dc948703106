"""The xfrm data plane against a fake kernel: what it asks for, rollback, rekeys, events.

The fake keeps policies by (dir, selector, mark) and SAs by (destination, SPI) as the kernel
does, refuses duplicates (EEXIST) and unknown deletions (ENOENT/ESRCH), and can be told to
refuse SAs (as this machine's kernel without ESP does).
"""

from __future__ import annotations

import errno
import ipaddress
import socket
import struct
import time

import pytest

from ikeagent.dataplane.base import (
    Acquire,
    ChildSa,
    Dataplane,
    ExpireKind,
    Lifetime,
    SaExpired,
    SaKeys,
    TrafficSelector,
)
from ikeagent.dataplane.factory import create_dataplane
from ikeagent.dataplane.xfrm import XfrmDataplane, XfrmError
from ikeagent.dataplane.xfrm.build import (
    ENCR_ALGS,
    algorithm_attrs,
    policy_specs,
    port_blocks,
    sa_message,
    selectors,
)
from ikeagent.dataplane.xfrm.messages import (
    XfrmMsg,
    XfrmPolicyDir,
    encode,
    parse,
)
from ikeagent.dataplane.xfrm.structs import (
    XFRM_INF,
    XfrmUserAcquire,
    XfrmUserExpire,
    XfrmUsersaInfo,
    XfrmUserTmpl,
    pack_address,
    unpack_address,
)

MASK = 0x2000


def ts(text: str, protocol: int = 0, ports: tuple[int, int] = (0, 65535)) -> TrafficSelector:
    return TrafficSelector(ipaddress.ip_network(text), protocol, *ports)


def child(
    reqid: int = 5,
    spi_in: int = 0xC1000001,
    spi_out: int = 0xC2000001,
    *,
    gcm: bool = True,
    active: bool = True,
    encap: tuple[int, int] | None = None,
    local_ts: tuple[TrafficSelector, ...] = (ts("10.1.0.0/24"),),
    remote_ts: tuple[TrafficSelector, ...] = (ts("10.2.0.0/16"),),
    **extra: object,
) -> ChildSa:
    def keys(spi: int, fill: int) -> SaKeys:
        if gcm:
            return SaKeys(spi, 20, bytes([fill]) * 20, None)
        return SaKeys(spi, 12, bytes([fill]) * 16, 12, bytes([fill + 1]) * 32)

    return ChildSa(
        reqid=reqid,
        name="net",
        local_addr="192.0.2.1",
        remote_addr="192.0.2.2",
        inbound=keys(spi_in, 1),
        outbound=keys(spi_out, 3),
        local_ts=local_ts,
        remote_ts=remote_ts,
        encap=encap,
        outbound_active=active,
        **extra,  # type: ignore[arg-type]
    )


class FakeKernel:
    """Stands in for ``XfrmSocket``: answers requests from dicts, like the kernel would."""

    def __init__(self, refuse_sa: str | None = None) -> None:
        # the tunnel policies; their guards (the owner bit as mark value, action block) apart
        self.policies: dict[tuple, dict] = {}
        self.guards: dict[tuple, dict] = {}
        self.sas: dict[tuple[str, int], dict] = {}
        self.log: list[tuple[str, object]] = []
        self.refuse_sa = refuse_sa
        self.closed = False

    @staticmethod
    def _mark(msg) -> tuple[int, int]:
        mark = msg.get_attr("XFRMA_MARK")
        return (mark["v"], mark["m"]) if mark else (0, 0)

    def _roundtrip(self, msg, msg_type):
        # what goes to the kernel is exactly what pyroute2 encodes
        (back,) = parse(encode(msg, msg_type, 5))
        return back

    def request(self, msg, msg_type, what, flags=0):
        msg = self._roundtrip(msg, msg_type)
        name = XfrmMsg(msg_type).name
        self.log.append((name, msg))
        if msg_type in (XfrmMsg.NEWPOLICY, XfrmMsg.UPDPOLICY):
            key = (msg["dir"], _sel_key(msg["sel"]), self._mark(msg))
            table = self._table(key)
            if key in table and msg_type == XfrmMsg.NEWPOLICY:
                raise XfrmError(errno.EEXIST, what)
            table[key] = msg
        elif msg_type == XfrmMsg.DELPOLICY:
            key = (msg["dir"], _sel_key(msg["sel"]), self._mark(msg))
            if self._table(key).pop(key, None) is None:
                raise XfrmError(errno.ENOENT, what)
        elif msg_type == XfrmMsg.NEWSA:
            if self.refuse_sa:
                raise XfrmError(errno.EPROTONOSUPPORT, what, self.refuse_sa)
            key = (unpack_address(msg["id"]["daddr"], msg["family"]), msg["id"]["spi"])
            if key in self.sas:
                raise XfrmError(errno.EEXIST, what)
            self.sas[key] = msg
        elif msg_type == XfrmMsg.DELSA:
            key = (unpack_address(msg["daddr"], msg["family"]), msg["spi"])
            if self.sas.pop(key, None) is None:
                raise XfrmError(errno.ESRCH, what)

    def _table(self, key: tuple) -> dict[tuple, dict]:
        value, mask = key[2]
        return self.guards if mask and value == mask else self.policies

    def get(self, msg, msg_type, what):
        msg = self._roundtrip(msg, msg_type)
        key = (unpack_address(msg["daddr"], msg["family"]), msg["spi"])
        if key not in self.sas:
            raise XfrmError(errno.ESRCH, what)
        return self.sas[key]

    def dump(self, msg, msg_type, what):
        if msg_type == XfrmMsg.GETPOLICY:
            return [*self.policies.values(), *self.guards.values()]
        return list(self.sas.values())

    def close(self):
        self.closed = True


def _sel_key(sel: dict) -> tuple:
    return tuple(sorted(sel.items()))


def plane(kernel: FakeKernel, **options: object) -> XfrmDataplane:
    options.setdefault("install_routes", False)  # routes: test_xfrm_duplicates.py, UML tests
    dp = XfrmDataplane(connect=lambda netns: kernel, events=False, **options)  # type: ignore[arg-type]
    dp.start()
    return dp


# -- building requests -----------------------------------------------------------------


def test_algorithm_names_and_lengths() -> None:
    gcm = algorithm_attrs(SaKeys(1, 20, bytes(36), None))
    assert gcm == [
        (
            "XFRMA_ALG_AEAD",
            {
                "alg_name": "rfc4106(gcm(aes))",
                "alg_key_len": 288,  # AES-256 key and 4-byte salt (RFC 4106 8.1)
                "alg_icv_len": 128,
                "alg_key": bytes(36),
            },
        )
    ]
    chacha = algorithm_attrs(SaKeys(1, 28, bytes(36), None))
    assert chacha[0][1]["alg_name"] == "rfc7539esp(chacha20,poly1305)"
    cbc = dict(algorithm_attrs(SaKeys(1, 12, bytes(16), 14, bytes(64))))
    assert cbc["XFRMA_ALG_CRYPT"]["alg_name"] == "cbc(aes)"
    auth = cbc["XFRMA_ALG_AUTH_TRUNC"]
    # RFC 4868 2.3: HMAC-SHA-512-256 truncates to 256 bits
    assert (auth["alg_name"], auth["alg_key_len"], auth["alg_trunc_len"]) == (
        "hmac(sha512)",
        512,
        256,
    )
    assert ENCR_ALGS[18].icv_bits == 64 and ENCR_ALGS[19].icv_bits == 96
    with pytest.raises(ValueError):
        algorithm_attrs(SaKeys(1, 3, bytes(24), 2, bytes(20)))  # 3DES: not offered
    with pytest.raises(ValueError):
        algorithm_attrs(SaKeys(1, 12, bytes(16), None))


def test_sa_message_directions_encap_lifetime_and_esn() -> None:
    sa = child(
        encap=(4500, 31000),
        lifetime=Lifetime(soft_bytes=100, hard_bytes=200, soft_packets=0, hard_packets=9),
    )
    inbound = parse(encode(sa_message(sa, True, MASK), XfrmMsg.NEWSA, 5))[0]
    assert unpack_address(inbound["id"]["daddr"], socket.AF_INET) == "192.0.2.1"
    assert unpack_address(inbound["saddr"], socket.AF_INET) == "192.0.2.2"
    assert (inbound["id"]["spi"], inbound["reqid"], inbound["mode"]) == (0xC1000001, 5, 1)
    assert inbound["replay_window"] == 64 and inbound["flags"] == 32  # AF_UNSPEC
    encap = inbound.get_attr("XFRMA_ENCAP")
    assert (encap["encap_type"], encap["encap_sport"], encap["encap_dport"]) == (2, 31000, 4500)
    lft = inbound["lft"]
    assert (lft["soft_byte_limit"], lft["hard_byte_limit"]) == (100, 200)
    assert (lft["soft_packet_limit"], lft["hard_packet_limit"]) == (XFRM_INF, 9)
    assert lft["hard_add_expires_seconds"] == 0  # time lifetimes stay with the engine
    assert dict(inbound.get_attr("XFRMA_MARK")) == {"v": 0, "m": MASK}

    outbound = parse(encode(sa_message(sa, False, MASK), XfrmMsg.NEWSA, 5))[0]
    assert unpack_address(outbound["id"]["daddr"], socket.AF_INET) == "192.0.2.2"
    assert outbound.get_attr("XFRMA_ENCAP")["encap_sport"] == 4500

    esn = ChildSa(
        **{
            **{f: getattr(sa, f) for f in ChildSa.__slots__},
            "inbound": SaKeys(7, 20, bytes(20), None, esn=True),
            "replay_window": 1024,
        }
    )
    msg = parse(encode(sa_message(esn, True, MASK), XfrmMsg.NEWSA, 5))[0]
    assert msg["flags"] & 0x80 and msg["replay_window"] == 0
    replay = msg.get_attr("XFRMA_REPLAY_ESN_VAL")
    assert (replay["bmp_len"], replay["replay_window"]) == (32, 1024)


def test_mixed_family_selectors_set_af_unspec() -> None:
    sa = child(local_ts=(ts("2001:db8:1::/48"),), remote_ts=(ts("2001:db8:2::/48"),))
    msg = parse(encode(sa_message(sa, True, MASK), XfrmMsg.NEWSA, 5))[0]
    assert msg["flags"] & 32  # XFRM_STATE_AF_UNSPEC: IPv6 inside IPv4


def test_port_blocks_are_exact() -> None:
    assert port_blocks(0, 65535) == [(0, 0)]
    assert port_blocks(53, 53) == [(53, 0xFFFF)]
    assert port_blocks(0, 1023) == [(0, 0xFC00)]
    blocks = port_blocks(1000, 1100)
    covered = {p for port, mask in blocks for p in range(65536) if p & mask == port}
    assert covered == set(range(1000, 1101))


def _icmp_matches(sel: dict, icmp_type: int, code: int) -> bool:
    """How the kernel matches ICMP: the type against sport, the code against dport."""
    return (icmp_type & sel["sport_mask"]) == sel["sport"] and (code & sel["dport_mask"]) == sel[
        "dport"
    ]


@pytest.mark.parametrize("proto", [1, 58])
def test_icmp_selectors_put_type_in_sport_and_code_in_dport(proto: int) -> None:
    """RFC 7296 3.13.1: an ICMP selector's port is type << 8 | code (charon sends the
    triggering echo request's, 2048, first); the kernel matches type and code apart."""
    net = "10.1.0.1/32" if proto == 1 else "2001:db8:1::1/128"
    far = "10.2.0.0/24" if proto == 1 else "2001:db8:2::/64"
    echo = (8, 0) if proto == 1 else (128, 0)
    port = echo[0] << 8
    (sel,) = selectors(ts(net, proto, (port, port)), ts(far, proto, (port, port)))
    assert sel["proto"] == proto
    assert _icmp_matches(sel, *echo)
    assert not _icmp_matches(sel, 0, 0) and not _icmp_matches(sel, echo[0], 1)
    # one type, any code
    (sel,) = selectors(ts(net, proto, (port, port + 255)), ts(far, proto))
    assert all(_icmp_matches(sel, echo[0], c) for c in range(256))
    assert not _icmp_matches(sel, echo[0] + 1, 0)
    # types 0..8 (any code): the blocks cover exactly those types
    sels = list(selectors(ts(net, proto, (0, 8 << 8 | 255)), ts(far, proto)))
    matched = {t for t in range(256) if any(_icmp_matches(s, t, 3) for s in sels)}
    assert matched == set(range(9))
    # no ports: every ICMP message
    (sel,) = selectors(ts(net, proto), ts(far, proto))
    assert (sel["sport_mask"], sel["dport_mask"]) == (0, 0)


def test_policy_specs_cover_every_pair_and_direction() -> None:
    sa = child(
        local_ts=(ts("10.1.0.0/24"), ts("2001:db8:1::/64")),
        remote_ts=(ts("10.2.0.0/16", 17, (53, 53)), ts("2001:db8:2::/64")),
    )
    specs = policy_specs(sa)
    # two same-family pairs x (out, in, fwd); the cross-family pairs give nothing
    assert len(specs) == 6
    out = [s for s in specs if s.dir == XfrmPolicyDir.OUT]
    v4 = next(s for s in out if s.selector["family"] == socket.AF_INET)
    sel = v4.selector
    assert (sel["prefixlen_s"], sel["prefixlen_d"], sel["proto"]) == (24, 16, 17)
    assert (sel["dport"], sel["dport_mask"], sel["sport_mask"]) == (53, 0xFFFF, 0)
    assert (v4.tmpl_src, v4.tmpl_dst, v4.reqid) == ("192.0.2.1", "192.0.2.2", 5)
    inbound = [s for s in specs if s.dir == XfrmPolicyDir.IN]
    assert all(s.tmpl_src == "192.0.2.2" for s in inbound)
    v4_in = next(s for s in inbound if s.selector["family"] == socket.AF_INET).selector
    assert (v4_in["sport"], v4_in["dport_mask"]) == (53, 0)
    # narrower selectors get lower (preferred) priorities
    v6 = next(s for s in out if s.selector["family"] == socket.AF_INET6)
    assert v6.priority < v4.priority + 1000 and v4.priority != v6.priority


# -- the plane against the fake kernel -----------------------------------------------------


def test_install_child_then_remove_everything() -> None:
    kernel = FakeKernel()
    dp = plane(kernel)
    assert isinstance(dp, Dataplane)
    dp.install_child(child())
    assert sorted(kernel.sas) == [("192.0.2.1", 0xC1000001), ("192.0.2.2", 0xC2000001)]
    assert sorted(k[0] for k in kernel.policies) == [0, 1, 2]
    assert all(k[2] == (0, MASK) for k in kernel.policies)
    (tmpl,) = kernel.policies[next(k for k in kernel.policies if k[0] == 1)].get_attr("XFRMA_TMPL")
    assert tmpl["reqid"] == 5
    assert dp.stats()["sa_pairs"] == 1 and dp.stats()["policies"] == 3
    dp.close()
    assert kernel.sas == {} and kernel.policies == {} and kernel.guards == {} and kernel.closed


def test_refused_sa_rolls_back_policies_and_inbound_sa() -> None:
    kernel = FakeKernel(refuse_sa="Requested type not found")
    dp = plane(kernel)
    with pytest.raises(XfrmError) as info:
        dp.install_child(child())
    assert "Requested type not found" in str(info.value)
    assert "inbound SA 0xc1000001" in str(info.value)
    assert kernel.policies == {} and kernel.sas == {}
    assert dp.stats()["install_failures"] == 1 and dp.stats()["children"] == 0


def test_refused_outbound_sa_keeps_the_reqids_other_pairs() -> None:
    kernel = FakeKernel()
    dp = plane(kernel)
    dp.install_child(child())
    kernel.sas[("192.0.2.2", 0xC2000002)] = {}  # SPI clash on the peer's side
    with pytest.raises(XfrmError):
        dp.install_child(child(spi_in=0xC1000002, spi_out=0xC2000002))
    assert ("192.0.2.1", 0xC1000002) not in kernel.sas  # its inbound SA went again
    assert len(kernel.policies) == 3  # the first pair's policies stay


def test_rekey_responder_holds_the_outbound_sa_back() -> None:
    kernel = FakeKernel()
    dp = plane(kernel)
    dp.install_child(child())
    dp.install_child(child(spi_in=0xC1000002, spi_out=0xC2000002, active=False))
    assert ("192.0.2.1", 0xC1000002) in kernel.sas
    assert ("192.0.2.2", 0xC2000002) not in kernel.sas
    assert [n for n, _ in kernel.log].count("NEWPOLICY") == 3  # policies once per reqid
    assert len(kernel.guards) == 3
    c = dp.counters(5, 0xC1000002, 0xC2000002)
    assert c.bytes_out == 0 and c.packets_in == 0
    dp.activate_outbound(5, 0xC1000002, 0xC2000002)
    assert ("192.0.2.2", 0xC2000002) in kernel.sas
    dp.activate_outbound(5, 0xC1000002, 0xC2000002)  # twice: nothing more
    assert [n for n, _ in kernel.log].count("NEWSA") == 4
    dp.delete_child_sas(5, 0xC1000001, 0xC2000001)
    assert sorted(kernel.sas) == [("192.0.2.1", 0xC1000002), ("192.0.2.2", 0xC2000002)]
    assert len(kernel.policies) == 3
    dp.remove_policy(5)
    assert kernel.sas == {} and kernel.policies == {}


def test_deleting_the_active_pair_activates_the_held_back_one_first() -> None:
    kernel = FakeKernel()
    dp = plane(kernel)
    dp.install_child(child())
    dp.install_child(child(spi_in=0xC1000002, spi_out=0xC2000002, active=False))
    dp.delete_child_sas(5, 0xC1000001, 0xC2000001)
    names = [(n, m["id"]["spi"] if n == "NEWSA" else m.get("spi")) for n, m in kernel.log[-3:]]
    assert names == [("NEWSA", 0xC2000002), ("DELSA", 0xC1000001), ("DELSA", 0xC2000001)]


def test_a_collision_loser_sends_on_the_winners_pair_not_its_own() -> None:
    """Held back: the peer's pair (we answered its rekey) and then ours, which lost the
    collision. When the old pair goes, the peer's takes over, not ours."""
    kernel = FakeKernel()
    dp = plane(kernel)
    dp.install_child(child())
    dp.install_child(child(spi_in=0xC1000002, spi_out=0xC2000002, active=False))  # theirs
    dp.install_child(child(spi_in=0xC1000003, spi_out=0xC2000003, active=False))  # ours, lost
    dp.delete_child_sas(5, 0xC1000001, 0xC2000001)
    assert ("192.0.2.2", 0xC2000002) in kernel.sas
    assert ("192.0.2.2", 0xC2000003) not in kernel.sas


def test_deleting_a_pair_that_no_longer_carries_traffic_promotes_nothing() -> None:
    """The winner of a collision: its own new pair is in the kernel and carries the traffic;
    the old pair goes; the pair it answered for the loser stays held back (it goes next)."""
    kernel = FakeKernel()
    dp = plane(kernel)
    dp.install_child(child())
    dp.install_child(child(spi_in=0xC1000002, spi_out=0xC2000002, active=False))  # the loser's
    dp.install_child(child(spi_in=0xC1000003, spi_out=0xC2000003))  # ours, the winner
    dp.delete_child_sas(5, 0xC1000001, 0xC2000001)
    assert ("192.0.2.2", 0xC2000002) not in kernel.sas
    assert ("192.0.2.2", 0xC2000003) in kernel.sas


def test_every_policy_has_a_guard_for_marked_packets() -> None:
    """A packet carrying the owner bit does not match our policies: the guard (same
    selector, direction and priority, the owner bit as mark value, action block) keeps it
    from leaving or being accepted in clear. In before its policy, out after it."""
    kernel = FakeKernel()
    dp = plane(kernel)
    dp.install_child(child())
    assert len(kernel.policies) == 3 and len(kernel.guards) == 3
    for (direction, sel, _), pol in kernel.policies.items():
        guard = kernel.guards[(direction, sel, (MASK, MASK))]
        assert guard["action"] == 1 and guard.get_attr("XFRMA_TMPL") is None
        assert guard["priority"] == pol["priority"]
        assert pol["action"] == 0
    names = [n for n, _ in kernel.log]
    assert names.index("UPDPOLICY") < names.index("NEWPOLICY")
    dp.remove_policy(5)
    assert kernel.policies == {} and kernel.guards == {}
    dels = [FakeKernel._mark(m) for n, m in kernel.log if n == "DELPOLICY"]
    assert dels[:2] == [(0, MASK), (MASK, MASK)]


def test_a_refused_policy_leaves_no_guard() -> None:
    kernel = FakeKernel()
    dp = plane(kernel)
    real = kernel.request

    def refuse_fwd(msg, msg_type, what, flags=0):  # type: ignore[no-untyped-def]
        if msg_type == XfrmMsg.NEWPOLICY and "fwd" in what:
            raise XfrmError(errno.ENOBUFS, what)
        return real(msg, msg_type, what, flags)

    kernel.request = refuse_fwd  # type: ignore[method-assign]
    with pytest.raises(XfrmError):
        dp.install_child(child())
    assert kernel.policies == {} and kernel.guards == {} and kernel.sas == {}


def test_unknown_pairs_and_counters() -> None:
    kernel = FakeKernel()
    dp = plane(kernel)
    dp.delete_child_sas(9, 1, 2)  # unknown: no error, nothing sent
    dp.remove_policy(9)
    assert kernel.log == []
    with pytest.raises(KeyError):
        dp.counters(9, 1, 2)
    dp.install_child(child())
    sa_in = kernel.sas[("192.0.2.1", 0xC1000001)]
    sa_in["curlft"].update(bytes=1000, packets=10)
    sa_in["stats"].update(replay=2, replay_window=1, integrity_failed=4)
    kernel.sas[("192.0.2.2", 0xC2000001)]["curlft"].update(bytes=500, packets=5)
    c = dp.counters(5, 0xC1000001, 0xC2000001)
    assert (c.bytes_in, c.packets_in, c.bytes_out, c.packets_out) == (1000, 10, 500, 5)
    assert (c.replay_drops, c.auth_failures, c.last_used) == (3, 4, None)
    # without XFRMA_LASTUSED (kernels before 6.2) the first use stands in
    sa_in["curlft"]["use_time"] = int(time.time()) - 30
    last = dp.counters(5, 0xC1000001, 0xC2000001).last_used
    assert last is not None and 20 < time.monotonic() - last < 3600


def test_reconcile_removes_only_what_carries_our_mark() -> None:
    kernel = FakeKernel()
    first = plane(kernel)
    first.install_child(child())
    # a foreign policy and a foreign SA (no mark, another mask)
    foreign = FakeKernel()
    other = plane(foreign, owner_mask=0x4000)
    other.install_child(child(reqid=1, spi_in=0xF1, spi_out=0xF2))
    kernel.policies.update(foreign.policies)
    kernel.guards.update(foreign.guards)
    kernel.sas.update(foreign.sas)
    assert len(kernel.guards) == 6
    # the first run "crashes": a new plane on the same kernel reconciles
    second = plane(kernel)
    assert second.stats()["reconciled_policies"] == 3
    assert second.stats()["reconciled_sas"] == 2
    assert set(kernel.policies) == set(foreign.policies)
    assert set(kernel.guards) == set(foreign.guards)  # ours went with our policies
    assert set(kernel.sas) == set(foreign.sas)


def test_existing_policy_with_our_mark_is_taken_over() -> None:
    kernel = FakeKernel()
    dp = plane(kernel, reconcile=False)
    dp.install_child(child())
    again = plane(kernel, reconcile=False)
    again.install_child(child(spi_in=0xC1000009, spi_out=0xC2000009))
    # 3 guards each time (a leftover guard is simply replaced), and the 3 policies taken over
    assert [n for n, _ in kernel.log].count("UPDPOLICY") == 9
    assert len(kernel.policies) == 3 and len(kernel.guards) == 3


def _expire(spi: int, daddr: str, hard: int, mask: int) -> bytes:
    state = XfrmUsersaInfo.empty()
    state["id"] = {"daddr": pack_address(daddr), "spi": spi, "proto": 50}
    state.update(reqid=5, family=socket.AF_INET, mode=1)
    body = XfrmUserExpire.pack({"state": state, "hard": hard})
    body += struct.pack("=HHII", 12, 21, 0, mask)
    return struct.pack("=IHHII", 16 + len(body), XfrmMsg.EXPIRE, 0, 0, 0) + body


def test_expire_and_acquire_become_engine_events() -> None:
    kernel = FakeKernel()
    dp = plane(kernel)
    woken: list[bool] = []
    dp.set_event_callback(lambda: woken.append(True))
    dp.install_child(child())
    for msg in parse(_expire(0xC1000001, "192.0.2.1", 0, MASK)):
        dp._on_kernel_message(msg)
    for msg in parse(_expire(0xC2000001, "192.0.2.2", 1, MASK)):
        dp._on_kernel_message(msg)
    for msg in parse(_expire(0xC2000001, "192.0.2.2", 1, 0x4000)):  # not our mark
        dp._on_kernel_message(msg)
    for msg in parse(_expire(0xDEAD, "192.0.2.2", 1, MASK)):  # not our SA
        dp._on_kernel_message(msg)
    acquire = XfrmUserAcquire.empty()
    acquire["sel"].update(
        saddr=pack_address("10.1.0.7"), daddr=pack_address("10.2.3.4"), family=socket.AF_INET
    )
    tmpl = XfrmUserTmpl.pack({"reqid": 5, "family": socket.AF_INET})
    body = XfrmUserAcquire.pack(acquire) + struct.pack("=HH", 4 + len(tmpl), 5) + tmpl
    body += struct.pack("=HHII", 12, 21, 0, MASK)
    raw = struct.pack("=IHHII", 16 + len(body), XfrmMsg.ACQUIRE, 0, 0, 0) + body
    for msg in parse(raw):
        dp._on_kernel_message(msg)
    assert dp.poll_events() == [
        SaExpired(5, 0xC1000001, ExpireKind.SOFT),
        SaExpired(5, 0xC2000001, ExpireKind.HARD),
        Acquire(5, "10.1.0.7", "10.2.3.4"),
    ]
    assert dp.poll_events() == [] and len(woken) == 3
    assert dp.stats()["foreign_events"] == 2


def test_encap_socket_option_and_bypass() -> None:
    class Sock:
        family = socket.AF_INET

        def __init__(self) -> None:
            self.options: list[tuple[int, int, object]] = []

        def setsockopt(self, level: int, option: int, value: object) -> None:
            self.options.append((level, option, value))

    sock = Sock()
    dp = XfrmDataplane(events=False)
    assert dp.attach_encap_socket(sock, ("0.0.0.0", 4500), lambda *a: None) is False
    assert sock.options[0] == (17, 100, 2)  # SOL_UDP, UDP_ENCAP, UDP_ENCAP_ESPINUDP
    dirs = [opt[2][160] for opt in sock.options[1:]]  # xfrm_userpolicy_info.dir
    assert [opt[:2] for opt in sock.options[1:]] == [(0, 17), (0, 17)] and dirs == [0, 1]


def test_factory_and_not_started() -> None:
    dp = create_dataplane("xfrm", owner_mask=0x8000)
    assert isinstance(dp, XfrmDataplane) and dp.owner_mask == 0x8000
    with pytest.raises(XfrmError):
        dp.install_child(child())
    with pytest.raises(ValueError):
        XfrmDataplane(owner_mask=0)
