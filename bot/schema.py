"""The one schema path: every package's tables on one metadata, brought to the newest revision by
the Alembic migrations in ``bot/migrations``.

- **Which tables.** :func:`metadata` imports every module that declares tables (the core's, the
  knowledge registry's, the campaigns', the WeCom kf channel's) so they all register on
  ``SQLModel.metadata``; the migration environment and the models-agree test both read it there.
  (The contact-window ledger, :mod:`bot.contact`, is among the core's.)
  Importing ``campaigns`` and ``adapters`` from here is allowed like from the composition root
  (``bot.app``, ``bot.cli``): this module is the composition side of the schema. Tables that are
  not ours (:data:`FOREIGN_TABLES`: APScheduler's job store creates and owns its own) are left
  out of migrations and of comparisons.
- **When.** :func:`upgrade` is what ``siyu db upgrade`` runs, and every command that opens the
  database (``serve``, ``demo``, ``ingest``, the workers, ...: :meth:`bot.app.App.build`, ``siyu
  report``) runs it first: an empty database is created at the newest revision, a database at an
  older revision is upgraded (logged as a warning, with both revisions), one at the newest is left
  alone. Operators who start several processes run ``siyu db upgrade`` once before them; should
  two start at once anyway, they are serialised (PostgreSQL: an advisory lock held for the
  transaction; SQLite: the write lock) and the second finds nothing to do.
- **Databases made before migrations.** Earlier Siyu releases created tables with ``create_all``
  and no ``alembic_version``. Such a database (the core's tables present, no revision) is adopted:
  the baseline revision creates only the tables it lacks (the kf tables, say, where kf never ran),
  the later revisions run as usual, and the result must then match the models exactly
  (:func:`differences`), else :class:`~bot.errors.SchemaError` names what differs. A database with
  some of our tables but not the core's is refused: it was not made by Siyu.
- **A database newer than this Siyu** (a revision this release does not know) is refused with
  :class:`~bot.errors.SchemaError`, never touched.
- **Transactions.** The whole upgrade is one transaction on both backends, so a failed one leaves
  the database as it was. PostgreSQL runs DDL in transactions as it is. SQLite's Python driver
  would commit each ``CREATE``/``ALTER`` on its own (it opens transactions only before DML), so
  the upgrade opens one itself with ``BEGIN IMMEDIATE``, which also takes the database's write
  lock: a second process upgrading at the same moment waits (the busy timeout) and then finds
  nothing to do. Foreign keys are off meanwhile, as Alembic's batch mode needs to copy a table
  that others refer to, and ``PRAGMA foreign_key_check`` must find nothing broken before the
  commit.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util import CommandError
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from sqlmodel import SQLModel

from bot.errors import SchemaError
from campaigns.leader import advisory_key
from campaigns.models import JOBS_TABLE

log = logging.getLogger(__name__)

MIGRATIONS = Path(__file__).with_name("migrations")
"""The Alembic environment (``env.py``, ``script.py.mako``, ``versions/``), shipped in the wheel."""

FOREIGN_TABLES = frozenset({JOBS_TABLE})
"""Tables in our database that other libraries create and own; migrations leave them alone."""

CORE_TABLES = ("member", "message_log", "seen_message")
"""What every earlier Siyu created: a database without a revision must have these to be adopted."""

_LOCK = advisory_key("siyu.schema.upgrade")


def metadata() -> sa.MetaData:
    """``SQLModel.metadata`` with the tables of every package registered."""
    import adapters.wecom.kf_state  # noqa: F401
    import bot.contact
    import bot.models  # noqa: F401
    import campaigns.models  # noqa: F401
    import knowledge.registry  # noqa: F401

    return SQLModel.metadata


def include_object(
    obj: Any, name: str | None, type_: str, reflected: bool, compare_to: Any
) -> bool:
    """Alembic's filter: everything but :data:`FOREIGN_TABLES` (and their indexes)."""
    table = obj if type_ == "table" else getattr(obj, "table", None)
    return getattr(table, "name", name) not in FOREIGN_TABLES


