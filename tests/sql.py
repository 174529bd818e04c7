"""Real databases for tests: SQLite in a temp dir, or a fresh PostgreSQL schema.

PostgreSQL is used when ``SIYU_TEST_POSTGRES_URL`` is set (``.ci/run`` sets it); each engine
gets a schema of its own, dropped afterwards, so tests never see each other's rows.

Tests make their tables the way Siyu does: the migrations (:func:`bot.schema.upgrade`), never
``create_all``. Decision: no template database copied per test; an upgrade costs little more
than ``create_all`` did (``docs/measurements.md``, "Schema upgrades"), and every test database
then goes through the one schema path.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from bot.db import create_engine
from bot.schema import upgrade

BACKENDS = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
"""Parameters for an ``engine`` fixture over both backends."""


def postgres_url() -> str:
    """``SIYU_TEST_POSTGRES_URL``, or skip the test."""
    url = os.environ.get("SIYU_TEST_POSTGRES_URL")
    if not url:
        pytest.skip("SIYU_TEST_POSTGRES_URL is not set")
    return url


@asynccontextmanager
async def sql_engine(backend: str, data_dir: Path) -> AsyncIterator[AsyncEngine]:
    """An engine on ``backend`` ("sqlite" or "postgres") at the newest schema revision."""
    if backend == "sqlite":
        engine = create_engine(f"sqlite+aiosqlite:///{data_dir / 'test.db'}")
        try:
            await upgrade(engine)
            yield engine
        finally:
            await engine.dispose()
        return
    url = postgres_url()
    schema = f"t_{uuid.uuid4().hex[:12]}"
    admin = create_async_engine(url)
    async with admin.begin() as conn:
        await conn.execute(text(f"CREATE SCHEMA {schema}"))
    engine = create_async_engine(url, connect_args={"server_settings": {"search_path": schema}})
    try:
        await upgrade(engine)
        yield engine
    finally:
        await engine.dispose()
        async with admin.begin() as conn:
            await conn.execute(text(f"DROP SCHEMA {schema} CASCADE"))
        await admin.dispose()


async def postgres_admin(url: str, sql: str) -> None:
    """Run ``sql`` (``CREATE DATABASE``, ``DROP DATABASE``: outside a transaction) on ``url``."""
    eng = create_async_engine(url, isolation_level="AUTOCOMMIT")
    try:
        async with eng.connect() as conn:
            await conn.execute(text(sql))
    finally:
        await eng.dispose()


def scratch_database_name() -> str:
    return f"siyu_t_{uuid.uuid4().hex[:12]}"


@contextmanager
def fresh_postgres_database() -> Iterator[str]:
    """The URL of a new, empty PostgreSQL database of a unique name, dropped afterwards (for
    tests whose subprocesses need a whole database: they cannot share a schema search path).
    Skips without ``SIYU_TEST_POSTGRES_URL``. Use from a test's own thread, not inside its loop
    (inside it: ``tests.scale.cluster.fresh_postgres``)."""
    url = postgres_url()
    name = scratch_database_name()
    asyncio.run(postgres_admin(url, f"CREATE DATABASE {name}"))
    try:
        yield f"{url.rsplit('/', 1)[0]}/{name}"
    finally:
        asyncio.run(postgres_admin(url, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))


async def migrated(url: str) -> AsyncEngine:
    """An engine on ``url`` (:func:`bot.db.create_engine`) at the newest schema revision."""
    engine = create_engine(url)
    try:
        await upgrade(engine)
    except BaseException:
        await engine.dispose()
        raise
    return engine


async def snapshot(engine: AsyncEngine) -> dict[str, list[tuple[object, ...]]]:
    """Every row of every table in ``SQLModel.metadata``, by table, in a stable order."""
    from sqlmodel import SQLModel

    out: dict[str, list[tuple[object, ...]]] = {}
    async with engine.connect() as conn:
        for table in SQLModel.metadata.sorted_tables:
            rows = (await conn.execute(table.select())).all()
            out[table.name] = sorted((tuple(r) for r in rows), key=repr)
    return out


async def twin_engine(engine: AsyncEngine) -> AsyncEngine:
    """Another engine on ``engine``'s database (and PostgreSQL schema), with a pool of its own:
    what another process would have. The caller disposes of it."""
    url = engine.url.render_as_string(hide_password=False)
    if engine.dialect.name == "sqlite":
        return create_engine(url)
    async with engine.connect() as conn:
        schema = (await conn.execute(text("SELECT current_schema()"))).scalar_one()
    return create_async_engine(url, connect_args={"server_settings": {"search_path": schema}})
