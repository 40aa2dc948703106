"""What every IKEv2 payload shares: the generic payload header (RFC 7296 section 3.2)."""

from __future__ import annotations

from typing import ClassVar

from ikeagent.wire.generic import GENERIC, GENERIC_LEN, MAX_PAYLOAD_LEN, GenericPayload, need
from ikeagent.wire.v2.enums import PayloadType

__all__ = ["CRITICAL", "GENERIC", "GENERIC_LEN", "MAX_PAYLOAD_LEN", "Payload", "need"]

CRITICAL = 0x80


class Payload(GenericPayload):
    """An IKEv2 payload. ``LAST`` marks SK and SKF, whose generic Next Payload field names the
    first inner payload and which end the chain."""

    __slots__ = ()

    TYPE: ClassVar[PayloadType]
    LAST: ClassVar[bool] = False
