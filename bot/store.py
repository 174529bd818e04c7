"""SQL storage of the core: dedupe keys, members and their state, and the message log.

The message log is also the conversation record that reports count (:meth:`Store.counts`):
a bot row's ``answered_by`` says how the message was answered, "handoff" and "complaint" (a
handoff because the member complained) included. Decision: complaints are recorded there rather
than in a new column or table, so one query counts everything.

Old rows are pruned in batches (:func:`delete_in_batches`), each batch its own short
transaction, so pruning a large table never holds a long write lock; the scheduler leader runs
the pruning daily (:mod:`campaigns.retention` says how long each table keeps its rows).

Every state change is one short transaction. Flags flip with a conditional ``UPDATE`` so
"was it already on?" is answered atomically, even when two messages of one member race (a member
writes in two groups at once, say).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy import distinct, func, update
from sqlalchemy import select as sa_select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from bot.answer import Turn
from bot.contact import ContactLedger
from bot.models import Member, MessageLog, require_aware
from bot.types import Address, MemberRef
from knowledge.types import Citation

PRUNE_BATCH = 5000
"""Rows deleted per transaction when pruning."""

HANDOFF_KINDS = ("handoff", "complaint")
"""``answered_by`` values of bot rows that handed the member to a person."""


@dataclass(frozen=True, slots=True)
class Counts:
    """What happened in conversations over a period (:meth:`Store.counts`)."""

    messages: int = 0
    """Messages members sent (1:1, and group messages addressed to the bot)."""
    members: int = 0
    """Distinct members who sent them."""
    replies: dict[str, int] = field(default_factory=dict)
    """Bot replies by ``answered_by``."""

    @property
    def handoffs(self) -> int:
        """Handoffs to a person, complaints included."""
        return sum(self.replies.get(kind, 0) for kind in HANDOFF_KINDS)

    @property
    def complaints(self) -> int:
        """Handoffs because the member complained."""
        return self.replies.get("complaint", 0)


class Store:
    """The core's tables over one async engine (SQLite or PostgreSQL)."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        self._sessions = async_sessionmaker(engine, class_=AsyncSession, expire_on_commit=False)
        self.contacts = ContactLedger(engine)
        """Members' addresses and contact windows (:mod:`bot.contact`), on the same engine."""

    async def prune_log(self, before: datetime) -> int:
        """Delete message-log rows created before ``before``; how many."""
        table = MessageLog.__table__  # type: ignore[attr-defined]
        return await delete_in_batches(
            self._engine, table, table.c.created_at < require_aware(before)
        )

    async def get_member(self, channel: str, external_id: str) -> Member | None:
        """The member with this channel identity, or None."""
        async with self._sessions() as session:
            return await self._find(session, channel, external_id)

    async def upsert_member(self, ref: MemberRef, at: datetime) -> Member:
        """Create the member on first contact, else move ``last_active`` to ``at``.

        A non-empty ``display_name`` replaces the stored one (members rename themselves).
        """
        require_aware(at)
        member = await self._touch(ref, at)
        if member is not None:
            return member
        try:
            return await self._insert(ref, at)
        except IntegrityError:
            # Another message of the same new member inserted it first.
            member = await self._touch(ref, at)
            if member is None:
                raise
            return member

    async def record_arrival(self, member: Member, address: Address, at: datetime) -> None:
        """The member wrote from ``address`` at ``at`` (:meth:`ContactLedger.arrived`)."""
        await self.contacts.arrived(_member_id(member), address, at)

    async def set_opted_out(self, member: Member, opted_out: bool, at: datetime) -> bool:
        """Opt the member out (or back in); False when it was already in that state."""
        stamp = {"opted_out_at": at} if opted_out else {"opted_in_at": at}
        return await self._flip(member, "opted_out", opted_out, stamp)

    async def start_handoff(self, member: Member, at: datetime) -> bool:
        """A person takes over; False when one already had. The bot stays silent meanwhile."""
        return await self._flip(member, "handoff", True, {"handoff_at": at})

    async def end_handoff(self, member: Member) -> bool:
        """The bot answers again (the member asked, or the human session closed).

        False when no handoff was on.
        """
        return await self._flip(member, "handoff", False, {})

    async def recent_turns(self, session_key: str, *, limit: int, since: datetime) -> list[Turn]:
        """The session's last ``limit`` messages logged at or after ``since``, oldest first."""
        require_aware(since)
        if limit <= 0:
            return []
        statement = (
            select(MessageLog)
            .where(col(MessageLog.session_key) == session_key)
            .where(col(MessageLog.created_at) >= since)
            .order_by(col(MessageLog.created_at).desc(), col(MessageLog.id).desc())
            .limit(limit)
        )
        async with self._sessions() as session:
            rows = (await session.exec(statement)).all()
        return [Turn("bot" if row.role == "bot" else "user", row.text) for row in reversed(rows)]

    async def log_exchange(
        self,
        session_key: str,
        member: Member,
        question: str,
        at: datetime,
        *,
        reply: str | None = None,
        answered_by: str | None = None,
        citations: Sequence[Citation] = (),
    ) -> None:
        """Store the member's question and, when the bot replied, the reply as sent."""
        require_aware(at)
        base = {"session_key": session_key, "member_id": _member_id(member), "created_at": at}
        rows: list[dict[str, object]] = [
            {**base, "role": "user", "text": question, "answered_by": None, "citations": []}
        ]
        if reply is not None:
            cited = [asdict(c) for c in citations]
            rows.append(
                {
                    **base,
                    "role": "bot",
                    "text": reply,
                    "answered_by": answered_by,
                    "citations": cited,
                }
            )
        async with self._engine.begin() as conn:
            await conn.execute(MessageLog.__table__.insert(), rows)  # type: ignore[attr-defined]

    async def counts(self, since: datetime, until: datetime) -> Counts:
        """Messages, members and replies by kind logged in ``[since, until)``."""
        require_aware(since)
        require_aware(until)
        when = (col(MessageLog.created_at) >= since, col(MessageLog.created_at) < until)
        table = MessageLog.__table__  # type: ignore[attr-defined]
        by_kind = (
            sa_select(table.c.role, table.c.answered_by, func.count())
            .where(*when)
            .group_by(table.c.role, table.c.answered_by)
        )
        members = sa_select(func.count(distinct(table.c.member_id))).where(
            *when, table.c.role == "user"
        )
        async with self._engine.connect() as conn:
            rows = (await conn.execute(by_kind)).all()
            member_count = (await conn.execute(members)).scalar_one()
        messages = sum(n for role, _, n in rows if role == "user")
        replies = {kind or "": n for role, kind, n in rows if role == "bot"}
        return Counts(messages, member_count, replies)

    async def session_log(self, session_key: str) -> list[MessageLog]:
        """Every logged message of a session, oldest first (for operators and tests)."""
        statement = (
            select(MessageLog)
            .where(col(MessageLog.session_key) == session_key)
            .order_by(col(MessageLog.created_at), col(MessageLog.id))
        )
        async with self._sessions() as session:
            return list((await session.exec(statement)).all())

    @staticmethod
    async def _find(session: AsyncSession, channel: str, external_id: str) -> Member | None:
        statement = select(Member).where(
            col(Member.channel) == channel, col(Member.external_id) == external_id
        )
        return (await session.exec(statement)).first()

    async def _touch(self, ref: MemberRef, at: datetime) -> Member | None:
        # One UPDATE ... RETURNING in the common case (a known member writing again); a message
        # older than last_active (arriving out of order) only refreshes the display name.
        member = await self._update_returning(ref, {"last_active": at}, newer_than=at)
        if member is None:
            member = await self._update_returning(ref, {}, newer_than=None)
        return member

    async def _update_returning(
        self, ref: MemberRef, values: dict[str, object], *, newer_than: datetime | None
    ) -> Member | None:
        if ref.display_name:
            values = {**values, "display_name": ref.display_name}
        where = [col(Member.channel) == ref.channel, col(Member.external_id) == ref.external_id]
        if newer_than is not None:
            where.append(col(Member.last_active) <= newer_than)
        async with self._sessions() as session:
            if not values:
                return await self._find(session, ref.channel, ref.external_id)
            statement = update(Member).where(*where).values(**values).returning(Member)
            member = (await session.exec(statement)).scalars().first()
            await session.commit()
            return member

    async def _insert(self, ref: MemberRef, at: datetime) -> Member:
        member = Member(
            channel=ref.channel,
            external_id=ref.external_id,
            display_name=ref.display_name,
            first_seen=at,
            last_active=at,
        )
        async with self._sessions() as session:
            session.add(member)
            await session.commit()
        return member

    async def _flip(
        self, member: Member, flag: str, value: bool, stamps: dict[str, datetime]
    ) -> bool:
        for stamp in stamps.values():
            require_aware(stamp)
        column = Member.__table__.c[flag]  # type: ignore[attr-defined]
        statement = (
            update(Member)
            .where(col(Member.id) == _member_id(member), column == (not value))
            .values({flag: value, **stamps})
        )
        async with self._engine.begin() as conn:
            result = await conn.execute(statement)
        return result.rowcount == 1


async def delete_in_batches(
    engine: AsyncEngine,
    table: sa.Table,
    condition: sa.ColumnElement[bool],
    *,
    batch: int = PRUNE_BATCH,
) -> int:
    """Delete ``table``'s rows matching ``condition``, ``batch`` rows per transaction (selected
    by primary key, the same statement on SQLite and PostgreSQL); how many were deleted."""
    (key,) = table.primary_key.columns
    total = 0
    while True:
        chosen = sa.select(key).where(condition).limit(batch).scalar_subquery()
        async with engine.begin() as conn:
            deleted = (await conn.execute(table.delete().where(key.in_(chosen)))).rowcount
        total += deleted
        if deleted < batch:
            return total


def _member_id(member: Member) -> int:
    if member.id is None:
        raise ValueError("the member has not been stored yet")
    return member.id
