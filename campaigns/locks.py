"""Short leases on keys shared by every worker: one worker at a time decides and sends for a
person, so two workers cannot both pass the person's caps with two different rows.

The caps count ``sent`` rows, and a row only becomes ``sent`` after the platform call; without
this lock two workers holding two rows of one person (a daily deal and a win-back planned for the
same morning) both see "0 sent today" and both send. A worker takes the person's lease before the
policy decision and gives it back after recording the outcome. A lease is a row in ``send_lock``
taken with one upsert (``INSERT ... ON CONFLICT DO UPDATE ... WHERE until < now RETURNING``) that
succeeds only when the key is free or its lease ran out, so a worker that died holding one blocks
that person for ``seconds`` at most, never for good.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from campaigns.models import SendLock
from knowledge.sql import upsert

LOCKS = SendLock.__table__  # type: ignore[attr-defined]


class SendLocks:
    """Leases on keys, through the database."""

    def __init__(self, engine: AsyncEngine, *, clock: Callable[[], float] = time.time) -> None:
        self._engine = engine
        self._clock = clock

    async def acquire(self, key: str, owner: str, seconds: float) -> bool:
        """Take ``key`` for ``seconds``; False while another owner's lease on it runs."""
        now = self._clock()
        stmt = (
            upsert(
                self._engine.dialect,
                LOCKS,
                ["key"],
                update={"owner": owner, "until": now + seconds},
                where=sa.or_(LOCKS.c.until < now, LOCKS.c.owner == owner),
            )
            .values(key=key, owner=owner, until=now + seconds)
            .returning(LOCKS.c.owner)
        )
        async with self._engine.begin() as conn:
            return (await conn.execute(stmt)).first() is not None

    async def release(self, key: str, owner: str) -> None:
        """Give ``key`` back (only ``owner``'s lease)."""
        async with self._engine.begin() as conn:
            await conn.execute(LOCKS.delete().where(LOCKS.c.key == key, LOCKS.c.owner == owner))
