"""A base for IANA registries as IntEnums that tolerate values they do not name."""

from __future__ import annotations

from enum import IntEnum
from typing import TypeVar

# The widest registry field on the wire is 16 bits; values outside are programming errors.
_MAX_VALUE = 0xFFFF


class IanaEnum(IntEnum):
    """An IntEnum that turns an unnamed value into a cached pseudo-member ``UNKNOWN_<n>``.

    Decoding a value the registry does not (yet) name therefore never raises, and the
    result still compares equal to the plain integer.
    """

    @classmethod
    def _missing_(cls, value: object) -> IanaEnum | None:
        if type(value) is not int or not 0 <= value <= _MAX_VALUE:
            return None
        member = int.__new__(cls, value)
        member._name_ = f"UNKNOWN_{value}"
        member._value_ = value
        # setdefault: concurrent creation still yields one member per value
        return cls._value2member_map_.setdefault(value, member)  # type: ignore[return-value]

    @property
    def is_known(self) -> bool:
        """False for the pseudo-members made for unnamed values."""
        return self._name_ in type(self).__members__


E = TypeVar("E", bound="IanaEnum")


class _Lookup(dict[int, IanaEnum]):
    """value -> member; a miss makes (and remembers) the pseudo-member."""

    __slots__ = ("_enum",)

    def __init__(self, enum: type[IanaEnum]) -> None:
        super().__init__(enum._value2member_map_)
        self._enum = enum

    def __missing__(self, value: int) -> IanaEnum:
        member = self._enum(value)
        self[value] = member
        return member


def lookup_table(enum: type[E]) -> dict[int, E]:
    """A dict from wire value to member, for decoders: ``table[value]`` never raises for
    values in 0..0xFFFF and costs one dict lookup for named values."""
    return _Lookup(enum)  # type: ignore[return-value]
