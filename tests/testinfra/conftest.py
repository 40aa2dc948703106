"""pytest-testinfra checks on the sites of a rollout. They need hosts to check:

    ANSIBLE_CONFIG=ansible.cfg .venv/bin/pytest tests/testinfra \\
        --hosts='ansible://sites' --ansible-inventory=inventories/lab/hosts.yml

(the suite's own run skips this directory: tests/conftest.py ignores it; the rollout test
tests/collection/integration/test_site_playbooks.py runs it against its lab).
"""

from __future__ import annotations

import pytest


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if not config.getoption("hosts", default=None):
        skip = pytest.mark.skip(reason="give the sites with --hosts (e.g. ansible://sites)")
        for item in items:
            item.add_marker(skip)
