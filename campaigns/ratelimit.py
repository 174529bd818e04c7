"""A send rate shared by every worker process: GCRA (a virtual schedule) kept in one SQL row.

Each key (``kf``, ``oa``, ``staff_task``, ``group:<robot>``...) has a row in ``rate_slot`` whose
``next_at`` is the earliest time the next send may happen. :meth:`RateLimiter.reserve` takes the
next slot ``max(next_at, now)`` and moves ``next_at`` one interval (``60 / per_minute``) past it;
the caller then waits until its slot (:meth:`RateLimiter.acquire`). Slots of one key are therefore
spaced by at least one interval whichever process took them, so no 60-second window
``[t, t + 60)`` holds more than ``per_minute`` sends; and while callers are always waiting the slots
are back to back, so the achieved rate is the allowed rate. There is no burst allowance: a key idle
for an hour does not earn a burst (platform limits are per minute, not averages).

Decisions:

- One statement, atomic on both backends: ``INSERT ... ON CONFLICT (key) DO UPDATE SET next_at =
  CASE WHEN next_at > :now THEN next_at ELSE :now END + :interval RETURNING next_at``
  (:func:`knowledge.sql.upsert`; SQLite ≥ 3.35 and PostgreSQL support upsert with RETURNING). It
  inserts the row on first use and otherwise advances it under the row lock (PostgreSQL) or the
  database write lock (SQLite), in one round trip, so concurrent reservations never see the same
  ``next_at``.
- ``now`` comes from the injected ``clock`` (Unix seconds) of the caller, not the database: tests
  drive time, and the workers' clocks are NTP-synchronised (a skew only shifts slots, the spacing
  is enforced by ``next_at`` itself).
- ``margin`` (seconds, default 0): the platform counts *arrivals*, and a send arrives a few
  milliseconds after its slot — how many varies (a commit, an HTTP round trip). Slots spaced
  exactly ``60 / per_minute`` apart then let ``per_minute + 1`` arrivals into some 60-second
  window (``bench/campaign_fanout.py`` showed it; ``docs/measurements.md``). The interval is
  ``(60 + margin) / per_minute``, so arrivals may jitter by up to ``margin`` seconds and still
  never exceed the limit in any window; the worker uses 1 s (:class:`RateLimits`), 1.7% of the
  rate.
- Slots are floats: the spacing holds up to float rounding (~1e-9 s at today's Unix times), far
  below any real send's jitter.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from campaigns.models import RateSlot
from knowledge.sql import DIALECTS, upsert


class RateLimiter:
    """Hands out send slots per key, shared through the database by every process."""

    def __init__(
        self,
        engine: AsyncEngine,
        *,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        margin: float = 0.0,
    ) -> None:
        if engine.dialect.name not in DIALECTS:
            raise ValueError(
                f"RateLimiter supports SQLite and PostgreSQL, not {engine.dialect.name}"
            )
        self._engine = engine
        self._clock = clock
        self._sleep = sleep
        self._margin = margin

    async def reserve(self, key: str, per_minute: float) -> float:
        """Take the next slot of ``key`` (Unix seconds); the caller must not send before it."""
        if per_minute <= 0:
            raise ValueError(f"per_minute must be positive, not {per_minute}")
        interval = (60.0 + self._margin) / per_minute
        now = self._clock()
        table: sa.Table = RateSlot.__table__  # type: ignore[attr-defined]
        nxt = table.c.next_at
        stmt = (
            upsert(
                self._engine.dialect,
                table,
                ["key"],
                update={"next_at": sa.case((nxt > now, nxt), else_=sa.literal(now)) + interval},
            )
            .values(key=key, next_at=now + interval)
            .returning(nxt)
        )
        async with self._engine.begin() as conn:
            next_at = float((await conn.execute(stmt)).scalar_one())
        return next_at - interval

    async def acquire(self, key: str, per_minute: float) -> float:
        """Reserve the next slot of ``key`` and sleep until it; the slot (for logs and tests)."""
        slot = await self.reserve(key, per_minute)
        delay = slot - self._clock()
        if delay > 0:
            await self._sleep(delay)
        return slot
