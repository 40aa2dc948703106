"""Fixtures for tests in User-mode Linux guests (a kernel with ESP; see ikelab_testing.uml).

``uml_lab`` is a ``UmlLab`` on the test's own ``lab``; ``uml_pair`` boots guests ``a``
(192.0.2.1, protected 10.1.0.1/24) and ``b`` (192.0.2.2, protected 10.2.0.1/24) in parallel.
Guests are stopped afterwards; when the test failed, their console tails are printed.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from ikelab_testing import uml
from ikelab_testing.netns import Lab
from ikelab_testing.uml import Guest, UmlLab


@pytest.fixture
def uml_lab(lab: Lab, request: pytest.FixtureRequest) -> Iterator[UmlLab]:
    reason = uml.available()
    if reason:
        pytest.skip(reason)
    u = UmlLab(lab)
    yield u
    rep = getattr(request.node, "rep_call", None)
    if rep is None or rep.failed:
        for g in u.guests.values():
            print(f"\n--- guest {g.name} console tail ---\n{g.console_tail(40)}")
    u.close()


@pytest.fixture
def uml_pair(uml_lab: UmlLab) -> tuple[Guest, Guest]:
    a, b = uml_lab.boot("a", "b")
    return a, b
