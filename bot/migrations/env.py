"""Alembic's environment for Siyu's migrations.

Revisions run on the connection :mod:`bot.schema` hands over (``siyu db upgrade`` and every
command that opens the database), inside its transaction. The developers' ``alembic`` command
(``alembic.ini``, ``docs/migrations.md``) hands over none: then the configured database
(``SIYU_DATABASE_URL``, else SQLite in ``SIYU_DATA_DIR``) is opened with
:func:`bot.db.create_engine`, so SQLite gets the same pragmas as in production.

Autogenerate compares the database with :func:`bot.schema.metadata`, leaves
:data:`bot.schema.FOREIGN_TABLES` alone, and writes:

- our TypeDecorators (:class:`bot.models.UTCDateTime`, SQLModel's ``AutoString``) as the plain
  SQLAlchemy types they are stored as, so a revision never imports application code that may
  move or change later;
- batch operations (``with op.batch_alter_table(...)``): SQLite can only alter a table by
  copying it, which batch mode does; PostgreSQL runs them as plain ``ALTER TABLE``.

Offline mode (``alembic upgrade --sql``) is not supported: batch operations on SQLite need the
live table.
"""

from __future__ import annotations

import asyncio
from typing import Any, Literal

import sqlalchemy as sa
from alembic import context
from alembic.autogenerate.api import AutogenContext
from sqlalchemy.engine import Connection

from bot.db import create_engine
from bot.schema import include_object, metadata


def render_item(type_: str, obj: Any, autogen_context: AutogenContext) -> str | Literal[False]:
    """A TypeDecorator as the SQLAlchemy type it stores as; anything else as Alembic renders it."""
    if type_ == "type" and isinstance(obj, sa.types.TypeDecorator):
        return f"sa.{obj.impl_instance!r}"
    return False


def run(connection: Connection) -> None:
    """Run the revisions Alembic's command asked for on ``connection``."""
    context.configure(
        connection=connection,
        target_metadata=metadata(),
        include_object=include_object,
        render_item=render_item,
        render_as_batch=True,
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


async def run_on_configured_database() -> None:
    """The developers' path: the database the settings name, in one transaction."""
    from bot.settings import Settings

    engine = create_engine(Settings().resolved_database_url)
    try:
        async with engine.begin() as conn:
            await conn.run_sync(run)
    finally:
        await engine.dispose()


if context.is_offline_mode():
    raise SystemExit("Siyu's migrations run on a live database only (no --sql)")
handed_over: Connection | None = context.config.attributes.get("connection")
if handed_over is None:
    asyncio.run(run_on_configured_database())
else:
    run(handed_over)
