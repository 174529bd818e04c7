"""The contact-window ledger: where a member can be reached, and how many messages they may still
be sent there.

WeCom customer service (kf ``send_msg``) and the Official Account (``message/custom/send``)
accept at most :data:`SENDS_PER_WINDOW` messages within :data:`WINDOW` after the member's last
message (DESIGN.md §3). This module is the one home of that rule: adapters open a window when a
member writes, and every sender on such a route — answers (each part of a split answer), handoff
notices, campaign pushes — consumes from it *before* the platform call. Routes without such a
window (:data:`WINDOWED_ROUTES` lists the ones with it; groups, robots, the web chat, webhook
bridges, staff tasks have none) are not metered here.

Tables (created by the migrations, :mod:`bot.schema`; revision 0002):

- ``contact_window(route, account, user_id, chat, opened_at, used)``: one window per address;
- ``member_address(member_id, route, account, user_id, chat, last_inbound_at)``: the address
  each member last wrote from, which campaigns read instead of parsing channel names.

Decisions:

- **Open.** :meth:`ContactLedger.open` moves ``opened_at`` to the message's time and resets
  ``used`` to 0 (the platform counts from the member's *last* message). A redelivered older
  message changes nothing, so a re-read page or a retry never refills a window.
- **Consume.** :meth:`ContactLedger.consume` is all or nothing and one conditional ``UPDATE``
  (``used + n <= limit`` and the window still open), so processes sharing the database can never
  overspend together: SQLite serialises writers, PostgreSQL re-checks the ``WHERE`` on the newest
  row version after waiting for the row lock. Multi-part answers ask :meth:`remaining` first and
  are split to fit (:func:`adapters.wecom.limits.fit_window`), so a reply is shortened rather
  than cut off after its first parts.
- **What counts.** Every kf ``send_msg`` message (each part of a split answer, each handoff
  notice, each push) and every Official Account ``custom/send`` message. Not counted: the
  Official Account's passive reply (the HTTP response to the member's message is not a
  customer-service message; WeChat allows one per message whatever the 48-hour count) and the
  kf ``enter_session`` welcome (``send_msg_on_event``, one per event code).
- **The boundary.** A window is open while ``at < opened_at + WINDOW``; at exactly 48 h it is
  closed (the platform does not document its boundary to the second; this is the safe side).
- **Failures are not refunded.** A slot consumed for a send that then failed stays used: after
  a timeout the platform may have delivered (and counted) it. The ledger errs on sending less.
- **The platform knows best.** When the platform still refuses a send as outside the window
  (kf 95001/95002, OA 45015/45047), :meth:`close` uses the window up until the member writes.
- **Retention.** :meth:`prune` deletes windows that closed before a given time. A deleted
  window reads as never opened, that is closed, so pruning can never allow a send: the pruning
  job may pass any time up to now. Addresses are kept (one row per member).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Dialect
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlmodel import Field, SQLModel

from bot.models import UTCDateTime, require_aware
from bot.types import Address
from knowledge.sql import upsert

WINDOW = timedelta(hours=48)
"""How long after the member's last message a windowed route accepts our messages."""
SENDS_PER_WINDOW = 5
"""How many messages a windowed route accepts per window."""
WINDOWED_ROUTES = frozenset({"kf", "oa"})
"""Routes with a contact window: kf ``send_msg`` and Official Account ``custom/send``."""
ID_BATCH = 5000
"""Member ids per ``IN (...)`` query (SQLite allows 32k bound parameters)."""


def _utc_column(*, nullable: bool = False) -> Any:
    return sa.Column(UTCDateTime(), nullable=nullable)


class ContactWindow(SQLModel, table=True):
    """One address's window: when the member last wrote, how many sends were used since."""

    __tablename__ = "contact_window"

    route: str = Field(primary_key=True, max_length=32)
    account: str = Field(primary_key=True, max_length=64)
    user_id: str = Field(primary_key=True, max_length=128)
    chat: str = Field(default="", primary_key=True, max_length=128)
    opened_at: datetime = Field(sa_column=_utc_column())
    used: int = 0


class MemberAddress(SQLModel, table=True):
    """The address a member (one channel identity, ``member.id``) last wrote from, and when."""

    __tablename__ = "member_address"

    member_id: int = Field(primary_key=True, foreign_key="member.id")
    route: str = Field(max_length=32)
    account: str = Field(max_length=64)
    user_id: str = Field(max_length=128)
    chat: str = Field(default="", max_length=128)
    last_inbound_at: datetime = Field(sa_column=_utc_column())


WINDOWS: sa.Table = ContactWindow.__table__  # type: ignore[attr-defined]
ADDRESSES: sa.Table = MemberAddress.__table__  # type: ignore[attr-defined]


@dataclass(frozen=True, slots=True)
class Reach:
    """How a member can be reached on a windowed route right now (:meth:`ContactLedger.reach`)."""

    address: Address
    remaining: int
    """Sends the window still allows (0: closed or used up)."""
    last_inbound_at: datetime


KEY_COLUMNS = ("route", "account", "user_id", "chat")
"""The columns that hold an :class:`Address` in both tables (``chat`` is "" for None)."""


def _key(address: Address) -> dict[str, str]:
    values = (address.route, address.account, address.user, address.chat or "")
    return dict(zip(KEY_COLUMNS, values, strict=True))


