"""A rekey responder's new pair carries outbound traffic only once the peer uses it."""

from __future__ import annotations

import dataclasses
import ipaddress

from ikeagent.dataplane.base import ChildSa, SaKeys, TrafficSelector
from ikeagent.dataplane.userspace.sad import Sad

KEY = bytes(range(20))


def pair(spi_in: int, spi_out: int, active: bool = True) -> ChildSa:
    return ChildSa(
        reqid=7,
        name="net",
        local_addr="192.0.2.1",
        remote_addr="192.0.2.2",
        inbound=SaKeys(spi_in, 20, KEY, None),
        outbound=SaKeys(spi_out, 20, KEY, None),
        local_ts=(TrafficSelector(ipaddress.ip_network("10.1.0.0/24")),),
        remote_ts=(TrafficSelector(ipaddress.ip_network("10.2.0.0/24")),),
        encap=(4500, 4500),
        outbound_active=active,
    )


def test_inactive_pair_waits_for_the_peer() -> None:
    sad = Sad()
    policy, _ = sad.install(pair(0x100, 0x200))
    sad.install(pair(0x101, 0x201, active=False))
    assert policy.out is not None and policy.out.spi == 0x200
    sad.inbound[0x101].activate()  # the first packet on the new inbound SA
    assert policy.out.spi == 0x201


def test_deleting_the_old_pair_activates_the_new_one() -> None:
    sad = Sad()
    policy, _ = sad.install(pair(0x100, 0x200))
    sad.install(pair(0x101, 0x201, active=False))
    sad.delete(7, 0x100, 0x200)
    assert policy.out is not None and policy.out.spi == 0x201
    assert sad.inbound[0x101].activates is None


def test_an_active_install_switches_at_once() -> None:
    sad = Sad()
    policy, _ = sad.install(pair(0x100, 0x200))
    sad.install(pair(0x101, 0x201))
    assert policy.out is not None and policy.out.spi == 0x201


def test_first_pair_is_used_even_when_inactive() -> None:
    sad = Sad()
    policy, _ = sad.install(dataclasses.replace(pair(0x100, 0x200), outbound_active=False))
    assert policy.out is not None and policy.out.spi == 0x200
