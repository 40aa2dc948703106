"""The xfrm data plane against the fake kernel of test_xfrm_plane: duplicate children (same
selectors, different reqids), the SA flags strongSwan sets, counters of vanished SAs, and the
routes it asks rtnetlink for (a fake IPRoute records them)."""

from __future__ import annotations

import errno
import socket

import pytest
from test_xfrm_plane import MASK, FakeKernel, child, plane, ts

from ikeagent.dataplane.xfrm import XfrmError
from ikeagent.dataplane.xfrm.build import sa_message
from ikeagent.dataplane.xfrm.messages import XfrmMsg, encode, parse
from ikeagent.dataplane.xfrm.routes import RTPROT_IKEAGENT

XFRM_STATE_AF_UNSPEC = 32  # include/uapi/linux/xfrm.h


def _tmpl_reqids(kernel: FakeKernel) -> dict[int, int]:
    """direction -> reqid of the template of the kernel's policy in that direction."""
    return {key[0]: msg.get_attr("XFRMA_TMPL")[0]["reqid"] for key, msg in kernel.policies.items()}


# -- XFRM_STATE_AF_UNSPEC ---------------------------------------------------------------


def test_tunnel_mode_sas_carry_af_unspec_in_the_same_family() -> None:
    for inbound in (True, False):
        msg = parse(encode(sa_message(child(), inbound, MASK), XfrmMsg.NEWSA, 5))[0]
        assert msg["mode"] == 1  # XFRM_MODE_TUNNEL
        assert msg["flags"] & XFRM_STATE_AF_UNSPEC
        assert msg["sel"]["family"] == 0  # the selector stays empty


# -- counters of SAs gone from the kernel ------------------------------------------------


@pytest.mark.parametrize("code", [errno.ESRCH, errno.ENOENT])
def test_counters_of_an_sa_gone_behind_our_back_raise_key_error(code: int) -> None:
    kernel = FakeKernel()
    dp = plane(kernel)
    dp.install_child(child())

    def gone(msg, msg_type, what):
        raise XfrmError(code, what)

    kernel.get = gone  # type: ignore[method-assign]
    with pytest.raises(KeyError):
        dp.counters(5, 0xC1000001, 0xC2000001)


def test_counters_pass_other_errors_on() -> None:
    kernel = FakeKernel()
    dp = plane(kernel)
    dp.install_child(child())

    def refused(msg, msg_type, what):
        raise XfrmError(errno.EPERM, what)

    kernel.get = refused  # type: ignore[method-assign]
    with pytest.raises(XfrmError):
        dp.counters(5, 0xC1000001, 0xC2000001)


# -- duplicate children ------------------------------------------------------------------


def test_removing_the_older_duplicate_leaves_the_newer_ones_policies() -> None:
    kernel = FakeKernel()
    dp = plane(kernel)
    dp.install_child(child(reqid=5))
    dp.install_child(child(reqid=6, spi_in=0xC1000002, spi_out=0xC2000002))
    assert _tmpl_reqids(kernel) == {0: 6, 1: 6, 2: 6}  # the newest reqid's policies
    dp.remove_policy(5)
    assert _tmpl_reqids(kernel) == {0: 6, 1: 6, 2: 6}
    assert sorted(kernel.sas) == [("192.0.2.1", 0xC1000002), ("192.0.2.2", 0xC2000002)]
    dp.remove_policy(6)
    assert kernel.policies == {} and kernel.sas == {}


def test_removing_the_newer_duplicate_restores_the_older_ones_policies() -> None:
    kernel = FakeKernel()
    dp = plane(kernel)
    dp.install_child(child(reqid=5))
    dp.install_child(child(reqid=6, spi_in=0xC1000002, spi_out=0xC2000002))
    dp.remove_policy(6)
    assert _tmpl_reqids(kernel) == {0: 5, 1: 5, 2: 5}
    assert sorted(kernel.sas) == [("192.0.2.1", 0xC1000001), ("192.0.2.2", 0xC2000001)]
    dp.close()
    assert kernel.policies == {} and kernel.sas == {}


def test_partly_overlapping_duplicates_share_only_the_common_policies() -> None:
    kernel = FakeKernel()
    dp = plane(kernel)
    dp.install_child(child(reqid=5))
    wider = (ts("10.2.0.0/16"), ts("10.3.0.0/16"))
    dp.install_child(child(reqid=6, spi_in=0xC1000002, spi_out=0xC2000002, remote_ts=wider))
    assert len(kernel.policies) == 6
    dp.remove_policy(5)
    assert len(kernel.policies) == 6
    assert set(_tmpl_reqids(kernel).values()) == {6}
    dp.remove_policy(6)
    assert kernel.policies == {}


def test_failed_duplicate_gives_the_policies_back() -> None:
    kernel = FakeKernel()
    dp = plane(kernel)
    dp.install_child(child(reqid=5))
    kernel.refuse_sa = "no ESP"
    with pytest.raises(XfrmError):
        dp.install_child(child(reqid=6, spi_in=0xC1000002, spi_out=0xC2000002))
    assert _tmpl_reqids(kernel) == {0: 5, 1: 5, 2: 5}
    assert dp.stats()["children"] == 1


# -- routes (fake rtnetlink) -------------------------------------------------------------


