"""Fixtures for the campaigns' tests: a real engine (SQLite, and PostgreSQL when
``SIYU_TEST_POSTGRES_URL`` is set, each test in a schema of its own) with every table created,
and :func:`fresh_database`, a whole PostgreSQL database for tests that start subprocesses.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

import campaigns.models  # noqa: F401  (registers the campaigns' tables)
from bot.models import Member
from tests.sql import BACKENDS, fresh_postgres_database, sql_engine

T0 = datetime(2026, 6, 10, 2, 0, tzinfo=UTC)  # 10:00 in Shanghai, a Wednesday


@pytest.fixture(params=BACKENDS)
async def engine(request: pytest.FixtureRequest, data_dir: Path) -> AsyncIterator[AsyncEngine]:
    """A real engine with the core's and the campaigns' tables."""
    async with sql_engine(request.param, data_dir) as engine:
        yield engine


@pytest.fixture
def fresh_database() -> Iterator[str]:
    """The URL of a new, empty PostgreSQL database (dropped afterwards); skips without one."""
    with fresh_postgres_database() as url:
        yield url


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
