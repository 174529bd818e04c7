"""``siyu db upgrade`` and ``siyu db current``: the database's schema revision.

Every command that opens the database upgrades it first (:mod:`bot.schema`), so these are for
operators: ``upgrade`` once before starting several processes (or after installing a new
release, before restarting them), ``current`` to see where a database stands. Both work on the
configured database (``SIYU_DATABASE_URL``, else SQLite in ``SIYU_DATA_DIR``) without opening
the knowledge base. A database this Siyu cannot upgrade ends in one line and exit status 2
(:class:`~bot.errors.SchemaError`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

import typer
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.db import create_engine
from bot.schema import Revisions, Upgraded, revisions, upgrade
from bot.settings import Settings

db_app = typer.Typer(help="The database's schema: upgrade it, or show its revision.")

T = TypeVar("T")


def _on_database(work: Callable[[AsyncEngine], Awaitable[T]]) -> T:
    async def main() -> T:
        engine = create_engine(Settings().resolved_database_url)
        try:
            return await work(engine)
        finally:
            await engine.dispose()

    return asyncio.run(main())


def upgraded_line(done: Upgraded) -> str:
    """What ``siyu db upgrade`` says it did."""
    if done.adopted:
        return f"adopted a database made before migrations: now at revision {done.after}"
    if done.before is None:
        return f"created the tables: revision {done.after}"
    if done.changed:
        return f"upgraded from revision {done.before} to {done.after}"
    return f"already at the newest revision, {done.after}"


def revision_line(state: Revisions) -> str:
    """What ``siyu db current`` says."""
    if state.at_head:
        return f"revision {state.current} (the newest)"
    where = f"revision {state.current}" if state.current else "no revision (empty, or older)"
    return f"{where}; the newest is {state.head}: siyu db upgrade brings it there"


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Create or upgrade the tables to this release's newest revision (safe to run again)."""
    typer.echo(upgraded_line(_on_database(upgrade)))


@db_app.command("current")
def db_current() -> None:
    """Show the database's revision and this release's newest."""
    typer.echo(revision_line(_on_database(revisions)))
