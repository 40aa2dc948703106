"""Anti-replay window (RFC 4303 3.4.3, Appendix A)."""

from __future__ import annotations

import random

import pytest

from ikeagent.dataplane.replay import MAX_WINDOW, ReplayWindow


def accept(window: ReplayWindow, seq: int) -> bool:
    if not window.check(seq):
        return False
    window.update(seq)
    return True


def test_sequence_zero_is_never_valid() -> None:
    assert not ReplayWindow().check(0)


def test_in_order_and_duplicates() -> None:
    window = ReplayWindow(64)
    for seq in range(1, 200):
        assert accept(window, seq)
        assert not window.check(seq)
    assert window.top == 199


def test_out_of_order_inside_window() -> None:
    window = ReplayWindow(64)
    assert accept(window, 100)
    for seq in (99, 37, 70, 98):  # 37 = 100 - 63: the oldest slot still inside
        assert accept(window, seq)
    for seq in (99, 37, 70, 98, 100):
        assert not window.check(seq)
    assert window.check(36) is False  # 100 - 64: just left the window
    assert window.check(38)


def test_too_old_after_a_big_jump() -> None:
    window = ReplayWindow(64)
    for seq in range(1, 10):
        accept(window, seq)
    assert accept(window, 1_000_000)
    assert not window.check(9)
    assert not window.check(1_000_000 - 64)
    assert window.check(1_000_000 - 63)
    assert accept(window, 1_000_001)
    assert not window.check(1_000_000)


def test_check_does_not_change_state() -> None:
    window = ReplayWindow(32)
    accept(window, 5)
    for _ in range(3):
        assert window.check(4)
    assert window.top == 5 and window.bitmap == 1


@pytest.mark.parametrize("size", [1, 32, 64, 128, 1024, MAX_WINDOW])
def test_matches_a_set_model(size: int) -> None:
    """Compare with a plain set of seen numbers over random traffic with reordering."""
    rng = random.Random(size)
    window = ReplayWindow(size)
    seen: set[int] = set()
    top = 0
    for _ in range(3000):
        seq = max(1, top + rng.randrange(-2 * size - 3, 5))
        if rng.random() < 0.02:
            seq = top + rng.randrange(size, 5 * size + 2)  # big jump
        expected = seq not in seen and seq > top - size
        assert window.check(seq) == expected, (seq, top)
        if expected:
            window.update(seq)
            seen.add(seq)
            top = max(top, seq)


def test_window_zero_disables_replay_protection() -> None:
    window = ReplayWindow(0)
    assert accept(window, 5)
    assert accept(window, 5)
    assert accept(window, 1)


@pytest.mark.parametrize("size", [-1, MAX_WINDOW + 1])
def test_bad_sizes(size: int) -> None:
    with pytest.raises(ValueError):
        ReplayWindow(size)


# Extended sequence numbers: RFC 4303 Appendix A2.2 cases


def test_esn_infer_within_one_subspace() -> None:
    window = ReplayWindow(64, esn=True)
    window.update((3 << 32) | 1000)
    assert window.infer(1000 - 10) == (3 << 32) | 990
    assert window.infer(5000) == (3 << 32) | 5000
    assert window.infer(1000 - 64) == (4 << 32) | 936  # below the window: next subspace


def test_esn_infer_window_spanning_two_subspaces() -> None:
    window = ReplayWindow(64, esn=True)
    window.update((3 << 32) | 10)
    assert window.infer(0xFFFFFFF0) == (2 << 32) | 0xFFFFFFF0  # late packet of the old half
    assert window.infer(20) == (3 << 32) | 20
    assert window.infer(0x80000000) == (3 << 32) | 0x80000000


def test_esn_rollover_in_order() -> None:
    window = ReplayWindow(64, esn=True)
    seq = (1 << 32) - 5
    window.update(seq)
    for _ in range(10):
        seq += 1
        full = window.infer(seq & 0xFFFFFFFF)
        assert full == seq
        assert accept(window, full)
    assert window.top == (1 << 32) + 5
    assert not window.check(window.infer(0xFFFFFFFE))  # already seen before the wrap
