"""Fixtures shared by the knowledge tests."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.sql import migrated


@pytest.fixture
async def engine(data_dir: Path) -> AsyncIterator[AsyncEngine]:
    """A SQLite database in the test's data dir, at the newest schema revision."""
    eng = await migrated(f"sqlite+aiosqlite:///{data_dir / 'siyu.db'}")
    yield eng
    await eng.dispose()
