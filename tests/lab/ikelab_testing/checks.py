"""The three facts that together prove a tunnel works (after strongSwan's evaltest):
the SAs are up with the expected algorithms, traffic between the protected subnets passes now
and did not before, and what crossed the underlay was ESP, never the cleartext."""

from __future__ import annotations

from ikelab_testing.capture import CaptureSummary
from ikelab_testing.netns import PingResult, Topology


def ping_a_to_b(topology: Topology, count: int = 3) -> PingResult:
    return topology.host_a.ping(topology.spec.host_b_addr, count=count)


def assert_blocked(topology: Topology) -> None:
    result = topology.host_a.ping(topology.spec.host_b_addr, count=1, wait=0.5)
    assert not result.ok, f"traffic passed before the tunnel was up: {result}\n{result.output}"


def assert_passes(topology: Topology, count: int = 3) -> PingResult:
    result = ping_a_to_b(topology, count)
    assert result.ok, f"no traffic through the tunnel: {result}\n{result.output}"
    return result


def assert_encrypted(
    summary: CaptureSummary, topology: Topology, *, udp: bool | None = True
) -> None:
    """Everything on the underlay was IKE/ESP (UDP-encapsulated if ``udp``), some ESP was seen,
    and no packet between the protected subnets crossed in cleartext."""
    spec = topology.spec
    clear = summary.cleartext_between(spec.subnet_a, spec.subnet_b)
    assert not clear, "cleartext between the protected subnets on the underlay:\n" + "\n".join(
        str(p) for p in clear[:10]
    )
    assert summary.esp > 0, f"no ESP on the underlay:\n{summary}"
    assert summary.esp_only(require_udp=udp), f"not ESP-only on the underlay:\n{summary}"
