"""Fixtures of the PKI primitive tests (the factory is pki_factory.py)."""

from __future__ import annotations

import pytest
from pki_factory import Chain, make_chain


@pytest.fixture(scope="session")
def rsa_chain() -> Chain:
    return make_chain("rsa")


@pytest.fixture(scope="session")
def p256_chain() -> Chain:
    return make_chain("p256")
