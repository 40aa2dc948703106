"""Trap policies of the xfrm data plane against the fake kernel of test_xfrm_plane (and the
fake rtnetlink of test_xfrm_duplicates): policies, guards and routes without SA, children on a
trapped reqid, the trap armed again when its last pair goes, rollback, the sysctls that make
the kernel hold packets, and the ACQUIRE a trap raises."""

from __future__ import annotations

import errno
import json
import logging
import socket
import struct
from pathlib import Path

import pytest
from test_xfrm_duplicates import FakeIPRoute
from test_xfrm_plane import MASK, FakeKernel, child, plane, ts

from ikeagent.dataplane.base import Acquire, TrafficSelector, TrapPolicy
from ikeagent.dataplane.xfrm import XfrmDataplane, XfrmError
from ikeagent.dataplane.xfrm.messages import XfrmMsg, parse
from ikeagent.dataplane.xfrm.structs import (
    XfrmUserAcquire,
    XfrmUserExpire,
    XfrmUsersaInfo,
    XfrmUserTmpl,
    pack_address,
    unpack_address,
)
from ikeagent.dataplane.xfrm.sysctls import NamespaceSysctls

OUT, IN, FWD = 1, 0, 2  # XFRM_POLICY_OUT/IN/FWD


def trap(
    reqid: int = 5,
    local: str = "",
    local_ts: tuple[TrafficSelector, ...] = (ts("10.1.0.0/24"),),
    remote_ts: tuple[TrafficSelector, ...] = (ts("10.2.0.0/16"),),
) -> TrapPolicy:
    return TrapPolicy(reqid, "net", local, "192.0.2.2", local_ts, remote_ts)


@pytest.fixture
def sysctl_dir(tmp_path: Path) -> Path:
    (tmp_path / "xfrm_larval_drop").write_text("1\n")
    (tmp_path / "xfrm_acq_expires").write_text("30\n")
    return tmp_path


def trap_plane(kernel: FakeKernel, sysctl_dir: Path, **options: object) -> XfrmDataplane:
    return plane(kernel, sysctl_root=str(sysctl_dir), **options)


def templates(kernel: FakeKernel) -> dict[int, tuple[str, str, int]]:
    """direction -> (template source, destination, reqid) of the kernel's policies (one
    selector pair)."""
    found = {}
    for (direction, _, _), msg in kernel.policies.items():
        (tmpl,) = msg.get_attr("XFRMA_TMPL")
        family = tmpl["family"]
        found[direction] = (
            unpack_address(tmpl["saddr"], family),
            unpack_address(tmpl["id"]["daddr"], family),
            tmpl["reqid"],
        )
    return found


def requests(kernel: FakeKernel, since: int = 0) -> list[str]:
    return [name for name, _ in kernel.log[since:]]


# -- installing traps ------------------------------------------------------------------------


def test_a_trap_installs_policies_guards_and_routes_but_no_sa(sysctl_dir: Path) -> None:
    kernel, ipr = FakeKernel(), FakeIPRoute()
    dp = trap_plane(kernel, sysctl_dir, install_routes=True, iproute=lambda netns: ipr)
    dp.install_trap(trap())
    assert kernel.sas == {} and "NEWSA" not in requests(kernel)
    assert len(kernel.policies) == 3 and len(kernel.guards) == 3
    assert all(key[2] == (0, MASK) for key in kernel.policies)
    for (direction, sel, _), pol in kernel.policies.items():
        assert kernel.guards[(direction, sel, (MASK, MASK))]["action"] == 1
        assert pol["action"] == 0
    # no local address: the template leaves it all-zero ("any"), the peer's is named
    assert templates(kernel) == {
        OUT: ("0.0.0.0", "192.0.2.2", 5),
        IN: ("192.0.2.2", "0.0.0.0", 5),
        FWD: ("192.0.2.2", "0.0.0.0", 5),
    }
    out = next(m for k, m in kernel.policies.items() if k[0] == OUT)
    assert out.get_attr("XFRMA_TMPL")[0]["family"] == socket.AF_INET
    assert (out["sel"]["prefixlen_s"], out["sel"]["prefixlen_d"]) == (24, 16)
    assert sorted(ipr.routes) == [("10.2.0.0/16", 220)]
    stats = dp.stats()
    assert (stats["traps"], stats["traps_installed"], stats["sa_pairs"]) == (1, 1, 0)
    assert (stats["children"], stats["policies"]) == (1, 3)
    dp.close()  # traps go too
    assert kernel.policies == {} and kernel.guards == {} and ipr.routes == {}
    assert dp.stats()["traps"] == 0


