"""Group commit for the inbox: messages arriving at once are recorded in one transaction.

Every inbound message is recorded before it is acknowledged (:mod:`bot.inbox`). One transaction
per message made a burst's acknowledgements wait on each other: SQLite takes one writer at a
time, so 300 Official Account callbacks in a second queued for
the database and their acknowledgement p99 went from 93 ms to 688 ms (bench/load.py
``oa_burst``). :class:`Recorder` keeps the promise — a message is committed before its caller
returns — and shares the cost: while one batch is being written, the messages that arrive
join the next one, so a burst costs a few commits, and a lone message is written at once (no
timer, no added latency when idle). On SQLite its transactions take their write turn before
the answers' writes (:data:`bot.db.URGENT`): an acknowledgement waits for its record, nobody
waits for an answer's bookkeeping.

A batch is one ``INSERT … ON CONFLICT DO NOTHING`` of its rows (a platform's retry, or two
copies in one batch, are already recorded: nothing is inserted for them) and one ``SELECT`` of
the rows by ``(channel, message_id)``, in the same transaction. A failure fails every caller of
the batch with the same error (the database is down: each caller's :class:`Unavailable`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.db import URGENT
from knowledge.sql import upsert

MAX_BATCH = 200
"""Rows per transaction at most (a bound on one statement's size)."""

Waiting = tuple[dict[str, Any], "asyncio.Future[sa.Row[Any]]"]


class Recorder:
    """Records rows of ``table`` keyed by ``(channel, message_id)``, many callers per commit."""

    def __init__(self, engine: AsyncEngine, table: sa.Table) -> None:
        self._engine = engine
        self._table = table
        self._queue: list[Waiting] = []
        self._writer: asyncio.Task[None] | None = None

    async def record(self, row: Mapping[str, Any]) -> sa.Row[Any]:
        """Insert ``row`` unless its ``(channel, message_id)`` is recorded already; the stored
        row either way, once it is committed."""
        done: asyncio.Future[sa.Row[Any]] = asyncio.get_running_loop().create_future()
        self._queue.append((dict(row), done))
        if self._writer is None or self._writer.done():
            self._writer = asyncio.get_running_loop().create_task(self._write())
        return await asyncio.shield(done)

    async def settle(self) -> None:
        """Wait until nothing is left to write (before the engine is disposed)."""
        while self._writer is not None and not self._writer.done():
            await asyncio.wait([self._writer])

    async def _write(self) -> None:
        while self._queue:
            batch, self._queue = self._queue[:MAX_BATCH], self._queue[MAX_BATCH:]
            try:
                rows = await self._insert([row for row, _ in batch])
            except Exception as exc:  # every caller of the batch sees the failure
                _fail(batch, exc)
                continue
            for row, done in batch:
                if not done.done():
                    done.set_result(rows[(row["channel"], row["message_id"])])

    async def _insert(self, rows: Sequence[dict[str, Any]]) -> dict[tuple[str, str], sa.Row[Any]]:
        c = self._table.c
        keys = sorted({(row["channel"], row["message_id"]) for row in rows})
        query = sa.select(self._table).where(sa.tuple_(c.channel, c.message_id).in_(keys))
        async with self._engine.begin() as conn:
            await conn.execution_options(**URGENT)  # acknowledgements wait: before answers' writes
            await conn.execute(upsert(conn.dialect, self._table), list(rows))
            found = (await conn.execute(query)).all()
        return {(row.channel, row.message_id): row for row in found}


def _fail(batch: Sequence[Waiting], exc: Exception) -> None:
    for _, done in batch:
        if not done.done():
            done.set_exception(exc)
