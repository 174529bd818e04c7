"""The SQL engine: SQLite (aiosqlite) by default, PostgreSQL (asyncpg) at scale.

The tables are created and upgraded by the migrations (:mod:`bot.schema`), never here; upserts
are built by :func:`knowledge.sql.upsert`.

SQLite takes one writer at a time. Left to itself, a connection that finds the database locked
polls with sleeps that grow to 100 ms (its busy handler), so under load a write could wait for
hundreds of milliseconds after the lock was free while other connections took it in between:
the Official Account burst's acknowledgements (each waits for its message's row to commit)
stalled 80–400 ms in a run. Decision: within a process, a connection that is about to write
first waits its turn on an asyncio lock (:class:`WriteTurns`), in arrival order except that
the inbox's records (which acknowledgements wait for) go first, and holds it until it goes back
to the pool (after its commit or rollback); SQLite's own lock then never makes a writer of this
process poll. Reads never wait (WAL lets them run beside the writer). A task must not write on a
second connection while its first holds a turn: it would wait for itself (before, SQLite made it
wait out its busy timeout and fail).
Other processes (a ``siyu ingest`` beside ``siyu serve``) still meet SQLite's busy handler.
PostgreSQL locks rows, not the database, and gets none of this.

Every engine hides SQL parameters (``hide_parameters``): they carry members' messages, and
SQLAlchemy would otherwise put them in the text of every database error it raises (which the
error boundaries log) and in its statement log lines when those are turned on (:mod:`bot.redact`).
"""

from __future__ import annotations

import asyncio
import re
import weakref
from collections import deque
from pathlib import Path
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine.url import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.util.concurrency import await_only, in_greenlet

_WRITE = re.compile(r"\s*(?:INSERT|UPDATE|DELETE|REPLACE|CREATE|DROP|ALTER)\b", re.IGNORECASE)
"""Statements that take SQLite's write lock (migrations included)."""

_TURN = "siyu_write_turn"
"""The pooled connection's ``info`` key holding the turn it took, until it is checked in."""

_URGENT_KEY = "siyu_write_urgent"
URGENT: dict[str, Any] = {_URGENT_KEY: True}
"""Execution options of a connection whose writes go before others' (:class:`WriteTurns`):
``await conn.execution_options(**URGENT)``."""


def create_engine(url: str) -> AsyncEngine:
    """An async engine for ``url``. SQLite gets WAL, a busy timeout and foreign keys."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        return create_async_engine(url, pool_pre_ping=True, hide_parameters=True)
    if parsed.database and parsed.database != ":memory:":
        Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
    engine = create_async_engine(url, connect_args={"timeout": 30}, hide_parameters=True)

    @event.listens_for(engine.sync_engine, "connect")
    def _sqlite_pragmas(dbapi_conn, _record):  # type: ignore[no-untyped-def]
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        # Safe with WAL (no corruption on a crash); a power cut may lose the last commits.
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.execute("PRAGMA busy_timeout=30000")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.close()

    WriteTurns().attach(engine)
    return engine


class WriteTurns:
    """One writing connection at a time per event loop, in arrival order, urgent ones first (see
    the module doc).

    A connection takes its turn before its first writing statement (the statement that takes
    SQLite's lock) and gives it back when the pool gets the connection back: after the commit
    or rollback has finished, so the next writer never finds SQLite still locked. A connection
    with the execution option :data:`URGENT` goes before every waiting non-urgent one: the
    inbox's records, which acknowledgements wait for (:mod:`bot.inbox_recorder`), go before
    answers' writes, which nobody is waiting on. The wait is an ``await`` inside SQLAlchemy's
    greenlet (``await_only``); a statement run outside one (synchronous use) takes no turn.
    """

    def __init__(self) -> None:
        self._turns: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Turn] = (
            weakref.WeakKeyDictionary()
        )

    def attach(self, engine: AsyncEngine) -> None:
        event.listen(engine.sync_engine, "before_cursor_execute", self._before_execute)
        event.listen(engine.sync_engine.pool, "checkin", self._checkin)

    def _turn(self) -> _Turn:
        loop = asyncio.get_running_loop()
        turn = self._turns.get(loop)
        if turn is None:
            turn = self._turns[loop] = _Turn(loop)
        return turn

    def _before_execute(self, conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        if _TURN in conn.info or not _WRITE.match(statement) or not in_greenlet():
            return
        turn = self._turn()
        await_only(turn.acquire(urgent=bool(conn.get_execution_options().get(_URGENT_KEY))))
        conn.info[_TURN] = turn

    @staticmethod
    def _checkin(_dbapi_conn: Any, record: Any) -> None:
        turn = record.info.pop(_TURN, None) if record is not None else None
        if turn is not None:
            turn.release()


class _Turn:
    """A lock handed to waiters in arrival order, urgent waiters first."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._held = False
        self._waiting: dict[bool, deque[asyncio.Future[None]]] = {True: deque(), False: deque()}

    async def acquire(self, *, urgent: bool) -> None:
        if not self._held:
            self._held = True
            return
        turn = self._loop.create_future()
        self._waiting[urgent].append(turn)
        try:
            await turn
        except asyncio.CancelledError:
            if turn.done() and not turn.cancelled():  # handed over as we were cancelled
                self.release()
            raise

    def release(self) -> None:
        """Hand the turn to the next waiter, or free it. Safe from another thread (a pooled
        connection collected there)."""
        try:
            here = asyncio.get_running_loop() is self._loop
        except RuntimeError:
            here = False
        if not here:
            if not self._loop.is_closed():
                self._loop.call_soon_threadsafe(self.release)
            return
        for urgent in (True, False):
            waiting = self._waiting[urgent]
            while waiting:
                turn = waiting.popleft()
                if not turn.done():  # a cancelled waiter's future is done
                    turn.set_result(None)
                    return
        self._held = False
