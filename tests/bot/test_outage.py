"""Waiting out an outage (:mod:`bot.outage`): one log line when it starts, one when it ends,
whatever the number of attempts; the pauses double up to the cap; a stop ends a pause early."""

from __future__ import annotations

import asyncio
import logging
import time

import pytest

from bot.outage import Outage, pause


async def test_an_outage_is_logged_once_when_it_starts_and_once_when_it_ends(
    caplog: pytest.LogCaptureFixture,
) -> None:
    outage = Outage("worker w1", first=0.001, cap=0.004)
    with caplog.at_level(logging.INFO, logger="bot.outage"):
        for _ in range(6):
            await outage.wait(ConnectionRefusedError(111, "Connect call failed"))
        assert outage.ongoing
        outage.over()
        outage.over()  # a success with no outage says nothing
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 2, lines
    assert lines[0].startswith("worker w1: the database is unavailable (ConnectionRefusedError")
    assert "the database is back after" in lines[1]
    assert "(6 failed attempts)" in lines[1]
    assert not outage.ongoing


def test_the_pauses_double_up_to_the_cap_with_jitter_below_each() -> None:
    outage = Outage("x", first=0.5, cap=15.0, jitter=lambda: 1.0)
    ceilings = []
    for attempt in range(1, 9):
        outage._attempts = attempt
        ceilings.append(outage.delay())
    assert ceilings == [0.5, 1.0, 2.0, 4.0, 8.0, 15.0, 15.0, 15.0]
    low = Outage("x", first=0.5, cap=15.0, jitter=lambda: 0.0)
    low._attempts = 3
    assert low.delay() == 1.0  # half of the ceiling at the least


async def test_a_stop_ends_the_pause_at_once() -> None:
    stop = asyncio.Event()
    asyncio.get_running_loop().call_later(0.05, stop.set)
    started = time.monotonic()
    await pause(60.0, stop)
    assert time.monotonic() - started < 30.0