def test_a_trap_on_a_reqid_with_policies_changes_nothing(sysctl_dir: Path) -> None:
    kernel = FakeKernel()
    dp = trap_plane(kernel, sysctl_dir)
    dp.install_trap(trap())
    sent = len(kernel.log)
    dp.install_trap(trap())
    assert len(kernel.log) == sent and dp.stats()["traps_installed"] == 1
    # a child's reqid (dpd_action/close_action: trap while its SAs are still up)
    dp.install_child(child(reqid=6, remote_ts=(ts("10.3.0.0/16"),)))
    sent = len(kernel.log)
    dp.install_trap(trap(reqid=6, remote_ts=(ts("10.3.0.0/16"),)))
    assert len(kernel.log) == sent
    assert dp.stats()["traps"] == 2 and dp.stats()["policies"] == 6


def test_a_trap_needs_the_peers_address(sysctl_dir: Path) -> None:
    kernel = FakeKernel()
    dp = trap_plane(kernel, sysctl_dir)
    with pytest.raises(ValueError):
        dp.install_trap(TrapPolicy(5, "net", "", "", (ts("10.1.0.0/24"),), (ts("10.2.0.0/16"),)))
    assert kernel.policies == {} and kernel.guards == {} and dp.stats()["children"] == 0


# -- children on trapped reqids ----------------------------------------------------------


def test_a_child_on_its_trap_adds_only_its_sas(sysctl_dir: Path) -> None:
    kernel = FakeKernel()
    dp = trap_plane(kernel, sysctl_dir)
    dp.install_trap(trap(local="192.0.2.1"))  # the child's own endpoints
    before = {k: (m["priority"], templates(kernel)[k[0]]) for k, m in kernel.policies.items()}
    sent = len(kernel.log)
    dp.install_child(child())
    assert sorted(kernel.sas) == [("192.0.2.1", 0xC1000001), ("192.0.2.2", 0xC2000001)]
    after = {k: (m["priority"], templates(kernel)[k[0]]) for k, m in kernel.policies.items()}
    assert after == before and len(kernel.guards) == 3
    # besides the SAs, only the unchanged out policy is sent again: the kernel then sends the
    # packets it held for it at once (xfrm_policy_requeue)
    assert requests(kernel, sent) == ["NEWSA", "NEWSA", "UPDPOLICY"]
    assert kernel.log[-1][1]["dir"] == OUT and kernel.log[-1][1].get_attr("XFRMA_MARK")["v"] == 0
    assert dp.stats()["sa_pairs"] == 1 and dp.stats()["policies"] == 3
    # a rekey (a further pair) sends no policy at all
    sent = len(kernel.log)
    dp.install_child(child(spi_in=0xC1000002, spi_out=0xC2000002))
    assert requests(kernel, sent) == ["NEWSA", "NEWSA"]


def test_a_trap_without_local_address_takes_the_childs_and_gets_it_back(
    sysctl_dir: Path,
) -> None:
    kernel = FakeKernel()
    dp = trap_plane(kernel, sysctl_dir)
    dp.install_trap(trap())
    sent = len(kernel.log)
    dp.install_child(child())
    assert requests(kernel, sent) == ["NEWSA", "NEWSA", "UPDPOLICY", "UPDPOLICY", "UPDPOLICY"]
    assert templates(kernel) == {
        OUT: ("192.0.2.1", "192.0.2.2", 5),
        IN: ("192.0.2.2", "192.0.2.1", 5),
        FWD: ("192.0.2.2", "192.0.2.1", 5),
    }
    dp.delete_child_sas(5, 0xC1000001, 0xC2000001)
    # the trap is armed again as it was installed
    assert kernel.sas == {} and len(kernel.policies) == 3 and len(kernel.guards) == 3
    assert templates(kernel)[OUT] == ("0.0.0.0", "192.0.2.2", 5)
    assert templates(kernel)[IN] == ("192.0.2.2", "0.0.0.0", 5)
    assert dp.stats()["traps"] == 1 and dp.stats()["sa_pairs"] == 0


