"""Anti-replay window of an inbound ESP SA (RFC 4303 section 3.4.3 and Appendix A).

``check(seq)`` runs before the ICV is verified (cheap rejection of duplicates and packets that
fell behind the window); ``update(seq)`` runs only after the ICV verified, so forged packets
never move the window. The window is an int used as a bitmap: bit ``i`` set means that
sequence number ``top - i`` was received. With extended sequence numbers, ``infer(low)``
reconstructs the full 64-bit number from the 32 transmitted bits (RFC 4303 Appendix A2.2).

A window of size 0 disables replay protection (every sequence number is accepted).
"""

from __future__ import annotations

MAX_WINDOW = 4096
_MASK32 = 0xFFFFFFFF


class ReplayWindow:
    __slots__ = ("size", "esn", "top", "bitmap", "_mask")

    def __init__(self, size: int = 64, esn: bool = False) -> None:
        if not 0 <= size <= MAX_WINDOW:
            raise ValueError(f"replay window must be 0..{MAX_WINDOW}, not {size}")
        self.size = size
        self.esn = esn
        self.top = 0  # highest sequence number accepted so far (0: none yet)
        self.bitmap = 0
        self._mask = (1 << size) - 1

    def __repr__(self) -> str:
        return f"ReplayWindow(size={self.size}, esn={self.esn}, top={self.top})"

    def infer(self, low: int) -> int:
        """The full sequence number of a packet carrying ``low`` (identity without ESN)."""
        if not self.esn:
            return low
        top = self.top
        high = top >> 32
        top_low = top & _MASK32
        # a window of at least one keeps the arithmetic of Appendix A2.2 meaningful
        bottom = top_low - max(self.size, 1) + 1
        if bottom >= 0:  # the window lies within one 2^32 subspace
            return ((high + 1) << 32 | low) if low < bottom else (high << 32 | low)
        # the window spans two subspaces
        if low >= bottom & _MASK32 and high:
            return (high - 1) << 32 | low
        return high << 32 | low

    def check(self, seq: int) -> bool:
        """True when ``seq`` may be new: ahead of the window, or inside it and not yet seen."""
        if seq == 0:  # the first packet of an SA carries 1 (RFC 4303 3.3.3)
            return False
        top = self.top
        if seq > top or not self.size:
            return True
        offset = top - seq
        if offset >= self.size:
            return False
        return not (self.bitmap >> offset) & 1

    def update(self, seq: int) -> None:
        """Record ``seq`` as received (call after the ICV verified and ``check`` passed)."""
        top = self.top
        if seq > top:
            shift = seq - top
            self.bitmap = ((self.bitmap << shift) | 1) & self._mask if shift < self.size else 1
            self.top = seq
        elif self.size:
            self.bitmap |= 1 << (top - seq)
