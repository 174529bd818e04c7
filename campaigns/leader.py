"""Scheduler leader election: at most one process per database runs the APScheduler job store.

APScheduler 3.x keeps no claim on the jobs it reads, so two schedulers on one job store both run
every due job (DESIGN.md §2). :class:`Leadership` makes one process the leader:

- **PostgreSQL**: a session-level ``pg_try_advisory_lock`` taken on a *dedicated* connection that
  stays open (in autocommit, so it never idles inside a transaction) for as long as we lead. The
  lock belongs to the server session, so it dies with the connection: a killed process leaves no
  stale leader and there is nothing to expire or renew. The key is a stable 64-bit hash of
  ``name`` (blake2b, not :func:`hash`, which is salted per process).
- **SQLite**: ``flock(LOCK_EX | LOCK_NB)`` on ``<database file>.scheduler.lock`` (for another
  ``name``: ``<database file>.<name>.lock``), kept open while leading. The kernel drops the lock
  when the process dies; the descriptor is not inherited by child processes.

:meth:`Leadership.still_leader` is what the leader asks before each round of work. On PostgreSQL it
proves the session (and so the lock) is alive with ``SELECT 1``; a failure or a hang longer than
:data:`CHECK_TIMEOUT` counts as lost (the connection is thrown away, so the server frees the lock
if it still held it). On SQLite it also checks that the lock file on disk is still the one we
locked: if someone deleted it, a newcomer could lock a new file and lead too.

POSIX only (``fcntl``), like the rest of the deployment.
"""

from __future__ import annotations

import asyncio
import fcntl
import hashlib
import logging
import os

from sqlalchemy import text
from sqlalchemy.engine.url import make_url
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from bot.outage import Outage

log = logging.getLogger(__name__)

CHECK_TIMEOUT = 10.0
"""Seconds :meth:`Leadership.still_leader` waits for PostgreSQL before counting leadership lost."""

DEFAULT_NAME = "siyu-scheduler"

_SYNC_DRIVERS = {"sqlite": "sqlite", "postgresql": "postgresql+psycopg"}


def sync_url(async_url: str) -> str:
    """The synchronous twin of an async database URL (APScheduler 3.x's job store is sync).

    ``sqlite+aiosqlite:///x`` → ``sqlite:///x`` (stdlib sqlite3); ``postgresql+asyncpg://...`` →
    ``postgresql+psycopg://...`` (psycopg 3). Credentials, host and database are kept; driver
    specific query options (asyncpg's ``ssl=``) are not translated.
    """
    url = make_url(async_url)
    backend = url.get_backend_name()
    if backend not in _SYNC_DRIVERS:
        raise ValueError(f"no synchronous driver for {backend!r} (SQLite or PostgreSQL only)")
    return url.set(drivername=_SYNC_DRIVERS[backend]).render_as_string(hide_password=False)


def advisory_key(name: str) -> int:
    """A stable signed 64-bit key for ``pg_try_advisory_lock`` derived from ``name``."""
    digest = hashlib.blake2b(name.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


class Leadership:
    """Held by at most one process per database."""

    def __init__(self, engine: AsyncEngine, *, name: str = DEFAULT_NAME) -> None:
        self._engine = engine
        self._backend = engine.url.get_backend_name()
        self._key = advisory_key(name)
        self._conn: AsyncConnection | None = None
        self._fd: int | None = None
        self._lock_path = ""
        if self._backend == "sqlite":
            self._lock_path = _lock_path(engine.url.database, name)
        elif self._backend != "postgresql":
            raise ValueError(f"leader election needs SQLite or PostgreSQL, not {self._backend!r}")

    @property
    def held(self) -> bool:
        """Whether this object holds the lock (as of the last check)."""
        return self._conn is not None or self._fd is not None

    async def try_acquire(self) -> bool:
        """Take the lock if it is free; ``True`` if we hold it now."""
        if self.held:
            return True
        if self._backend == "sqlite":
            return self._try_flock()
        return await self._try_advisory_lock()

    async def wait(self, poll_seconds: float = 5.0) -> None:
        """Return once the lock is ours, trying every ``poll_seconds``. A database that is down
        elects nobody: the attempts back off up to ``poll_seconds`` and the outage is logged
        once (:class:`bot.outage.Outage`), not per attempt."""
        outage = Outage("scheduler leader election", cap=poll_seconds)
        while True:
            try:
                acquired = await self.try_acquire()
            except (OSError, SQLAlchemyError) as exc:
                await outage.wait(exc)
                continue
            outage.over()
            if acquired:
                return
            await asyncio.sleep(poll_seconds)

    async def still_leader(self) -> bool:
        """Whether we still hold the lock; a ``False`` also lets go of what is left of it."""
        if self._backend == "sqlite":
            if self._fd is not None and not self._same_lock_file(self._fd):
                log.warning("lock file %s was replaced: stepping down", self._lock_path)
                self._close_fd()
            return self._fd is not None
        if self._conn is None:
            return False
        try:
            async with asyncio.timeout(CHECK_TIMEOUT):
                await self._conn.execute(text("SELECT 1"))
        except (OSError, SQLAlchemyError, TimeoutError) as exc:
            log.warning("leader connection lost: %s", exc)
            await self._discard_connection()
            return False
        return True

    async def release(self) -> None:
        """Give the lock up (idempotent)."""
        if self._fd is not None:
            self._close_fd()
        if self._conn is None:
            return
        conn = self._conn
        try:
            await conn.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": self._key})
        except (OSError, SQLAlchemyError) as exc:
            log.warning("advisory unlock failed, dropping the connection: %s", exc)
            await self._discard_connection()
            return
        self._conn = None
        await conn.close()

    async def _try_advisory_lock(self) -> bool:
        conn = await self._engine.connect()
        try:
            # Autocommit: a session lock needs no transaction, and an open one would sit
            # "idle in transaction" for as long as we lead.
            await conn.execution_options(isolation_level="AUTOCOMMIT")
            query = text("SELECT pg_try_advisory_lock(:key)")
            acquired = bool((await conn.execute(query, {"key": self._key})).scalar_one())
        except BaseException:
            await conn.invalidate()
            await conn.close()
            raise
        if not acquired:
            await conn.close()
            return False
        self._conn = conn
        return True

    async def _discard_connection(self) -> None:
        # Invalidate rather than return it to the pool: a pooled connection would keep the
        # session, and with it the lock if the server still had it.
        conn, self._conn = self._conn, None
        if conn is None:
            return
        try:
            await conn.invalidate()
        finally:
            await conn.close()

    def _try_flock(self) -> bool:
        fd = os.open(self._lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        except BaseException:
            os.close(fd)
            raise
        if not self._same_lock_file(fd):  # deleted between our open and our flock
            os.close(fd)
            return False
        self._fd = fd
        return True

    def _same_lock_file(self, fd: int) -> bool:
        try:
            on_disk = os.stat(self._lock_path)
        except FileNotFoundError:
            return False
        mine = os.fstat(fd)
        return (on_disk.st_dev, on_disk.st_ino) == (mine.st_dev, mine.st_ino)

    def _close_fd(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)  # closing the only descriptor drops the flock


def _lock_path(database: str | None, name: str) -> str:
    if not database or database == ":memory:" or database.startswith("file:"):
        raise ValueError("leader election on SQLite needs a database file")
    suffix = "scheduler" if name == DEFAULT_NAME else name
    return f"{database}.{suffix}.lock"