def test_deleting_the_last_pair_keeps_the_policies_armed(sysctl_dir: Path) -> None:
    kernel, ipr = FakeKernel(), FakeIPRoute()
    dp = trap_plane(kernel, sysctl_dir, install_routes=True, iproute=lambda netns: ipr)
    dp.install_trap(trap(local="192.0.2.1"))
    dp.install_child(child())
    dp.install_child(child(spi_in=0xC1000002, spi_out=0xC2000002))
    dp.delete_child_sas(5, 0xC1000001, 0xC2000001)
    assert len(kernel.sas) == 2
    sent = len(kernel.log)
    dp.delete_child_sas(5, 0xC1000002, 0xC2000002)
    assert requests(kernel, sent) == ["DELSA", "DELSA"]  # no policy touched
    assert (
        kernel.sas == {}
        and len(kernel.policies) == 3
        and sorted(ipr.routes) == [("10.2.0.0/16", 220)]
    )
    # armed again: the next child's first pair releases held packets again
    sent = len(kernel.log)
    dp.install_child(child(spi_in=0xC1000003, spi_out=0xC2000003))
    assert requests(kernel, sent) == ["NEWSA", "NEWSA", "UPDPOLICY"]


def test_a_plain_childs_last_pair_leaves_its_policy_to_remove_policy(sysctl_dir: Path) -> None:
    kernel = FakeKernel()
    dp = trap_plane(kernel, sysctl_dir)
    dp.install_child(child())
    sent = len(kernel.log)
    dp.delete_child_sas(5, 0xC1000001, 0xC2000001)
    assert requests(kernel, sent) == ["DELSA", "DELSA"] and len(kernel.policies) == 3
    assert dp.stats()["traps"] == 0
    assert (sysctl_dir / "xfrm_larval_drop").read_text() == "1\n"  # no trap, no sysctl


def test_a_narrowed_child_adds_its_policies_and_all_go_with_remove_policy(
    sysctl_dir: Path,
) -> None:
    kernel, ipr = FakeKernel(), FakeIPRoute()
    dp = trap_plane(kernel, sysctl_dir, install_routes=True, iproute=lambda netns: ipr)
    dp.install_trap(trap(local="192.0.2.1", local_ts=(ts("10.1.0.0/16"),)))
    narrow = child(local_ts=(ts("10.1.0.0/24"),), remote_ts=(ts("10.2.3.0/24"),))
    dp.install_child(narrow)
    assert len(kernel.policies) == 6 and len(kernel.guards) == 6
    prefixes = sorted(
        (m["sel"]["prefixlen_s"], m["sel"]["prefixlen_d"])
        for k, m in kernel.policies.items()
        if k[0] == OUT
    )
    assert prefixes == [(16, 16), (24, 24)]
    prios = {(m["sel"]["prefixlen_s"], k[0]): m["priority"] for k, m in kernel.policies.items()}
    assert prios[(24, OUT)] < prios[(16, OUT)]  # the narrower policy is preferred
    assert set(templates(kernel).values()) <= {
        ("192.0.2.1", "192.0.2.2", 5),
        ("192.0.2.2", "192.0.2.1", 5),
    }
    assert sorted(ipr.routes) == [("10.2.0.0/16", 220), ("10.2.3.0/24", 220)]
    dp.delete_child_sas(5, 0xC1000001, 0xC2000001)
    assert len(kernel.policies) == 6 and kernel.sas == {}  # all stay with the reqid
    dp.install_child(narrow)  # the next child: nothing more to add
    assert len(kernel.policies) == 6
    dp.remove_policy(5)
    assert kernel.policies == {} and kernel.guards == {} and kernel.sas == {}
    assert ipr.routes == {} and dp.stats()["children"] == 0 and dp.stats()["traps"] == 0