class _Msg(dict):
    def __init__(self, fields: dict, attrs: dict) -> None:
        super().__init__(fields)
        self.attrs = attrs

    def get_attr(self, name: str):
        return self.attrs.get(name)


class FakeIPRoute:
    """Records route/rule requests; the peer 192.0.2.2 is on-link via interface 2 unless a
    gateway is given; the host has the addresses in ``addrs``."""

    def __init__(self, gateway: str | None = None, addrs: tuple[str, ...] = ("10.1.0.1",)):
        self.gateway = gateway
        self.addrs = addrs
        self.routes: dict[tuple, dict] = {}
        self.rules: list[dict] = []
        self.closed = False

    def route(self, cmd: str, **kw):
        if cmd == "get":
            if not kw["dst"].startswith("192.0.2."):
                raise OSError(errno.ENETUNREACH, "unreachable")
            return [_Msg({}, {"RTA_GATEWAY": self.gateway, "RTA_OIF": 2})]
        key = (kw["dst"], kw["table"])
        if cmd in ("add", "replace"):
            self.routes[key] = kw
        elif cmd == "del" and self.routes.pop(key, None) is None:
            raise OSError(errno.ESRCH, "no such route")
        return []

    def rule(self, cmd: str, **kw):
        if cmd == "add":
            self.rules.append(kw)
        else:
            match = [
                r
                for r in self.rules
                if (r["table"], r["priority"]) == (kw["table"], kw["priority"])
            ]
            if not match:
                raise OSError(errno.ENOENT, "no such rule")
            self.rules.remove(match[0])
        return []

    def get_addr(self):
        return [_Msg({}, {"IFA_LOCAL": a}) for a in self.addrs]

    def get_routes(self, family: int, table: int):
        return [
            _Msg(
                {"family": family, "dst_len": int(dst.split("/")[1]), "proto": r["proto"]},
                {"RTA_DST": dst.split("/")[0], "RTA_TABLE": t},
            )
            for (dst, t), r in self.routes.items()
            if t == table and r["family"] == family
        ]

    def get_rules(self, family: int):
        return [
            _Msg(
                {"family": family},
                {
                    "FRA_TABLE": r["table"],
                    "FRA_PRIORITY": r["priority"],
                    "FRA_PROTOCOL": r.get("protocol"),
                },
            )
            for r in self.rules
            if r["family"] == family
        ]

    def close(self):
        self.closed = True


def test_routes_follow_the_policies_of_their_reqids() -> None:
    ipr = FakeIPRoute()
    dp = plane(FakeKernel(), install_routes=True, iproute=lambda netns: ipr)
    dp.install_child(child(reqid=5, remote_ts=(ts("10.2.0.0/16"), ts("10.3.0.0/24"))))
    assert sorted(ipr.routes) == [("10.2.0.0/16", 220), ("10.3.0.0/24", 220)]
    route = ipr.routes[("10.2.0.0/16", 220)]
    assert route["prefsrc"] == "10.1.0.1" and route["oif"] == 2 and "gateway" not in route
    assert route["proto"] == RTPROT_IKEAGENT and route["family"] == socket.AF_INET
    assert [(r["table"], r["priority"]) for r in ipr.rules] == [(220, 220)]
    # a duplicate with the same remote network shares the route until both are gone
    dp.install_child(child(reqid=6, spi_in=0xC1000002, spi_out=0xC2000002))
    dp.remove_policy(5)
    assert sorted(ipr.routes) == [("10.2.0.0/16", 220)]
    dp.remove_policy(6)
    assert ipr.routes == {}
    dp.close()
    assert ipr.rules == [] and ipr.closed


def test_route_via_gateway_without_local_address_in_local_ts() -> None:
    ipr = FakeIPRoute(gateway="192.0.2.254", addrs=("192.0.2.1",))
    dp = plane(FakeKernel(), install_routes=True, iproute=lambda netns: ipr, routing_table=100)
    dp.install_child(child())
    route = ipr.routes[("10.2.0.0/16", 100)]
    assert route["gateway"] == "192.0.2.254" and "prefsrc" not in route
    dp.close()
    assert ipr.routes == {} and ipr.rules == []


def test_reconcile_removes_only_our_leftover_routes() -> None:
    ipr = FakeIPRoute()
    ipr.routes[("10.9.0.0/16", 220)] = {"family": socket.AF_INET, "proto": RTPROT_IKEAGENT}
    ipr.routes[("10.8.0.0/16", 220)] = {"family": socket.AF_INET, "proto": 4}  # static
    ipr.rules.append(
        {"family": socket.AF_INET, "table": 220, "priority": 220, "protocol": RTPROT_IKEAGENT}
    )
    dp = plane(FakeKernel(), install_routes=True, iproute=lambda netns: ipr)
    assert sorted(ipr.routes) == [("10.8.0.0/16", 220)] and ipr.rules == []
    assert dp.stats()["reconciled_routes"] == 1
    dp.close()


def test_no_route_to_the_peer_is_not_fatal() -> None:
    ipr = FakeIPRoute()
    kernel = FakeKernel()
    dp = plane(kernel, install_routes=True, iproute=lambda netns: ipr)
    sa = child()
    object.__setattr__(sa, "remote_addr", "198.18.0.2")  # no route there in the fake
    dp.install_child(sa)
    assert ipr.routes == {} and len(kernel.policies) == 3
    assert dp.stats()["route_failures"] == 1
    dp.close()