def _where(table: sa.Table, address: Address) -> sa.ColumnElement[bool]:
    return sa.and_(*(table.c[name] == value for name, value in _key(address).items()))


class ContactLedger:
    """The windows and addresses over one async engine (SQLite or PostgreSQL)."""

    def __init__(
        self, engine: AsyncEngine, *, limit: int = SENDS_PER_WINDOW, window: timedelta = WINDOW
    ) -> None:
        self._engine = engine
        self._limit = limit
        self._window = window

    @property
    def limit(self) -> int:
        """Sends per window."""
        return self._limit

    async def arrived(self, member_id: int, address: Address, at: datetime) -> None:
        """A member wrote from ``address`` at ``at``: remember it as their latest address and,
        on a windowed route, open the window; one transaction of two upserts."""
        require_aware(at)
        async with self._engine.begin() as conn:
            latest = upsert(
                conn.dialect, ADDRESSES, ["member_id"], replace=[*KEY_COLUMNS, "last_inbound_at"],
                where=ADDRESSES.c.last_inbound_at <= at,
            )  # fmt: skip
            await conn.execute(
                latest.values(member_id=member_id, **_key(address), last_inbound_at=at)
            )
            if address.route in WINDOWED_ROUTES:
                await conn.execute(_open(conn.dialect, address, at))

    async def open(self, address: Address, at: datetime) -> None:
        """The member wrote at ``at``: a fresh window, unless a later message opened one."""
        require_aware(at)
        if address.route not in WINDOWED_ROUTES:
            return
        async with self._engine.begin() as conn:
            await conn.execute(_open(conn.dialect, address, at))

    async def consume(self, address: Address, n: int, at: datetime) -> bool:
        """Use ``n`` sends of the window at ``at``; False (nothing used) when the window is
        closed or has fewer than ``n`` left. Routes without a window always grant."""
        require_aware(at)
        if n < 1:
            raise ValueError(f"consume at least one send, not {n}")
        if address.route not in WINDOWED_ROUTES:
            return True
        claim = (
            WINDOWS.update()
            .where(
                _where(WINDOWS, address),
                WINDOWS.c.used + n <= self._limit,
                WINDOWS.c.opened_at > at - self._window,
            )
            .values(used=WINDOWS.c.used + n)
        )
        async with self._engine.begin() as conn:
            return bool((await conn.execute(claim)).rowcount)

    async def remaining(self, address: Address, at: datetime) -> int:
        """Sends the window allows at ``at`` (0 when closed; the limit on unwindowed routes)."""
        require_aware(at)
        if address.route not in WINDOWED_ROUTES:
            return self._limit
        query = sa.select(WINDOWS.c.opened_at, WINDOWS.c.used).where(_where(WINDOWS, address))
        async with self._engine.connect() as conn:
            row = (await conn.execute(query)).one_or_none()
        return 0 if row is None else self._left(row.opened_at, row.used, at)

    async def close(self, address: Address) -> None:
        """The platform refused a send as outside the window: none until the member writes."""
        close = WINDOWS.update().where(_where(WINDOWS, address)).values(used=self._limit)
        async with self._engine.begin() as conn:
            await conn.execute(close)

    async def reach(self, member_ids: Iterable[int], at: datetime) -> dict[int, Reach]:
        """The members among ``member_ids`` whose latest address is on a windowed route, with
        what their window allows at ``at``."""
        require_aware(at)
        ids = list(member_ids)
        found: dict[int, Reach] = {}
        for start in range(0, len(ids), ID_BATCH):
            async with self._engine.connect() as conn:
                rows = (await conn.execute(_reach_query(ids[start : start + ID_BATCH]))).all()
            for row in rows:
                left = 0 if row.opened_at is None else self._left(row.opened_at, row.used, at)
                address = Address(row.route, row.account, row.user_id, row.chat or None)
                found[int(row.member_id)] = Reach(address, left, row.last_inbound_at)
        return found

    async def prune(self, before: datetime) -> int:
        """Delete the windows that closed before ``before``; how many were deleted."""
        require_aware(before)
        stmt = WINDOWS.delete().where(WINDOWS.c.opened_at <= before - self._window)
        async with self._engine.begin() as conn:
            return (await conn.execute(stmt)).rowcount

    def _left(self, opened_at: datetime, used: int, at: datetime) -> int:
        return max(self._limit - used, 0) if at < opened_at + self._window else 0


def _reach_query(member_ids: list[int]) -> sa.Select[Any]:
    same = sa.and_(*(ADDRESSES.c[name] == WINDOWS.c[name] for name in KEY_COLUMNS))
    joined = ADDRESSES.outerjoin(WINDOWS, same)
    return (
        sa.select(ADDRESSES, WINDOWS.c.opened_at, WINDOWS.c.used)
        .select_from(joined)
        .where(ADDRESSES.c.member_id.in_(member_ids), ADDRESSES.c.route.in_(WINDOWED_ROUTES))
    )


def _open(dialect: Dialect, address: Address, at: datetime) -> sa.Insert:
    """Insert the window opened at ``at``, or move a stored one to ``at`` with nothing used,
    unless it was opened later (a redelivered older message changes nothing)."""
    statement = upsert(
        dialect, WINDOWS, KEY_COLUMNS, replace=("opened_at", "used"), where=WINDOWS.c.opened_at < at
    )
    return statement.values(**_key(address), opened_at=at, used=0)
