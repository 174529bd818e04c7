"""``knowledge.sql.upsert``: one INSERT ... ON CONFLICT on SQLite and PostgreSQL alike."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.dialects import sqlite
from sqlalchemy.dialects.mysql.base import MySQLDialect
from sqlalchemy.ext.asyncio import AsyncEngine

from knowledge.registry import KnowledgeEmbedding
from knowledge.sql import upsert
from tests.sql import BACKENDS, sql_engine

CACHE: sa.Table = KnowledgeEmbedding.__table__  # type: ignore[attr-defined]
KEY = ["model_id", "text_sha256"]


@pytest.fixture(params=BACKENDS)
async def engine(request: pytest.FixtureRequest, data_dir: Path) -> AsyncIterator[AsyncEngine]:
    async with sql_engine(request.param, data_dir) as engine:
        yield engine


def row(sha: str, dim: int) -> dict[str, object]:
    return {"model_id": "m", "text_sha256": sha, "dim": dim, "vector": b"\0" * 4}


async def stored(engine: AsyncEngine) -> dict[str, int]:
    async with engine.connect() as conn:
        rows = await conn.execute(sa.select(CACHE.c.text_sha256, CACHE.c.dim))
        return {sha: dim for sha, dim in rows.all()}


async def test_do_nothing_keeps_the_stored_row_and_returns_only_new_ones(
    engine: AsyncEngine,
) -> None:
    async with engine.begin() as conn:
        await conn.execute(upsert(conn.dialect, CACHE), [row("a", 1)])
        statement = upsert(conn.dialect, CACHE, KEY).returning(CACHE.c.text_sha256)
        result = await conn.execute(statement, [row("a", 2), row("b", 2)])
        assert [sha for (sha,) in result.all()] == ["b"]
    assert await stored(engine) == {"a": 1, "b": 2}


async def test_replace_takes_the_proposed_values(engine: AsyncEngine) -> None:
    async with engine.begin() as conn:
        await conn.execute(upsert(conn.dialect, CACHE), [row("a", 1), row("b", 1)])
        await conn.execute(upsert(conn.dialect, CACHE, KEY, replace=["dim"]), [row("a", 3)])
    assert await stored(engine) == {"a": 3, "b": 1}


async def test_update_applies_only_where_the_condition_holds(engine: AsyncEngine) -> None:
    async with engine.begin() as conn:
        await conn.execute(upsert(conn.dialect, CACHE), [row("low", 1), row("high", 9)])
    bump = {"dim": CACHE.c.dim + 10}
    async with engine.begin() as conn:
        for sha in ("low", "high", "new"):
            statement = upsert(conn.dialect, CACHE, KEY, update=bump, where=CACHE.c.dim < 5)
            await conn.execute(statement.values(**row(sha, 4)))
    assert await stored(engine) == {"low": 11, "high": 9, "new": 4}


def test_an_update_without_key_columns_is_refused() -> None:
    with pytest.raises(ValueError, match=r"knowledge_embedding_cache.*key columns"):
        upsert(sqlite.dialect(), CACHE, replace=["dim"])


def test_other_backends_are_refused_by_name() -> None:
    with pytest.raises(NotImplementedError, match="not mysql"):
        upsert(MySQLDialect(), CACHE, KEY)
