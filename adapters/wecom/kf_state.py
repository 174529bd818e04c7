"""Durable state of the WeCom customer service (kf) channel: where each sync loop stopped.

``wecom_kf_cursor(account, open_kfid, cursor, updated_at)``, keyed by the kf account's configured
name so several accounts share one database: where the ``kf/sync_msg`` pull loop stopped. Written
only after a page's messages were handled, so a crash re-reads the last page (the pipeline's
durable dedupe makes that harmless) and never skips one. Before an open_kfid's first page the
row is written with an empty cursor (:meth:`KfState.remember`: "from the start"), so a process
that dies during that page still leaves the open_kfid for the next start to resume.

The 48 h / 5-message reply window is not kept here: it is the core's contact-window ledger
(:mod:`bot.contact`), shared with the Official Account and the campaigns' pushes.

Every write is one short transaction and portable between SQLite and PostgreSQL (no dialect
upserts: update, else insert, and a lost insert race falls back to the update). The migrations
create both tables (``bot.schema``) before any channel starts.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlmodel import Field, SQLModel

from bot.models import UTCDateTime, require_aware


def _utc_column(*, nullable: bool) -> Any:
    return sa.Column(UTCDateTime(), nullable=nullable)


class KfCursor(SQLModel, table=True):
    """Where the sync loop of one (account, open_kfid) stopped."""

    __tablename__ = "wecom_kf_cursor"

    account: str = Field(primary_key=True, max_length=64)
    open_kfid: str = Field(primary_key=True, max_length=128)
    cursor: str = Field(max_length=512)
    updated_at: datetime = Field(sa_column=_utc_column(nullable=False))


_CURSOR: sa.Table = KfCursor.__table__  # type: ignore[attr-defined]


class KfState:
    """The kf channel's sync cursors over one async engine."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def cursor(self, account: str, open_kfid: str) -> str | None:
        """The saved sync cursor, or None before the first page."""
        query = sa.select(_CURSOR.c.cursor).where(
            _CURSOR.c.account == account, _CURSOR.c.open_kfid == open_kfid
        )
        async with self._engine.connect() as conn:
            value = (await conn.execute(query)).scalar_one_or_none()
        return value if isinstance(value, str) else None

    async def remember(self, account: str, open_kfid: str, at: datetime) -> None:
        """Save an empty cursor ("from the start") for (account, open_kfid), unless it has one."""
        require_aware(at)
        insert = _CURSOR.insert().values(
            account=account, open_kfid=open_kfid, cursor="", updated_at=at
        )
        try:
            async with self._engine.begin() as conn:
                await conn.execute(insert)
        except IntegrityError:  # saved already (by another loop or process): keep it
            pass

    async def open_kfids(self, account: str) -> list[str]:
        """The open_kfids of ``account`` with a saved cursor (an empty one included), in order."""
        query = (
            sa.select(_CURSOR.c.open_kfid)
            .where(_CURSOR.c.account == account)
            .order_by(_CURSOR.c.open_kfid)
        )
        async with self._engine.connect() as conn:
            return [str(kfid) for kfid in (await conn.execute(query)).scalars()]

    async def save_cursor(self, account: str, open_kfid: str, cursor: str, at: datetime) -> None:
        """Remember ``cursor`` as where the loop of (account, open_kfid) continues."""
        require_aware(at)
        where = sa.and_(_CURSOR.c.account == account, _CURSOR.c.open_kfid == open_kfid)
        update = _CURSOR.update().where(where).values(cursor=cursor, updated_at=at)
        insert = _CURSOR.insert().values(
            account=account, open_kfid=open_kfid, cursor=cursor, updated_at=at
        )
        await self._update_or_insert(update, insert)

    async def _update_or_insert(self, update: sa.Update, insert: sa.Insert) -> None:
        async with self._engine.begin() as conn:
            if (await conn.execute(update)).rowcount:
                return
        try:
            async with self._engine.begin() as conn:
                await conn.execute(insert)
        except IntegrityError:
            async with self._engine.begin() as conn:  # lost the insert race: the row exists now
                await conn.execute(update)
