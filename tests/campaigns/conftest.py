"""Fixtures for the campaigns' tests: a real engine (SQLite, and PostgreSQL when
``SIYU_TEST_POSTGRES_URL`` is set, each test in a schema of its own) with every table created,
and :func:`fresh_database`, a whole PostgreSQL database for tests that start subprocesses.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

import campaigns.models  # noqa: F401  (registers the campaigns' tables)
from bot.db import create_engine, create_schema
from bot.models import Member

T0 = datetime(2026, 6, 10, 2, 0, tzinfo=UTC)  # 10:00 in Shanghai, a Wednesday


def postgres_url() -> str:
    """``SIYU_TEST_POSTGRES_URL``, or skip the test."""
    url = os.environ.get("SIYU_TEST_POSTGRES_URL")
    if not url:
        pytest.skip("SIYU_TEST_POSTGRES_URL is not set")
    return url


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def engine(request: pytest.FixtureRequest, data_dir: Path) -> AsyncIterator[AsyncEngine]:
    """A real engine with the core's and the campaigns' tables."""
    if request.param == "sqlite":
        engine = create_engine(f"sqlite+aiosqlite:///{data_dir / 'campaigns.db'}")
        await create_schema(engine)
        yield engine
        await engine.dispose()
        return
    url = postgres_url()
    schema = f"t_{uuid.uuid4().hex[:12]}"
    admin = create_async_engine(url)
    async with admin.begin() as conn:
        await conn.execute(text(f"CREATE SCHEMA {schema}"))
    engine = create_async_engine(url, connect_args={"server_settings": {"search_path": schema}})
    try:
        await create_schema(engine)
        yield engine
    finally:
        await engine.dispose()
        async with admin.begin() as conn:
            await conn.execute(text(f"DROP SCHEMA {schema} CASCADE"))
        await admin.dispose()


@pytest.fixture
def fresh_database() -> Iterator[str]:
    """The URL of a new, empty PostgreSQL database (dropped afterwards); skips without one."""
    import asyncio

    url = postgres_url()
    name = f"siyu_t_{uuid.uuid4().hex[:12]}"

    async def admin(sql: str) -> None:
        eng = create_async_engine(url, isolation_level="AUTOCOMMIT")
        try:
            async with eng.connect() as conn:
                await conn.execute(text(sql))
        finally:
            await eng.dispose()

    asyncio.run(admin(f"CREATE DATABASE {name}"))
    base = url.rsplit("/", 1)[0]
    try:
        yield f"{base}/{name}"
    finally:
        asyncio.run(admin(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))


async def add_member(
    engine: AsyncEngine,
    external_id: str,
    *,
    channel: str = "kf.main",
    last_active: datetime = T0,
    first_seen: datetime | None = None,
    opted_out: bool = False,
) -> int:
    """Insert a member row directly; its id."""
    async with engine.begin() as conn:
        result = await conn.execute(
            Member.__table__.insert()  # type: ignore[attr-defined]
            .values(
                channel=channel,
                external_id=external_id,
                display_name="",
                first_seen=first_seen or last_active,
                last_active=last_active,
                opted_out=opted_out,
                handoff=False,
            )
            .returning(Member.__table__.c.id)  # type: ignore[attr-defined]
        )
        return int(result.scalar_one())