def alembic_config(connection: Connection | None = None) -> Config:
    """The Alembic configuration, built in code (no ``alembic.ini`` needed): our migrations, and
    ``connection`` for ``env.py`` to run them on (None: ``env.py`` opens the configured
    database, as the developers' ``alembic`` command does)."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS).replace("%", "%%"))
    config.set_main_option("path_separator", "os")
    config.attributes["connection"] = connection
    return config


@dataclass(frozen=True, slots=True)
class Revisions:
    """Where a database stands: its revision (None: empty, or made before migrations) and the
    newest this Siyu has."""

    current: str | None
    head: str

    @property
    def at_head(self) -> bool:
        return self.current == self.head


@dataclass(frozen=True, slots=True)
class Upgraded:
    """What :func:`upgrade` did: from ``before`` to ``after``; ``adopted``: the database was
    made by an earlier Siyu, before migrations."""

    before: str | None
    after: str
    adopted: bool = False

    @property
    def changed(self) -> bool:
        return self.before != self.after


async def revisions(engine: AsyncEngine) -> Revisions:
    """The database's revision and this Siyu's newest (``siyu db current``)."""
    async with engine.connect() as conn:
        return await conn.run_sync(_revisions)


async def upgrade(engine: AsyncEngine) -> Upgraded:
    """Bring the database to the newest revision (see the module docstring), and log it.

    A database already there is only read (no lock, no transaction that writes)."""
    state = await revisions(engine)
    if state.at_head:
        return Upgraded(state.current, state.head)
    async with engine.connect() as conn:
        if conn.dialect.name == "sqlite":
            done = await _on_sqlite(conn)
        else:
            async with conn.begin():
                await conn.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": _LOCK})
                done = await conn.run_sync(_upgrade)
    _log(done)
    return done


async def _on_sqlite(conn: AsyncConnection) -> Upgraded:
    """:func:`_upgrade` in one ``BEGIN IMMEDIATE`` transaction, foreign keys off meanwhile."""
    await conn.exec_driver_sql("PRAGMA foreign_keys=OFF")  # only takes effect between transactions
    try:
        await conn.exec_driver_sql("BEGIN IMMEDIATE")
        try:
            done = await conn.run_sync(_upgrade)
            if broken := (await conn.exec_driver_sql("PRAGMA foreign_key_check")).all():
                raise SchemaError(f"the upgrade would break {len(broken)} foreign keys: {broken}")
        except BaseException:
            await conn.rollback()
            raise
        await conn.commit()
    finally:
        await conn.exec_driver_sql("PRAGMA foreign_keys=ON")
        await conn.commit()
    return done


def _log(done: Upgraded) -> None:
    if done.adopted:
        log.warning("database made before migrations adopted at revision %s", done.after)
    elif done.before is None:
        log.info("database created at revision %s", done.after)
    elif done.changed:
        log.warning("database upgraded from revision %s to %s", done.before, done.after)


def differences(conn: Connection) -> list[Any]:
    """Where the database and the models disagree (Alembic's autogenerate diffs; [] when none)."""
    context = MigrationContext.configure(
        conn, opts={"include_object": include_object, "compare_type": True}
    )
    return list(compare_metadata(context, metadata()))


def _revisions(conn: Connection) -> Revisions:
    script = ScriptDirectory.from_config(alembic_config())
    head = script.get_current_head()
    assert head is not None, "bot/migrations has no revision"
    current = MigrationContext.configure(conn).get_current_revision()
    if current is not None:
        try:
            script.get_revision(current)
        except CommandError as exc:
            raise SchemaError(
                f"the database is at revision {current}, which this Siyu does not know: "
                "a newer Siyu upgraded it; run that version (or newer)"
            ) from exc
    return Revisions(current, head)


def _upgrade(conn: Connection) -> Upgraded:
    state = _revisions(conn)
    if state.at_head:
        return Upgraded(state.current, state.head)
    adopting = state.current is None and _made_before_migrations(conn)
    command.upgrade(alembic_config(conn), "head")
    if adopting and (diffs := differences(conn)):
        listed = "; ".join(str(d) for d in diffs[:5])
        raise SchemaError(
            f"the database was made before migrations and differs from this Siyu's tables "
            f"({len(diffs)} differences: {listed})"
        )
    return Upgraded(state.current, state.head, adopted=adopting)


def _made_before_migrations(conn: Connection) -> bool:
    """True for a database an earlier Siyu made; False for an empty one (or one holding only
    other software's tables); SchemaError for one with some of our tables but not the core's."""
    present = set(sa.inspect(conn).get_table_names())
    ours = present & set(metadata().tables)
    if not ours:
        return False
    if missing := [t for t in CORE_TABLES if t not in present]:
        raise SchemaError(
            f"the database has Siyu's tables {', '.join(sorted(ours))} but not "
            f"{', '.join(missing)} and no migration revision: it was not made by Siyu; "
            "use an empty database"
        )
    return True
