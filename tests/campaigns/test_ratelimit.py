"""The shared rate limiter on real SQLite and PostgreSQL: several limiters on several engines (the
view of several worker processes) reserving one key concurrently get distinct slots spaced by
60/per_minute, so no 60-second window holds more than per_minute sends, and callers that always
wait get the slots back to back (achieved rate = allowed rate).

Time is injected (a fake clock and sleep) except in one short real-time test; assertions are on the
slots handed out, never on how fast the machine is. Slots are floats, so comparisons allow 1e-6 s.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import AsyncIterator

import pytest
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from bot.db import create_engine
from campaigns.models import RateSlot
from campaigns.ratelimit import RateLimiter

T = 1_781_000_000.0  # an arbitrary Unix time (2026)
TOL = 1e-6


class FakeTime:
    """A clock the test moves; ``sleep`` records the delay and jumps the clock to its end."""

    def __init__(self, now: float = T) -> None:
        self.now = now
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds  # acquire reads the clock and sleeps with no await in between
        await asyncio.sleep(0)


@pytest.fixture
async def twin(engine: AsyncEngine) -> AsyncIterator[AsyncEngine]:
    """A second engine on the same database (and schema): another process's connections."""
    url = engine.url.render_as_string(hide_password=False)
    if engine.dialect.name == "sqlite":
        other = create_engine(url)
    else:
        async with engine.connect() as conn:
            schema = (await conn.execute(text("SELECT current_schema()"))).scalar_one()
        other = create_async_engine(url, connect_args={"server_settings": {"search_path": schema}})
    yield other
    await other.dispose()


def most_in_any_minute(slots: list[float], width: float = 60.0) -> int:
    """The most slots in any window ``[t, t + width)`` (a window can always start at a slot)."""
    ordered = sorted(slots)
    best, first = 0, 0
    for last, slot in enumerate(ordered):
        while slot >= ordered[first] + width - TOL:
            first += 1
        best = max(best, last - first + 1)
    return best


def gaps(slots: list[float]) -> list[float]:
    ordered = sorted(slots)
    return [b - a for a, b in itertools.pairwise(ordered)]


async def test_slots_are_back_to_back_while_callers_wait(engine: AsyncEngine) -> None:
    limiter = RateLimiter(engine, clock=FakeTime())
    slots = [await limiter.reserve("kf", 60) for _ in range(5)]
    assert slots == pytest.approx([T, T + 1, T + 2, T + 3, T + 4], abs=TOL)
    async with engine.connect() as conn:
        stored = (await conn.execute(select(RateSlot.__table__.c.next_at))).scalar_one()  # type: ignore[attr-defined]
    assert stored == pytest.approx(T + 5, abs=TOL)


async def test_an_idle_key_earns_no_burst(engine: AsyncEngine) -> None:
    clock = FakeTime()
    limiter = RateLimiter(engine, clock=clock)
    assert await limiter.reserve("group:store-1", 20) == pytest.approx(T)
    clock.now = T + 3600
    first, second = (
        await limiter.reserve("group:store-1", 20),
        await limiter.reserve("group:store-1", 20),
    )
    assert (first, second) == pytest.approx((T + 3600, T + 3603), abs=TOL)


async def test_keys_are_independent(engine: AsyncEngine) -> None:
    limiter = RateLimiter(engine, clock=FakeTime())
    assert await limiter.reserve("group:a", 20) == pytest.approx(T)
    assert await limiter.reserve("group:b", 20) == pytest.approx(T)
    assert await limiter.reserve("group:a", 20) == pytest.approx(T + 3, abs=TOL)


async def test_concurrent_engines_never_share_a_slot(
    engine: AsyncEngine, twin: AsyncEngine
) -> None:
    clock = FakeTime()
    limiters = [RateLimiter(e, clock=clock) for e in (engine, twin, twin)]
    slots = await asyncio.gather(*(limiters[i % 3].reserve("oa", 20) for i in range(45)))
    assert len({round(s, 6) for s in slots}) == 45
    assert sorted(slots) == pytest.approx([T + 3 * k for k in range(45)], abs=TOL)
    assert most_in_any_minute(slots) == 20