def test_remove_policy_of_a_trap_with_sas_removes_everything(sysctl_dir: Path) -> None:
    kernel, ipr = FakeKernel(), FakeIPRoute()
    dp = trap_plane(kernel, sysctl_dir, install_routes=True, iproute=lambda netns: ipr)
    dp.install_trap(trap())
    dp.install_child(child())
    dp.remove_policy(5)
    assert kernel.policies == {} and kernel.guards == {} and kernel.sas == {}
    assert ipr.routes == {} and dp.stats()["traps"] == 0
    dp.remove_policy(5)  # twice: nothing


# -- all or nothing ----------------------------------------------------------------------


def refuse(kernel: FakeKernel, msg_type: int, what: str) -> None:
    real = kernel.request

    def request(msg, t, text, flags=0):  # type: ignore[no-untyped-def]
        if t == msg_type and what in text:
            raise XfrmError(errno.ENOBUFS, text)
        return real(msg, t, text, flags)

    kernel.request = request  # type: ignore[method-assign]


def test_a_trap_refused_midway_leaves_nothing(sysctl_dir: Path) -> None:
    kernel, ipr = FakeKernel(), FakeIPRoute()
    dp = trap_plane(kernel, sysctl_dir, install_routes=True, iproute=lambda netns: ipr)
    refuse(kernel, XfrmMsg.NEWPOLICY, "fwd")
    with pytest.raises(XfrmError):
        dp.install_trap(trap())
    assert kernel.policies == {} and kernel.guards == {} and ipr.routes == {}
    stats = dp.stats()
    assert (stats["children"], stats["traps"], stats["traps_installed"]) == (0, 0, 0)
    assert (sysctl_dir / "xfrm_larval_drop").read_text() == "1\n"


def test_a_refused_sa_leaves_the_trap_as_it_was(sysctl_dir: Path) -> None:
    kernel = FakeKernel()
    dp = trap_plane(kernel, sysctl_dir)
    dp.install_trap(trap())
    before = templates(kernel)
    refuse(kernel, XfrmMsg.NEWSA, "outbound")
    with pytest.raises(XfrmError):
        dp.install_child(child())
    assert kernel.sas == {} and templates(kernel) == before and len(kernel.guards) == 3
    assert dp.stats()["traps"] == 1 and dp.stats()["install_failures"] == 1


def test_a_narrowed_child_refused_midway_takes_everything_back(sysctl_dir: Path) -> None:
    kernel, ipr = FakeKernel(), FakeIPRoute()
    dp = trap_plane(kernel, sysctl_dir, install_routes=True, iproute=lambda netns: ipr)
    dp.install_trap(trap(local_ts=(ts("10.1.0.0/16"),)))
    before = {k: m["priority"] for k, m in kernel.policies.items()}
    before_tmpl = templates(kernel)
    refuse(kernel, XfrmMsg.NEWPOLICY, "fwd")  # the narrowed child's fwd policy
    with pytest.raises(XfrmError):
        dp.install_child(child(remote_ts=(ts("10.2.3.0/24"),)))
    assert kernel.sas == {}
    assert {k: m["priority"] for k, m in kernel.policies.items()} == before
    assert len(kernel.guards) == 3 and templates(kernel) == before_tmpl
    assert sorted(ipr.routes) == [("10.2.0.0/16", 220)]
    assert dp.stats()["policies"] == 3 and dp.stats()["sa_pairs"] == 0


# -- sysctls -------------------------------------------------------------------------------


