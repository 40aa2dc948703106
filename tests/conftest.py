"""Fixtures shared by all tests: lab namespaces, the standard topology, charon and captures.

Tests marked ``netns`` or ``interop`` (or using the lab fixtures) are skipped with a reason when
not run as root, or when strongSwan is missing (``sudo ./scripts/setup`` installs it); tests
marked ``uml`` also when user-mode-linux or kmod is missing.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from ikelab_testing import charon as charon_mod
from ikelab_testing import uml as uml_mod
from ikelab_testing.capture import Capture
from ikelab_testing.charon import Charon
from ikelab_testing.netns import Lab, Namespace, Topology, TopologySpec

# tests/testinfra checks the sites of a rollout and needs --hosts; the rollout test runs it
collect_ignore = ["testinfra"]


def _netns_skip_reason() -> str | None:
    if os.geteuid() != 0:
        return "needs root for network namespaces (run: sudo ./scripts/test)"
    if shutil.which("ip") is None:
        return "iproute2 (ip) is not installed (run: sudo ./scripts/setup)"
    return None


def _interop_skip_reason() -> str | None:
    if not charon_mod.available():
        return "strongSwan charon/swanctl not installed (run: sudo ./scripts/setup)"
    if shutil.which("tshark") is None or shutil.which("tcpdump") is None:
        return "tshark/tcpdump not installed (run: sudo ./scripts/setup)"
    return None


def pytest_runtest_setup(item: pytest.Item) -> None:
    if item.get_closest_marker("netns") or item.get_closest_marker("interop"):
        reason = _netns_skip_reason()
        if reason:
            pytest.skip(reason)
    if item.get_closest_marker("interop"):
        reason = _interop_skip_reason()
        if reason:
            pytest.skip(reason)
    if item.get_closest_marker("uml"):
        reason = _netns_skip_reason() or uml_mod.available()
        if reason:
            pytest.skip(reason)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[Any]) -> Any:
    report = yield
    setattr(item, f"rep_{report.when}", report)
    return report


def _failed(request: pytest.FixtureRequest) -> bool:
    rep = getattr(request.node, "rep_call", None)
    return rep is None or rep.failed


@pytest.fixture
def lab() -> Iterator[Lab]:
    """A fresh Lab (unique namespace prefix); everything it made is removed afterwards."""
    reason = _netns_skip_reason()
    if reason:
        pytest.skip(reason)
    with Lab() as lab:
        yield lab


@pytest.fixture
def topology_spec() -> TopologySpec:
    """Override in a test module to change the subnets of ``topology``."""
    return TopologySpec()


@pytest.fixture
def topology(lab: Lab, topology_spec: TopologySpec) -> Topology:
    """hostA -- gwA -- underlay -- gwB -- hostB, built and torn down with ``lab``."""
    return Topology(lab, topology_spec).build()


@pytest.fixture
def charon_factory(lab: Lab, request: pytest.FixtureRequest) -> Iterator[Callable[..., Charon]]:
    """``charon_factory(ns, **kwargs)`` starts a charon in ``ns``; all are stopped afterwards,
    and their log tails are printed when the test failed."""
    reason = _interop_skip_reason()
    if reason:
        pytest.skip(reason)
    started: list[Charon] = []

    def make(ns: Namespace, **kwargs: Any) -> Charon:
        c = Charon(ns, lab, **kwargs).start()
        started.append(c)
        return c

    yield make
    failed = _failed(request)
    for c in started:
        if failed:
            print(f"\n--- {c} log tail ---\n{c.log_tail(60)}")
        c.stop()


@pytest.fixture
def capture_factory(lab: Lab) -> Iterator[Callable[..., Capture]]:
    """``capture_factory(ns, ifname)`` starts a tcpdump capture into the lab's directory."""
    captures: list[Capture] = []
    directory: list[Path] = []

    def make(ns: Namespace, ifname: str, bpf: str = "") -> Capture:
        if not directory:
            directory.append(lab.workdir("pcap"))
        path = directory[0] / f"{ns.role}-{ifname}-{len(captures)}.pcap"
        cap = Capture(ns, ifname, path, bpf).start()
        captures.append(cap)
        return cap

    yield make
    for cap in captures:
        cap.stop()