async def test_waiting_workers_achieve_exactly_the_allowed_rate(
    engine: AsyncEngine, twin: AsyncEngine
) -> None:
    clock = FakeTime()
    limiters = [
        RateLimiter(e, clock=clock, sleep=clock.sleep) for e in (engine, twin, twin, engine)
    ]

    async def worker(limiter: RateLimiter) -> list[float]:
        return [await limiter.acquire("staff_task", 30) for _ in range(40)]

    slots = [s for batch in await asyncio.gather(*map(worker, limiters)) for s in batch]
    assert len(slots) == 160
    assert gaps(slots) == pytest.approx([2.0] * 159, abs=TOL)  # spaced, and never idle
    assert most_in_any_minute(slots) == 30
    achieved_per_minute = (len(slots) - 1) / (max(slots) - min(slots)) * 60
    assert achieved_per_minute == pytest.approx(30)


async def test_acquire_sleeps_until_its_slot(engine: AsyncEngine) -> None:
    clock = FakeTime()
    limiter = RateLimiter(engine, clock=clock, sleep=clock.sleep)
    assert await limiter.acquire("kf", 60) == pytest.approx(T)
    assert clock.slept == []  # the first slot is now: no wait
    await limiter.reserve("kf", 60)  # someone else takes T + 1
    clock.now = T + 0.25
    assert await limiter.acquire("kf", 60) == pytest.approx(T + 2, abs=TOL)
    assert clock.slept == pytest.approx([1.75], abs=TOL)
    assert clock.now == pytest.approx(T + 2, abs=TOL)


async def test_uneven_intervals_keep_their_spacing(engine: AsyncEngine) -> None:
    limiter = RateLimiter(engine, clock=FakeTime())
    slots = [await limiter.reserve("kf", 7) for _ in range(30)]
    assert min(gaps(slots)) >= 60 / 7 - TOL
    assert most_in_any_minute(slots) == 7


async def test_rejects_a_rate_that_is_not_positive(engine: AsyncEngine) -> None:
    limiter = RateLimiter(engine, clock=FakeTime())
    with pytest.raises(ValueError, match="per_minute"):
        await limiter.reserve("kf", 0)


async def test_real_time_high_rate_across_engines(engine: AsyncEngine, twin: AsyncEngine) -> None:
    """600/min with real sleeps for about two seconds: slots spaced 0.1 s, none taken twice, and
    no caller resumes before its slot."""
    early: list[float] = []

    async def worker(limiter: RateLimiter) -> list[float]:
        slots = []
        for _ in range(5):
            slot = await limiter.acquire("kf", 600)
            early.append(slot - time.time())
            slots.append(slot)
        return slots

    limiters = [RateLimiter(e) for e in (engine, twin, engine, twin)]
    slots = [s for batch in await asyncio.gather(*map(worker, limiters)) for s in batch]
    assert len({round(s, 6) for s in slots}) == 20
    assert min(gaps(slots)) >= 0.1 - TOL
    assert most_in_any_minute(slots, width=1.0) == 10  # 600/min is 10 in any second
    assert max(early) <= 1e-3  # resumed at or after the slot (1 ms for timer resolution)


async def test_a_margin_stretches_each_minute(engine: AsyncEngine) -> None:
    limiter = RateLimiter(engine, clock=FakeTime(), margin=1.0)
    slots = [await limiter.reserve("kf", 60) for _ in range(62)]
    assert min(gaps(slots)) >= 61 / 60 - TOL
    # Even if every send arrived up to 1 s late (or early), no 60 s window holds more than 60.
    assert slots[60] - slots[0] >= 60 + 1 - TOL