def test_the_first_trap_sets_the_sysctls_and_close_restores_them(
    sysctl_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    kernel = FakeKernel()
    dp = trap_plane(kernel, sysctl_dir)
    dp.install_child(child(reqid=9, remote_ts=(ts("10.9.0.0/16"),)))
    assert (sysctl_dir / "xfrm_larval_drop").read_text() == "1\n"
    with caplog.at_level(logging.INFO, logger="ikeagent.dataplane.xfrm.sysctls"):
        dp.install_trap(trap())
    assert (sysctl_dir / "xfrm_larval_drop").read_text().strip() == "0"
    assert (sysctl_dir / "xfrm_acq_expires").read_text().strip() == "5"  # ACQUIRE_RETRY
    assert "xfrm_larval_drop from 1 to 0" in caplog.text
    (sysctl_dir / "xfrm_acq_expires").write_text("7\n")  # someone else's change meanwhile
    dp.install_trap(trap(reqid=6, remote_ts=(ts("10.3.0.0/16"),)))  # set once only
    assert (sysctl_dir / "xfrm_acq_expires").read_text() == "7\n"
    dp.remove_policy(5)
    dp.remove_policy(6)
    assert (sysctl_dir / "xfrm_larval_drop").read_text().strip() == "0"  # until close
    with caplog.at_level(logging.INFO, logger="ikeagent.dataplane.xfrm.sysctls"):
        dp.close()
    assert (sysctl_dir / "xfrm_larval_drop").read_text().strip() == "1"
    assert (sysctl_dir / "xfrm_acq_expires").read_text().strip() == "30"
    assert "restored xfrm_larval_drop to 1" in caplog.text


def test_sysctls_left_alone_when_asked_or_already_set(sysctl_dir: Path) -> None:
    kernel = FakeKernel()
    dp = trap_plane(kernel, sysctl_dir, hold_packets=False, acquire_retry=None)
    dp.install_trap(trap())
    dp.close()
    assert (sysctl_dir / "xfrm_larval_drop").read_text() == "1\n"
    assert (sysctl_dir / "xfrm_acq_expires").read_text() == "30\n"
    # already 0 before us: not ours to restore
    (sysctl_dir / "xfrm_larval_drop").write_text("0\n")
    dp = trap_plane(FakeKernel(), sysctl_dir)
    dp.install_trap(trap())
    dp.close()
    assert (sysctl_dir / "xfrm_larval_drop").read_text() == "0\n"
    assert (sysctl_dir / "xfrm_acq_expires").read_text().strip() == "30"


def test_unwritable_sysctls_do_not_stop_a_trap(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    kernel = FakeKernel()
    dp = trap_plane(kernel, tmp_path / "missing")
    with caplog.at_level(logging.WARNING):
        dp.install_trap(trap())
    assert len(kernel.policies) == 3 and "cannot set" in caplog.text
    dp.close()
    # a namespace that cannot be entered: logged, not raised, nothing to restore
    sysctls = NamespaceSysctls("ikelab-no-such-netns", str(tmp_path))
    sysctls.set("xfrm_larval_drop", 0, "test")
    assert sysctls.changed() == {}


def test_sysctls_left_by_a_killed_agent_are_put_back_by_the_next(
    sysctl_dir: Path, tmp_path: Path
) -> None:
    state = tmp_path / "run" / "xfrm-sysctls.json"
    first = trap_plane(FakeKernel(), sysctl_dir, sysctl_state=str(state))
    first.install_trap(trap())
    assert (sysctl_dir / "xfrm_larval_drop").read_text() == "0\n"
    assert json.loads(state.read_text()) == {"xfrm_larval_drop": "1", "xfrm_acq_expires": "30"}
    assert state.stat().st_mode & 0o777 == 0o600
    # killed: no close(); the next agent starts (reconciling) with no trap configured
    second = trap_plane(FakeKernel(), sysctl_dir, sysctl_state=str(state))
    assert (sysctl_dir / "xfrm_larval_drop").read_text() == "1\n"
    assert (sysctl_dir / "xfrm_acq_expires").read_text() == "30\n"
    assert not state.exists()
    # a clean stop leaves no record either
    second.install_trap(trap())
    assert state.exists()
    second.close()
    assert not state.exists() and (sysctl_dir / "xfrm_larval_drop").read_text() == "1\n"
    # a record naming something else is not written to /proc
    state.write_text(json.dumps({"ip_forward": "1", "xfrm_acq_expires": "x"}))
    (sysctl_dir / "ip_forward").write_text("0\n")
    assert NamespaceSysctls(None, str(sysctl_dir), str(state)).recover() == {}
    assert (sysctl_dir / "ip_forward").read_text() == "0\n" and not state.exists()


# -- ACQUIREs --------------------------------------------------------------------------------


def _acquire(src: str, dst: str, reqid: int, mask: int, tmpl_src: str = "0.0.0.0") -> bytes:
    """An ACQUIRE as the kernel builds it for an out policy (build_acquire): the larval
    state's selector from the packet's flow, the policy's template and mark."""
    acquire = XfrmUserAcquire.empty()
    acquire["id"] = {"daddr": pack_address("192.0.2.2"), "spi": 0, "proto": 50}
    acquire["saddr"] = pack_address("192.0.2.1")
    acquire["sel"].update(
        saddr=pack_address(src),
        daddr=pack_address(dst),
        prefixlen_s=32,
        prefixlen_d=32,
        proto=1,
        family=socket.AF_INET,
    )
    acquire["policy"]["dir"] = OUT
    tmpl = XfrmUserTmpl.pack(
        {
            "id": {"daddr": pack_address("192.0.2.2"), "proto": 50},
            "saddr": pack_address(tmpl_src),
            "reqid": reqid,
            "mode": 1,
            "family": socket.AF_INET,
        }
    )
    body = XfrmUserAcquire.pack(acquire) + struct.pack("=HH", 4 + len(tmpl), 5) + tmpl
    body += struct.pack("=HHII", 12, 21, 0, mask)
    return struct.pack("=IHHII", 16 + len(body), XfrmMsg.ACQUIRE, 0, 0, 0) + body


def _larval_expire(mask: int) -> bytes:
    state = XfrmUsersaInfo.empty()
    state["id"] = {"daddr": pack_address("192.0.2.2"), "spi": 0, "proto": 50}
    state.update(reqid=5, family=socket.AF_INET, mode=1)
    body = XfrmUserExpire.pack({"state": state, "hard": 1})
    body += struct.pack("=HHII", 12, 21, 0, mask)
    return struct.pack("=IHHII", 16 + len(body), XfrmMsg.EXPIRE, 0, 0, 0) + body


def test_a_forwarded_packet_on_a_trap_becomes_an_acquire(sysctl_dir: Path) -> None:
    kernel = FakeKernel()
    dp = trap_plane(kernel, sysctl_dir)
    woken: list[bool] = []
    dp.set_event_callback(lambda: woken.append(True))
    dp.install_trap(trap())
    for raw in (
        _acquire("10.1.0.7", "10.2.3.4", 5, MASK),  # from a host behind us
        _acquire("10.1.0.7", "10.2.3.4", 5, 0x4000),  # another agent's mask
        _acquire("10.1.0.7", "10.2.3.4", 0, MASK),  # no reqid in the template
        _larval_expire(MASK),  # the larval state of the first one runs out: no SA of ours
    ):
        for msg in parse(raw):
            dp._on_kernel_message(msg)
    assert dp.poll_events() == [Acquire(5, "10.1.0.7", "10.2.3.4")]
    stats = dp.stats()
    assert (stats["acquires"], stats["foreign_events"], len(woken)) == (1, 3, 1)


def test_two_reqids_to_one_network_from_two_local_networks_keep_a_route(
    sysctl_dir: Path,
) -> None:
    """The kernel has one route per network in our table: the second reqid's (its own source
    address) replaces the first's, and when either goes the other's is back in."""
    ipr = FakeIPRoute(addrs=("10.1.0.1", "10.1.1.1"))
    dp = trap_plane(FakeKernel(), sysctl_dir, install_routes=True, iproute=lambda netns: ipr)
    dp.install_trap(trap(reqid=11, local_ts=(ts("10.1.1.0/24"),)))
    dp.install_trap(trap(reqid=12, local="192.0.2.1", local_ts=(ts("10.1.0.0/24"),)))
    assert ipr.routes[("10.2.0.0/16", 220)]["prefsrc"] == "10.1.0.1"  # the newest
    dp.remove_policy(12)
    assert ipr.routes[("10.2.0.0/16", 220)]["prefsrc"] == "10.1.1.1"  # the other's again
    dp.install_trap(trap(reqid=12, local="192.0.2.1", local_ts=(ts("10.1.0.0/24"),)))
    dp.remove_policy(11)
    assert ipr.routes[("10.2.0.0/16", 220)]["prefsrc"] == "10.1.0.1"
    dp.remove_policy(12)
    assert ipr.routes == {}
