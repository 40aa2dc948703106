"""pytest-testinfra checks on the sites of a rollout. They need hosts to check:

    ANSIBLE_CONFIG=ansible.cfg .venv/bin/pytest tests/testinfra \\
        --hosts='ansible://sites' --ansible-inventory=inventories/lab/hosts.yml

(the suite's own run skips this directory: tests/conftest.py ignores it; the rollout test
tests/collection/integration/test_site_playbooks.py runs it against its lab).
"""

from __future__ import annotations

from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if config.getoption("hosts", default=None):
        return
    skip = pytest.mark.skip(reason="give the sites with --hosts (e.g. ansible://sites)")
    for item in items:
        # only this directory's checks: the hook sees every item of the session
        if Path(str(item.path)).resolve().is_relative_to(HERE):
            item.add_marker(skip)
