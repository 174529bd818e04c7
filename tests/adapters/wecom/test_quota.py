"""The one in-process sliding-window limiter: how long to wait, and nothing counted while full."""

from __future__ import annotations

import pytest

from adapters.wecom.quota import SlidingWindows


def test_wait_says_when_the_fullest_window_has_room() -> None:
    now = [100.0]
    windows = SlidingWindows([(2, 60.0), (3, 3600.0)], clock=lambda: now[0])
    assert [windows.wait("r"), windows.wait("r")] == [0.0, 0.0]
    assert windows.wait("r") == pytest.approx(60.0)  # the minute is full until 160
    now[0] = 130.0
    assert windows.wait("r") == pytest.approx(30.0)  # nothing was counted by the refusals
    now[0] = 160.0
    assert windows.wait("r") == 0.0  # third event of the hour
    now[0] = 300.0
    assert windows.wait("r") == pytest.approx(3400.0)  # the hour holds 3 until 3700
    assert windows.wait("other") == 0.0  # per key


def test_limits_must_be_positive() -> None:
    with pytest.raises(ValueError, match="pairs"):
        SlidingWindows([(0, 60.0)])
    with pytest.raises(ValueError, match="pairs"):
        SlidingWindows([])
