"""The SQL engine: SQLite (aiosqlite) by default, PostgreSQL (asyncpg) at scale.

Tables of every package register on ``SQLModel.metadata``; :func:`create_schema` creates them.
"""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import event
from sqlalchemy.engine.url import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlmodel import SQLModel


def create_engine(url: str) -> AsyncEngine:
    """An async engine for ``url``. SQLite gets WAL, a busy timeout and foreign keys."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        return create_async_engine(url, pool_pre_ping=True)
    if parsed.database and parsed.database != ":memory:":
        Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
    engine = create_async_engine(url, connect_args={"timeout": 30})

    @event.listens_for(engine.sync_engine, "connect")
    def _sqlite_pragmas(dbapi_conn, _record):  # type: ignore[no-untyped-def]
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        # Safe with WAL (no corruption on a crash); a power cut may lose the last commits.
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.execute("PRAGMA busy_timeout=30000")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.close()

    return engine


async def create_schema(engine: AsyncEngine) -> None:
    """Create every table registered on ``SQLModel.metadata`` (idempotent)."""
    import bot.contact
    import bot.models  # noqa: F401  (registers the core's tables)

    async with engine.begin() as conn:
        await conn.run_sync(SQLModel.metadata.create_all)
