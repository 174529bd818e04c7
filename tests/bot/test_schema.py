"""The one schema path: the migrations make exactly the tables the models declare, on SQLite and
PostgreSQL; ``siyu db upgrade`` / ``current``; databases made before migrations, newer than this
Siyu, or not made by Siyu; two processes upgrading at once."""

from __future__ import annotations

import asyncio
import logging
import os
import subprocess
import sys
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TypeVar

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from typer.testing import CliRunner

from bot.app import App
from bot.cli import cli
from bot.contact import ContactLedger
from bot.db import create_engine
from bot.errors import SchemaError
from bot.schema import (
    FOREIGN_TABLES,
    alembic_config,
    differences,
    metadata,
    revisions,
    upgrade,
)
from bot.types import Address
from tests.bot.conftest import make_settings
from tests.sql import BACKENDS, migrated, postgres_url, sql_engine

T = TypeVar("T")
SCRIPTS = ScriptDirectory.from_config(alembic_config())
HEAD = SCRIPTS.get_current_head()
OLDER = [None, *(s.revision for s in SCRIPTS.walk_revisions() if s.revision != HEAD)]
"""Where a database may stand before an upgrade: empty, or at each revision before the newest."""
BASELINE = SCRIPTS.get_base()
"""The revision that describes the databases earlier Siyu releases made without migrations."""
KF_TABLES = {"wecom_kf_cursor", "wecom_kf_window"}


def sqlite_url(path: Path) -> str:
    return f"sqlite+aiosqlite:///{path}"


async def tables(engine: AsyncEngine) -> set[str]:
    async with engine.connect() as conn:
        return set(await conn.run_sync(lambda c: sa.inspect(c).get_table_names()))


async def diffs(engine: AsyncEngine) -> list[object]:
    async with engine.connect() as conn:
        return await conn.run_sync(differences)


async def version(engine: AsyncEngine) -> str:
    async with engine.connect() as conn:
        result = await conn.execute(sa.text("SELECT version_num FROM alembic_version"))
        return str(result.scalar_one())


# --- models and migrations agree ----------------------------------------------------------------


@pytest.mark.parametrize("backend", BACKENDS)
async def test_the_migrations_make_exactly_the_tables_the_models_declare(
    backend: str, data_dir: Path
) -> None:
    async with sql_engine(backend, data_dir) as engine:
        assert await diffs(engine) == []
        assert await version(engine) == HEAD
        assert await tables(engine) == set(metadata().tables) | {"alembic_version"}


@pytest.mark.parametrize("before", OLDER, ids=lambda rev: rev or "empty")
async def test_a_database_at_an_older_revision_upgrades_to_agree_with_the_models(
    before: str | None, data_dir: Path
) -> None:
    engine = create_engine(sqlite_url(data_dir / "t.db"))

    def to_older(conn: Connection) -> None:
        if before is not None:
            command.upgrade(alembic_config(conn), before)

    try:
        async with engine.begin() as conn:
            await conn.run_sync(to_older)
        done = await upgrade(engine)
        assert (done.before, done.after, done.adopted) == (before, HEAD, False)
        assert await diffs(engine) == []
    finally:
        await engine.dispose()


async def test_0002_moves_the_kf_reply_windows_into_the_contact_window_ledger(
    data_dir: Path,
) -> None:
    """A customer who had 2 of 5 replies used on the old kf table has 3 left after the upgrade."""
    engine = create_engine(sqlite_url(data_dir / "t.db"))
    opened = datetime(2026, 3, 8, 10, 0, tzinfo=UTC)

    def at_0001_with_a_window(conn: Connection) -> None:
        command.upgrade(alembic_config(conn), "0001")
        conn.execute(
            sa.text(
                "INSERT INTO wecom_kf_window VALUES ('shop', 'wkfake', 'wm-1', :at, 2)"
            ).bindparams(sa.bindparam("at", opened, type_=sa.DateTime(timezone=True)))
        )

    try:
        async with engine.begin() as conn:
            await conn.run_sync(at_0001_with_a_window)
        await upgrade(engine)
        ledger = ContactLedger(engine)
        address = Address("kf", "shop", "wm-1", chat="wkfake")
        assert await ledger.remaining(address, opened + timedelta(hours=1)) == 3
        assert "wecom_kf_window" not in await tables(engine)
    finally:
        await engine.dispose()


