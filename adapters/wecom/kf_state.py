"""Durable state of the WeCom customer service (kf) channel: sync cursors and reply windows.

Two tables, both keyed by the kf account's configured name so several accounts share one database:

- ``wecom_kf_cursor(account, open_kfid, cursor, updated_at)``: where the ``kf/sync_msg`` pull loop
  stopped. Written only after a page's messages were handled, so a crash re-reads the last page
  (the pipeline's durable dedupe makes that harmless) and never skips one.
- ``wecom_kf_window(account, open_kfid, external_userid, last_customer_at, replies)``: the
  platform lets us send at most :data:`REPLIES_PER_MESSAGE` messages within :data:`WINDOW` after
  the customer's last message. A reply slot is claimed with one conditional ``UPDATE`` before each
  send, so concurrent loops or replicas never exceed the window together.

Every write is one short transaction and portable between SQLite and PostgreSQL (no dialect
upserts: update, else insert, and a lost insert race falls back to the update). The migrations
create both tables (``bot.schema``) before any channel starts.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlmodel import Field, SQLModel

from bot.models import UTCDateTime, require_aware

WINDOW = timedelta(hours=48)
"""How long after the customer's last message the platform accepts our messages."""

REPLIES_PER_MESSAGE = 5
"""How many messages we may send per customer message (inside :data:`WINDOW`)."""


def _utc_column(*, nullable: bool) -> Any:
    return sa.Column(UTCDateTime(), nullable=nullable)


class KfCursor(SQLModel, table=True):
    """Where the sync loop of one (account, open_kfid) stopped."""

    __tablename__ = "wecom_kf_cursor"

    account: str = Field(primary_key=True, max_length=64)
    open_kfid: str = Field(primary_key=True, max_length=128)
    cursor: str = Field(max_length=512)
    updated_at: datetime = Field(sa_column=_utc_column(nullable=False))


class KfWindow(SQLModel, table=True):
    """One customer's reply window on one kf account."""

    __tablename__ = "wecom_kf_window"

    account: str = Field(primary_key=True, max_length=64)
    open_kfid: str = Field(primary_key=True, max_length=128)
    external_userid: str = Field(primary_key=True, max_length=128)
    last_customer_at: datetime = Field(sa_column=_utc_column(nullable=False))
    replies: int = 0


_CURSOR: sa.Table = KfCursor.__table__  # type: ignore[attr-defined]
_WINDOW: sa.Table = KfWindow.__table__  # type: ignore[attr-defined]


@dataclass(frozen=True, slots=True)
class WindowKey:
    """Whose window: the kf account's name, the kf id, the customer."""

    account: str
    open_kfid: str
    external_userid: str

    def _where(self) -> sa.ColumnElement[bool]:
        return sa.and_(
            _WINDOW.c.account == self.account,
            _WINDOW.c.open_kfid == self.open_kfid,
            _WINDOW.c.external_userid == self.external_userid,
        )


@dataclass(frozen=True, slots=True)
class WindowState:
    """A window as stored: when the customer last wrote, how many replies were sent since."""

    last_customer_at: datetime
    replies: int


class KfState:
    """The kf channel's cursors and reply windows over one async engine."""

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

    async def save_cursor(self, account: str, open_kfid: str, cursor: str, at: datetime) -> None:
        """Remember ``cursor`` as where the loop of (account, open_kfid) continues."""
        require_aware(at)
        where = sa.and_(_CURSOR.c.account == account, _CURSOR.c.open_kfid == open_kfid)
        update = _CURSOR.update().where(where).values(cursor=cursor, updated_at=at)
        insert = _CURSOR.insert().values(
            account=account, open_kfid=open_kfid, cursor=cursor, updated_at=at
        )
        await self._update_or_insert(update, insert)

    async def customer_wrote(self, key: WindowKey, at: datetime) -> None:
        """The customer wrote at ``at``: a fresh window opens unless a later message did already.

        Re-delivered (older) messages never move the window back or reset its reply count.
        """
        require_aware(at)
        update = (
            _WINDOW.update()
            .where(key._where(), _WINDOW.c.last_customer_at < at)
            .values(last_customer_at=at, replies=0)
        )
        insert = _WINDOW.insert().values(
            account=key.account,
            open_kfid=key.open_kfid,
            external_userid=key.external_userid,
            last_customer_at=at,
            replies=0,
        )
        # An update that matches nothing means "no row" or "a newer message is recorded": the
        # insert then either creates the row or hits the key and is rightly dropped.
        async with self._engine.begin() as conn:
            if (await conn.execute(update)).rowcount:
                return
        try:
            async with self._engine.begin() as conn:
                await conn.execute(insert)
        except IntegrityError:
            pass  # a message at least as recent is already recorded: nothing to change

    async def claim_reply(self, key: WindowKey, now: datetime) -> bool:
        """Count one reply in the window; False (nothing counted) when the window is closed:
        no customer message within :data:`WINDOW`, or :data:`REPLIES_PER_MESSAGE` already sent."""
        require_aware(now)
        claim = (
            _WINDOW.update()
            .where(
                key._where(),
                _WINDOW.c.replies < REPLIES_PER_MESSAGE,
                _WINDOW.c.last_customer_at >= now - WINDOW,
            )
            .values(replies=_WINDOW.c.replies + 1)
        )
        async with self._engine.begin() as conn:
            return bool((await conn.execute(claim)).rowcount)

    async def close_window(self, key: WindowKey) -> None:
        """The platform refused a send as outside the window: send nothing more until the
        customer writes again."""
        close = _WINDOW.update().where(key._where()).values(replies=REPLIES_PER_MESSAGE)
        async with self._engine.begin() as conn:
            await conn.execute(close)

    async def window(self, key: WindowKey) -> WindowState | None:
        """The stored window of ``key``, or None when the customer never wrote."""
        query = sa.select(_WINDOW.c.last_customer_at, _WINDOW.c.replies).where(key._where())
        async with self._engine.connect() as conn:
            row = (await conn.execute(query)).one_or_none()
        return None if row is None else WindowState(row.last_customer_at, row.replies)

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
