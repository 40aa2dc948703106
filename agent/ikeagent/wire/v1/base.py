"""What every ISAKMP payload shares: the generic payload header (RFC 2408 section 3.2)."""

from __future__ import annotations

from typing import ClassVar

from ikeagent.wire.generic import GENERIC, GENERIC_LEN, MAX_PAYLOAD_LEN, GenericPayload, need
from ikeagent.wire.v1.enums import PayloadType

__all__ = ["GENERIC", "GENERIC_LEN", "MAX_PAYLOAD_LEN", "Payload", "need"]


class Payload(GenericPayload):
    """An ISAKMP payload. IKEv1 has no critical bit: unknown payload types are kept as
    ``RawPayload``."""

    __slots__ = ()

    TYPE: ClassVar[PayloadType]