async def test_the_comparison_sees_a_missing_index(data_dir: Path) -> None:
    """The agreement above is not vacuous: a database that lost an index is told apart."""
    engine = await migrated(sqlite_url(data_dir / "t.db"))
    try:
        async with engine.begin() as conn:
            await conn.execute(sa.text("DROP INDEX ix_outbox_claim"))
        [(kind, index)] = await diffs(engine)
        assert (kind, index.name) == ("add_index", "ix_outbox_claim")
    finally:
        await engine.dispose()


async def test_the_baseline_downgrades_to_nothing_and_upgrades_again(data_dir: Path) -> None:
    engine = await migrated(sqlite_url(data_dir / "t.db"))

    def downgrade(conn: Connection) -> None:
        command.downgrade(alembic_config(conn), "base")

    try:
        async with engine.begin() as conn:
            await conn.run_sync(downgrade)
        assert await tables(engine) == {"alembic_version"}
        done = await upgrade(engine)
        assert (done.before, done.after, done.adopted) == (None, HEAD, False)
        assert await diffs(engine) == []
    finally:
        await engine.dispose()


# --- siyu db upgrade / current ------------------------------------------------------------------


@pytest.fixture
def db_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The database ``siyu`` opens: SQLite in a fresh data dir (no developer .env)."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("SIYU_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.delenv("SIYU_DATABASE_URL", raising=False)
    return tmp_path / "data" / "siyu.db"


def siyu(*args: str) -> str:
    result = CliRunner().invoke(cli, list(args))
    assert result.exit_code == 0, (result.output, result.exception)
    return result.output.strip()


def on(path: Path, work: Callable[[AsyncEngine], Awaitable[T]]) -> T:
    """``work(engine)`` on the SQLite file ``path``, from a synchronous test."""

    async def main() -> T:
        engine = create_engine(sqlite_url(path))
        try:
            return await work(engine)
        finally:
            await engine.dispose()

    return asyncio.run(main())


def test_db_upgrade_creates_the_tables_once_and_current_says_so(db_file: Path) -> None:
    assert siyu("db", "current") == (
        f"no revision (empty, or older); the newest is {HEAD}: siyu db upgrade brings it there"
    )
    assert siyu("db", "upgrade") == f"created the tables: revision {HEAD}"
    assert siyu("db", "upgrade") == f"already at the newest revision, {HEAD}"
    assert siyu("db", "current") == f"revision {HEAD} (the newest)"
    assert on(db_file, diffs) == []


async def made_before_migrations(engine: AsyncEngine, *, leave_out: set[str]) -> None:
    """A database as an earlier Siyu made it: the baseline's tables (which are what its
    ``create_all`` made) but those it never needed (no kf tables where the kf channel never ran),
    no ``alembic_version``, one member (when there is a member table), and APScheduler's job
    table beside them."""

    def baseline_without_version(conn: Connection) -> None:
        command.upgrade(alembic_config(conn), BASELINE)
        for table in ["alembic_version", *sorted(leave_out)]:
            conn.execute(sa.text(f"DROP TABLE {table}"))

    async with engine.begin() as conn:
        await conn.run_sync(baseline_without_version)
        await conn.execute(sa.text("CREATE TABLE apscheduler_jobs (id VARCHAR PRIMARY KEY)"))
        if "member" in leave_out:
            return
        await conn.execute(
            sa.text(
                "INSERT INTO member (channel, external_id, display_name, first_seen,"
                " last_active, opted_out, handoff) VALUES ('web', 'w-1', '老客', "
                "'2026-01-01 00:00:00', '2026-01-02 00:00:00', 0, 0)"
            )
        )


def earlier_siyu(path: Path, *, leave_out: set[str]) -> None:
    """:func:`made_before_migrations` on the SQLite file ``path``."""
    on(path, lambda engine: made_before_migrations(engine, leave_out=leave_out))


def test_a_database_made_before_migrations_is_adopted_with_its_rows(db_file: Path) -> None:
    earlier_siyu(db_file, leave_out=KF_TABLES)
    assert siyu("db", "current").startswith("no revision")
    assert siyu("db", "upgrade") == (
        f"adopted a database made before migrations: now at revision {HEAD}"
    )
    assert on(db_file, diffs) == []
    assert on(db_file, tables) == set(metadata().tables) | FOREIGN_TABLES | {"alembic_version"}

    async def members(engine: AsyncEngine) -> list[str]:
        async with engine.connect() as conn:
            return list((await conn.execute(sa.text("SELECT display_name FROM member"))).scalars())

    assert on(db_file, members) == ["老客"]
    assert siyu("db", "upgrade") == f"already at the newest revision, {HEAD}"


