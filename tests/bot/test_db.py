"""SQLite writers of one process take turns (bot.db.WriteTurns) instead of polling SQLite's lock.

Each engine here lets SQLite fail at once when its database is locked (``busy_timeout=0``): a
writer that reached SQLite while another held the lock would raise "database is locked", so
every test passing means no writer of the process ever met SQLite's lock.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from bot.db import URGENT, create_engine

WRITERS = 40


def _no_busy_wait(engine: AsyncEngine) -> None:
    @event.listens_for(engine.sync_engine, "connect")
    def _fail_when_locked(dbapi_conn, _record):  # type: ignore[no-untyped-def]
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA busy_timeout=0")
        cur.close()


async def _made(engine: AsyncEngine) -> AsyncEngine:
    _no_busy_wait(engine)
    async with engine.begin() as conn:
        await conn.execute(sa.text("CREATE TABLE t (k INTEGER PRIMARY KEY, v TEXT NOT NULL)"))
    return engine


@pytest.fixture
async def engine(tmp_path: Path) -> AsyncIterator[AsyncEngine]:
    made = await _made(create_engine(f"sqlite+aiosqlite:///{tmp_path / 'turns.db'}"))
    yield made
    await made.dispose()


async def _write(engine: AsyncEngine, k: int, pause: float = 0.005) -> None:
    """A transaction that holds SQLite's lock across event-loop turns (as the inbox's do)."""
    async with engine.begin() as conn:
        await conn.execute(sa.text("INSERT INTO t (k, v) VALUES (:k, 'a')"), {"k": k})
        await asyncio.sleep(pause)
        await conn.execute(sa.text("UPDATE t SET v = 'b' WHERE k = :k"), {"k": k})


async def _rows(engine: AsyncEngine) -> list[tuple[int, str]]:
    async with engine.connect() as conn:
        return [tuple(r) for r in (await conn.execute(sa.text("SELECT k, v FROM t ORDER BY k")))]


async def test_concurrent_writers_wait_their_turn_not_for_sqlites_lock(
    engine: AsyncEngine, tmp_path: Path
) -> None:
    await asyncio.gather(*(_write(engine, k) for k in range(WRITERS)))
    assert await _rows(engine) == [(k, "b") for k in range(WRITERS)]
    # The same writers on an engine without turns meet the lock (the test can fail).
    bare = await _made(create_async_engine(f"sqlite+aiosqlite:///{tmp_path / 'bare.db'}"))
    try:
        results = await asyncio.gather(
            *(_write(bare, k) for k in range(WRITERS)), return_exceptions=True
        )
    finally:
        await bare.dispose()
    assert any(isinstance(r, OperationalError) and "locked" in str(r) for r in results)


async def _holding(engine: AsyncEngine) -> tuple[asyncio.Task[None], asyncio.Event]:
    """A writer that holds the turn until the returned event is set."""
    holding, release = asyncio.Event(), asyncio.Event()

    async def hold() -> None:
        async with engine.begin() as conn:
            await conn.execute(sa.text("INSERT INTO t (k, v) VALUES (0, 'held')"))
            holding.set()
            await release.wait()

    task = asyncio.create_task(hold())
    await holding.wait()
    return task, release


async def test_reads_do_not_wait_for_a_writer(engine: AsyncEngine) -> None:
    holder, release = await _holding(engine)
    assert await _rows(engine) == []  # WAL: the reader sees the last commit, at once
    release.set()
    await holder
    assert await _rows(engine) == [(0, "held")]


async def _queued(engine: AsyncEngine, order: list[int], k: int, options: dict[str, Any]) -> None:
    async with engine.begin() as conn:
        await conn.execution_options(**options)
        await conn.execute(sa.text("INSERT INTO t (k, v) VALUES (:k, 'q')"), {"k": k})
        order.append(k)


async def test_urgent_writers_go_before_waiting_ones_then_arrival_order(
    engine: AsyncEngine,
) -> None:
    holder, release = await _holding(engine)
    order: list[int] = []
    waiting = []
    for k, options in [(1, {}), (2, {}), (3, URGENT), (4, {}), (5, URGENT)]:
        waiting.append(asyncio.create_task(_queued(engine, order, k, options)))
        await asyncio.sleep(0.02)  # each is waiting before the next arrives
    release.set()
    await asyncio.gather(holder, *waiting)
    assert order == [3, 5, 1, 2, 4]


async def test_a_cancelled_waiter_and_a_failed_transaction_give_the_turn_back(
    engine: AsyncEngine,
) -> None:
    holder, release = await _holding(engine)
    order: list[int] = []
    cancelled = asyncio.create_task(_queued(engine, order, 1, {}))
    after = asyncio.create_task(_queued(engine, order, 2, {}))
    await asyncio.sleep(0.05)
    cancelled.cancel()
    release.set()
    await holder
    await after
    assert cancelled.cancelled()
    assert order == [2]
    with pytest.raises(IntegrityError):  # a duplicate key: rolled back
        await _queued(engine, order, 2, {})
    await _queued(engine, order, 3, URGENT)
    assert order == [2, 3]
    assert [k for k, _ in await _rows(engine)] == [0, 2, 3]


async def test_one_connection_writes_many_statements_in_one_turn(engine: AsyncEngine) -> None:
    conn: AsyncConnection
    async with engine.connect() as conn:
        for k in range(3):
            await conn.execute(sa.text("INSERT INTO t (k, v) VALUES (:k, 'c')"), {"k": k})
        await conn.commit()
        await conn.execute(sa.text("UPDATE t SET v = 'd'"))  # a second transaction, same turn
        await conn.commit()
    await asyncio.wait_for(_write(engine, 10), 5)  # the turn came back with the connection
    assert await _rows(engine) == [(0, "d"), (1, "d"), (2, "d"), (10, "b")]
