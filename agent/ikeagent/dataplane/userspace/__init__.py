"""The userspace ESP data plane (TUN device + UDP-encapsulated ESP)."""

from .plane import UserspaceDataplane

__all__ = ["UserspaceDataplane"]
