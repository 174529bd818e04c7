"""Four processes starting at once on an empty database (issue 11: three of four crashed in
schema creation with a UniqueViolation before the upgrade was serialised).

Four ``siyu db upgrade`` subprocesses are started together on a fresh, uniquely named PostgreSQL
database, and on a SQLite file that does not exist yet. Every one exits 0; exactly one created
the tables, the other three found them at the newest revision (they waited on the advisory lock
or SQLite's write lock, :mod:`bot.schema`); the schema then agrees with the models. The in-process
tests in ``test_schema.py`` race two engines of one process; these race real processes.
"""

from __future__ import annotations

import asyncio
import os
import sys
from collections import Counter
from pathlib import Path

import pytest

from bot.db import create_engine
from tests.bot.test_schema import HEAD, diffs, version
from tests.sql import fresh_postgres_database

PROCESSES = 4
SIYU = str(Path(sys.executable).with_name("siyu"))
WITHIN_S = 180.0


async def upgrade_at_once(url: str, cwd: Path) -> list[tuple[int | None, str]]:
    """Start ``PROCESSES`` ``siyu db upgrade`` on ``url`` together; (exit code, output) each."""
    env = {**os.environ, "SIYU_DATABASE_URL": url, "SIYU_DATA_DIR": str(cwd / "data")}
    procs = [await _upgrade_process(cwd, env) for _ in range(PROCESSES)]
    try:
        async with asyncio.timeout(WITHIN_S):
            outs = await asyncio.gather(*(p.communicate() for p in procs))
    finally:
        for proc in procs:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
    codes = [p.returncode for p in procs]
    return [(c, out.decode().strip()) for c, (out, _) in zip(codes, outs, strict=True)]


async def _upgrade_process(cwd: Path, env: dict[str, str]) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        SIYU, "db", "upgrade", cwd=cwd, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip


async def assert_one_created_the_schema(url: str, results: list[tuple[int | None, str]]) -> None:
    head = HEAD
    assert [code for code, _ in results] == [0] * PROCESSES, results
    said = Counter(out.splitlines()[-1] for _, out in results)
    assert said == Counter({
        f"created the tables: revision {head}": 1,
        f"already at the newest revision, {head}": PROCESSES - 1,
    }), results  # fmt: skip
    engine = create_engine(url)
    try:
        assert await version(engine) == head
        assert await diffs(engine) == []
    finally:
        await engine.dispose()


async def test_four_processes_upgrading_a_new_sqlite_file_at_once(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'new.db'}"
    results = await upgrade_at_once(url, tmp_path)
    await assert_one_created_the_schema(url, results)


@pytest.mark.postgres
def test_four_processes_upgrading_an_empty_postgres_database_at_once(tmp_path: Path) -> None:
    with fresh_postgres_database() as url:

        async def race() -> None:
            await assert_one_created_the_schema(url, await upgrade_at_once(url, tmp_path))

        asyncio.run(race())
