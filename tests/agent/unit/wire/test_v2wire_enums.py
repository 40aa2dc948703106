"""IANA registries tolerate values they do not name (design style 2)."""

from __future__ import annotations

import pytest

from ikeagent.crypto import suites
from ikeagent.wire import v2
from ikeagent.wire.v2 import (
    AuthMethod,
    CertEncoding,
    ConfigAttributeType,
    ExchangeType,
    IdType,
    NotifyType,
    PayloadType,
    ProtocolId,
    TsType,
)

ENUMS = [
    AuthMethod,
    CertEncoding,
    ConfigAttributeType,
    ExchangeType,
    IdType,
    NotifyType,
    PayloadType,
    ProtocolId,
    TsType,
]


@pytest.mark.parametrize("enum", ENUMS, ids=lambda e: e.__name__)
def test_unknown_value_is_a_cached_pseudo_member(enum):
    value = 251
    assert value not in {int(m) for m in enum}
    member = enum(value)
    assert member == value and int(member) == value
    assert member.name == f"UNKNOWN_{value}"
    assert enum(value) is member
    assert not member.is_known
    assert member not in list(enum)  # iteration still lists only the named members


@pytest.mark.parametrize("enum", ENUMS, ids=lambda e: e.__name__)
def test_out_of_range_and_non_int_still_raise(enum):
    for bad in (-1, 0x10000, "1", 2.5):
        with pytest.raises(ValueError):
            enum(bad)


def test_known_values_from_rfc7296():
    # RFC 7296 3.1 (exchange types), 3.2 (payload types), 3.10.1 (notify types)
    assert ExchangeType.IKE_SA_INIT == 34 and ExchangeType.INFORMATIONAL == 37
    assert ExchangeType.IKE_INTERMEDIATE == 43
    assert PayloadType.SK == 46 and PayloadType.SKF == 53 and PayloadType.TSr == 45
    assert NotifyType.INVALID_KE_PAYLOAD == 17 and NotifyType.COOKIE == 16390
    assert NotifyType.IKEV2_FRAGMENTATION_SUPPORTED == 16430
    assert NotifyType.INTERMEDIATE_EXCHANGE_SUPPORTED == 16438
    assert AuthMethod.DIGITAL_SIGNATURE == 14 and IdType.ID_NULL == 13
    assert v2.FLAG_INITIATOR == 0x08 and v2.FLAG_VERSION == 0x10 and v2.FLAG_RESPONSE == 0x20


def test_notify_is_error_boundary():
    assert NotifyType(16383).is_error
    assert not NotifyType(16384).is_error
    assert all(m.is_error == (m.value < 16384) for m in NotifyType)


def test_transform_type_is_the_crypto_tables():
    assert v2.TransformType is suites.TransformType