async def test_the_app_adopts_a_database_made_before_migrations_and_says_so(
    data_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """What ``siyu serve`` (and every command) does on start: upgrade, logged as a warning."""
    engine = create_engine(sqlite_url(data_dir / "siyu.db"))
    try:
        await made_before_migrations(engine, leave_out=KF_TABLES)
    finally:
        await engine.dispose()
    with caplog.at_level(logging.WARNING, logger="bot.schema"):
        app = await App.build(make_settings(data_dir))
    try:
        assert caplog.messages == [f"database made before migrations adopted at revision {HEAD}"]
        member = await app.store.get_member("web", "w-1")
        assert member is not None
        assert member.display_name == "老客"
    finally:
        await app.close()


def test_a_database_made_before_migrations_that_differs_is_refused_and_left_as_it_was(
    db_file: Path,
) -> None:
    earlier_siyu(db_file, leave_out=KF_TABLES)

    async def add_a_column(engine: AsyncEngine) -> None:
        async with engine.begin() as conn:
            await conn.execute(
                sa.text("ALTER TABLE member ADD COLUMN not_a_siyu_column VARCHAR(20)")
            )

    on(db_file, add_a_column)
    before = on(db_file, tables)
    result = CliRunner().invoke(cli, ["db", "upgrade"])
    assert isinstance(result.exception, SchemaError)
    assert "made before migrations and differs" in str(result.exception)
    assert "not_a_siyu_column" in str(result.exception)
    assert on(db_file, tables) == before  # the kf tables the baseline made were rolled back


async def test_foreign_keys_are_on_again_after_an_upgrade(data_dir: Path) -> None:
    engine = await migrated(sqlite_url(data_dir / "t.db"))
    try:
        async with engine.connect() as conn:
            assert (await conn.exec_driver_sql("PRAGMA foreign_keys")).scalar_one() == 1
    finally:
        await engine.dispose()


def test_a_database_with_some_of_our_tables_but_not_the_core_is_refused(db_file: Path) -> None:
    earlier_siyu(db_file, leave_out={"member", "message_log", "member_profile", "outbox"})
    result = CliRunner().invoke(cli, ["db", "upgrade"])
    assert isinstance(result.exception, SchemaError)
    assert "not member, message_log" in str(result.exception)
    assert "alembic_version" not in on(db_file, tables)


def test_a_database_newer_than_this_siyu_is_refused_in_one_line(db_file: Path) -> None:
    async def from_the_future(engine: AsyncEngine) -> None:
        await upgrade(engine)
        async with engine.begin() as conn:
            await conn.execute(sa.text("UPDATE alembic_version SET version_num = '9999'"))

    on(db_file, from_the_future)
    siyu_exe = Path(sys.executable).with_name("siyu")
    env = os.environ | {"SIYU_DATA_DIR": str(db_file.parent)}
    done = subprocess.run(
        [str(siyu_exe), "db", "upgrade"], env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip() == (
        "siyu: the database is at revision 9999, which this Siyu does not know: "
        "a newer Siyu upgraded it; run that version (or newer)"
    )


# --- two processes starting at once ------------------------------------------------------------


async def upgrade_twice_at_once(engines: list[AsyncEngine]) -> None:
    done = await asyncio.gather(*(upgrade(e) for e in engines))
    assert sorted((d.before or "", d.after) for d in done) == [("", HEAD), (HEAD, HEAD)]
    assert await diffs(engines[0]) == []


async def test_two_upgrades_at_once_on_sqlite_create_the_tables_once(data_dir: Path) -> None:
    engines = [create_engine(sqlite_url(data_dir / "t.db")) for _ in range(2)]
    try:
        # The file exists (in WAL mode) first: two connections switching a brand-new file to
        # WAL at the same instant is create_engine's race, not the upgrade's.
        await revisions(engines[0])
        await upgrade_twice_at_once(engines)
    finally:
        for engine in engines:
            await engine.dispose()


@pytest.mark.postgres
async def test_two_upgrades_at_once_on_postgresql_create_the_tables_once() -> None:
    url = postgres_url()
    schema = "t_up_" + os.urandom(6).hex()
    admin = create_async_engine(url)
    async with admin.begin() as conn:
        await conn.execute(sa.text(f"CREATE SCHEMA {schema}"))
    path = {"server_settings": {"search_path": schema}}
    engines = [create_async_engine(url, connect_args=path) for _ in range(2)]
    try:
        await upgrade_twice_at_once(engines)
    finally:
        for engine in engines:
            await engine.dispose()
        async with admin.begin() as conn:
            await conn.execute(sa.text(f"DROP SCHEMA {schema} CASCADE"))
        await admin.dispose()
