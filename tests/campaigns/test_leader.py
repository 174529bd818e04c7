"""Leader election: one holder per database, released on release(), on a lost connection and when
the holder process is killed (SIGKILL: no clean-up runs), on PostgreSQL and on SQLite."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.db import create_engine
from campaigns.leader import Leadership, advisory_key, sync_url
from tests.campaigns.scheduler_proc import Runner, first_to_say


async def acquired_within(leadership: Leadership, seconds: float) -> bool:
    """Whether ``leadership`` is acquired within ``seconds`` (polling every 0.1 s)."""
    try:
        await asyncio.wait_for(leadership.wait(poll_seconds=0.1), seconds)
    except TimeoutError:
        return False
    return True


@pytest.fixture
async def pg_engines(fresh_database: str) -> AsyncIterator[tuple[AsyncEngine, AsyncEngine]]:
    """Two engines (two pools, like two processes) on one new PostgreSQL database."""
    first, second = create_engine(fresh_database), create_engine(fresh_database)
    yield first, second
    await first.dispose()
    await second.dispose()


def sqlite_url(data_dir: Path) -> str:
    return f"sqlite+aiosqlite:///{data_dir / 'siyu.db'}"


def test_sync_url_swaps_the_driver_and_keeps_the_rest() -> None:
    assert sync_url("sqlite+aiosqlite:////var/siyu/siyu.db") == "sqlite:////var/siyu/siyu.db"
    assert (
        sync_url("postgresql+asyncpg://siyu:s3cret@db.internal:5433/siyu")
        == "postgresql+psycopg://siyu:s3cret@db.internal:5433/siyu"
    )
    with pytest.raises(ValueError, match="mysql"):
        sync_url("mysql+aiomysql://u@h/d")


def test_advisory_key_is_stable_across_releases() -> None:
    # Changing the key would let an old and a new version lead side by side during a deploy.
    assert advisory_key("siyu-scheduler") == advisory_key("siyu-scheduler")
    assert advisory_key("siyu-scheduler") == -89835713842419377
    assert advisory_key("siyu-scheduler") != advisory_key("siyu-other")


def test_sqlite_in_memory_has_no_lock_file() -> None:
    with pytest.raises(ValueError, match="database file"):
        Leadership(create_engine("sqlite+aiosqlite:///:memory:"))


@pytest.mark.postgres
async def test_postgres_one_holder_then_the_other(
    pg_engines: tuple[AsyncEngine, AsyncEngine],
) -> None:
    first, second = Leadership(pg_engines[0]), Leadership(pg_engines[1])
    assert await first.try_acquire()
    assert not await second.try_acquire()
    assert first.held
    assert not second.held
    assert await first.still_leader()
    await first.release()
    assert not first.held
    assert not await first.still_leader()
    assert await second.try_acquire()
    assert not await first.try_acquire()
    await second.release()


@pytest.mark.postgres
async def test_postgres_leader_whose_session_dies_steps_down(
    pg_engines: tuple[AsyncEngine, AsyncEngine],
) -> None:
    first, second = Leadership(pg_engines[0]), Leadership(pg_engines[1])
    assert await first.try_acquire()
    async with pg_engines[1].begin() as conn:
        await conn.execute(
            text(
                "SELECT pg_terminate_backend(l.pid) FROM pg_locks l JOIN pg_database d "
                "ON d.oid = l.database WHERE d.datname = current_database() "
                "AND l.locktype = 'advisory' AND l.granted AND l.pid <> pg_backend_pid()"
            )
        )
    assert not await first.still_leader()
    assert not first.held
    assert await acquired_within(second, 5)
    await second.release()


@pytest.mark.postgres
async def test_postgres_killed_holder_frees_the_lock(fresh_database: str, tmp_path: Path) -> None:
    engine = create_engine(fresh_database)
    holder = await Runner.start(fresh_database, "holder", tmp_path, "--hold")
    try:
        assert await holder.says("leader", 30)
        contender = Leadership(engine)
        assert not await contender.try_acquire()
        await holder.kill()
        assert await acquired_within(contender, 5)
        await contender.release()
    finally:
        await holder.kill()
        await engine.dispose()


async def test_sqlite_one_holder_then_the_other(data_dir: Path) -> None:
    first_engine, second_engine = (create_engine(sqlite_url(data_dir)) for _ in range(2))
    first, second = Leadership(first_engine), Leadership(second_engine)
    assert await first.try_acquire()
    assert not await second.try_acquire()
    assert await first.still_leader()
    assert (data_dir / "siyu.db.scheduler.lock").exists()
    await first.release()
    assert await second.try_acquire()
    await second.release()
    await first_engine.dispose()
    await second_engine.dispose()


async def test_sqlite_leader_steps_down_when_its_lock_file_is_replaced(data_dir: Path) -> None:
    engine = create_engine(sqlite_url(data_dir))
    first, second = Leadership(engine), Leadership(engine)
    assert await first.try_acquire()
    os.unlink(data_dir / "siyu.db.scheduler.lock")
    assert await second.try_acquire()  # a newcomer locks a new file...
    assert not await first.still_leader()  # ...so the old holder must step down
    assert not first.held
    await second.release()
    await engine.dispose()


async def test_sqlite_processes_one_wins_and_a_kill_frees_it(
    data_dir: Path, tmp_path: Path
) -> None:
    url = sqlite_url(data_dir)
    runners = [await Runner.start(url, name, tmp_path, "--hold") for name in ("a", "b")]
    engine = create_engine(url)
    try:
        winner = await first_to_say(runners, "leader", 30)
        waiting = runners[1] if winner is runners[0] else runners[0]
        assert not await waiting.says("leader", 1.0)
        assert not await Leadership(engine).try_acquire()
        await winner.kill()
        assert await waiting.says("leader", 10)
    finally:
        for runner in runners:
            await runner.kill()
        await engine.dispose()
