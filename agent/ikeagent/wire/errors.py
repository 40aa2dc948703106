"""Typed decode errors shared by the IKEv1 and IKEv2 wire layers.

Every failure to decode peer input raises a ``DecodeError`` subclass, never IndexError,
struct.error or an ``ipaddress`` ValueError.  Each class names the IKEv2 Notify Message Type
(RFC 7296 section 3.10.1) that an IKEv2 responder answers with, as ``notify``.
"""

from __future__ import annotations

# IKEv2 Notify Message Types (RFC 7296 3.10.1), kept as plain ints so this module stays
# independent of the v1/v2 enum packages.
_UNSUPPORTED_CRITICAL_PAYLOAD = 1
_INVALID_MAJOR_VERSION = 5
_INVALID_SYNTAX = 7


class DecodeError(ValueError):
    """Peer input that cannot be decoded."""

    notify: int = _INVALID_SYNTAX


class Truncated(DecodeError):
    """The input ends before a structure or a length field says it should."""


class InvalidLength(DecodeError):
    """A length field is impossible (too small, inconsistent, or bytes are left over)."""


class InvalidSyntax(DecodeError):
    """A field holds a value the syntax does not allow (bad substructure marker, ...)."""


class UnsupportedCriticalPayload(DecodeError):
    """An unknown payload with the critical bit set (RFC 7296 2.5)."""

    notify = _UNSUPPORTED_CRITICAL_PAYLOAD

    def __init__(self, payload_type: int) -> None:
        super().__init__(f"unsupported critical payload type {payload_type}")
        self.payload_type = payload_type


class InvalidMajorVersion(DecodeError):
    """An IKE header whose major version is not the one this decoder speaks.

    ``header`` carries the decoded header (SPIs, message ID) so that a responder can answer
    with INVALID_MAJOR_VERSION (RFC 7296 2.5).
    """

    notify = _INVALID_MAJOR_VERSION

    def __init__(self, major: int, header: object = None) -> None:
        super().__init__(f"unsupported IKE major version {major}")
        self.major = major
        self.header = header
