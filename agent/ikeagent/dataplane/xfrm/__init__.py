"""The kernel XFRM data plane (Linux SAs and policies over XFRM netlink, with pyroute2)."""

from .netlink import XfrmError
from .plane import XfrmDataplane

__all__ = ["XfrmDataplane", "XfrmError"]
