"""The delivery policy: asked just before each send whether an outbox row may go out now.

:meth:`DeliveryPolicy.decide` applies these rules in this order; the first that matches wins:

1. ``expires_at`` reached (``now >= expires_at``) → skip ``expired``: a promotion that ended is
   never sent.
2. Person rows (``member_id`` set): the person is every member row whose profile's ``person``
   equals ``row.person``, plus the row's own member (which may have no profile). Any of them
   ``opted_out``, or any of their profiles with ``consent`` False → skip ``opted_out``. Read fresh
   at every decision, so an opt-out that arrives mid-campaign stops the remaining sends.
   Any of them handed off to a person (``handoff``: a human is serving them right now) → skip
   ``human_serving``: the bot stays silent while a human serves, pushes included.
3. Quiet hours (every row, groups too) → defer until the end of the quiet window, so the message
   goes out in the morning instead of being dropped; if that is at or after ``expires_at`` (the
   message would be expired by then) → skip ``quiet_hours``.
4. Caps per person (not for ``group`` rows): ``sent`` outbox rows of the person on any channel but
   ``group``, from any run. At least ``cap_per_day`` since local midnight, or ``cap_per_week`` in
   the last 7×24 h → skip ``cap``. The week is half-open: a message sent exactly 168 h ago no
   longer counts, so a job that sends at the same time every day is not blocked on day 8.
5. ``kf`` / ``oa`` rows: the member's 48-hour / 5-message contact window is not decided here.
   The worker consumes one send of it (:mod:`bot.contact`, the ledger answers and handoff
   notices use too) just before the platform call, and a closed or used-up window ends the row
   ``skipped`` with ``window_closed``: asking here and consuming later could overspend.
6. ``staff_task`` rows: fewer than ``staff_task_per_month`` ``sent`` staff tasks for the person
   in the current local calendar month → else skip ``platform_quota``.
7. Otherwise send.

Cost: rows that end early cost nothing (expiry, quiet hours for groups) or one query. A person row
costs at most two round trips, each an index lookup: the person's member rows (``member.id`` via
``member_profile.person``) and one aggregate over the person's recent ``sent`` outbox rows (index
``(person, sent_at)``). Rows without ``person`` fall back to counting by ``member_id`` (no index;
the planner always sets ``person``).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any, Literal

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.models import Member, require_aware
from campaigns.config import CampaignsConfig
from campaigns.models import MemberProfile, OutboxRow

SKIP_REASONS = (
    "opted_out",
    "cap",
    "window_closed",
    "platform_quota",
    "expired",
    "compliance",
    "quiet_hours",
    "human_serving",
)
"""Every reason a row may end ``skipped`` with (``compliance`` is the copy check's, not ours)."""

WEEK = timedelta(days=7)


@dataclass(frozen=True)
class Decision:
    """What the worker does with a row now: ``send`` it, ``skip`` it for good (with ``reason``),
    or ``defer`` it to ``until`` (aware UTC)."""

    action: Literal["send", "skip", "defer"]
    reason: str | None = None
    until: datetime | None = None


SEND = Decision("send")


def _skip(reason: str) -> Decision:
    return Decision("skip", reason)


def _at(day: date, clock: time, config: CampaignsConfig) -> datetime:
    return datetime.combine(day, clock, tzinfo=config.timezone).astimezone(UTC)


def quiet_until(now: datetime, config: CampaignsConfig) -> datetime | None:
    """The end of the quiet window ``now`` is in (aware UTC), or None outside quiet hours.

    The window is ``[quiet_start, quiet_end)`` in local time; it crosses midnight when
    ``quiet_start > quiet_end`` (21:30–08:30) and is empty when they are equal.
    """
    local = require_aware(now).astimezone(config.timezone)
    start, end, clock = config.quiet_start, config.quiet_end, local.time()
    if start == end:
        return None
    if start < end:
        return _at(local.date(), end, config) if start <= clock < end else None
    if clock >= start:
        return _at(local.date() + timedelta(days=1), end, config)
    return _at(local.date(), end, config) if clock < end else None


@dataclass(frozen=True)
class _Person:
    opted_out: bool
    human_serving: bool = False


@dataclass(frozen=True)
class _Counts:
    day: int
    week: int
    month_staff_tasks: int


class DeliveryPolicy:
    """The rules of the module docstring, read from the database at every decision."""

    def __init__(self, engine: AsyncEngine, config: CampaignsConfig) -> None:
        self._engine = engine
        self._config = config

    async def decide(self, row: OutboxRow, now: datetime) -> Decision:
        """Send, skip (with a reason from :data:`SKIP_REASONS`) or defer ``row`` at ``now``."""
        require_aware(now)
        if row.expires_at is not None and now >= row.expires_at:
            return _skip("expired")
        person = await self._person(row) if row.member_id is not None else None
        if person is not None and person.opted_out:
            return _skip("opted_out")
        if person is not None and person.human_serving:
            return _skip("human_serving")
        until = quiet_until(now, self._config)
        if until is not None:
            if row.expires_at is not None and until >= row.expires_at:
                return _skip("quiet_hours")
            return Decision("defer", "quiet_hours", until)
        if person is None or row.channel == "group":
            return SEND
        return self._limits(row, await self._counts(row, now))

    def _limits(self, row: OutboxRow, counts: _Counts) -> Decision:
        config = self._config
        if counts.day >= config.cap_per_day or counts.week >= config.cap_per_week:
            return _skip("cap")
        if row.channel == "staff_task" and counts.month_staff_tasks >= config.staff_task_per_month:
            return _skip("platform_quota")
        return SEND

    async def _person(self, row: OutboxRow) -> _Person:
        """Opt-out / consent and human service over the person's member rows."""
        member, profile = Member.__table__.c, MemberProfile.__table__.c  # type: ignore[attr-defined]
        ids: sa.Select[Any] | sa.CompoundSelect[Any] = sa.select(sa.literal(row.member_id))
        if row.person is not None:
            same_person = sa.select(profile.member_id).where(profile.person == row.person)
            ids = sa.union_all(ids, same_person)
        stmt = (
            sa.select(member.id, member.opted_out, member.handoff, profile.consent)
            .select_from(Member.__table__.outerjoin(MemberProfile.__table__))  # type: ignore[attr-defined]
            .where(member.id.in_(ids))
        )
        async with self._engine.connect() as conn:
            rows = (await conn.execute(stmt)).all()
        opted_out = any(r.opted_out or r.consent is False for r in rows)
        return _Person(opted_out, any(r.handoff for r in rows))

    async def _counts(self, row: OutboxRow, now: datetime) -> _Counts:
        """One aggregate over the person's recent sent rows."""
        local = now.astimezone(self._config.timezone)
        day_start = _at(local.date(), time(0), self._config)
        month_start = _at(local.date().replace(day=1), time(0), self._config)
        week_after = now - WEEK
        out = OutboxRow.__table__.c  # type: ignore[attr-defined]
        columns: list[sa.ColumnElement[Any]] = [
            _count(sa.and_(out.channel != "group", out.sent_at >= day_start)),
            _count(sa.and_(out.channel != "group", out.sent_at > week_after)),
            _count(sa.and_(out.channel == "staff_task", out.sent_at >= month_start)),
        ]
        who = out.person == row.person if row.person is not None else out.member_id == row.member_id
        stmt = sa.select(*columns).where(
            who, out.state == "sent", out.sent_at >= min(week_after, month_start)
        )
        async with self._engine.connect() as conn:
            result = (await conn.execute(stmt)).one()
        return _Counts(result[0], result[1], result[2])


def _count(condition: sa.ColumnElement[bool]) -> sa.ColumnElement[int]:
    """How many rows match ``condition`` (portable: COUNT skips the CASE's NULLs)."""
    return sa.func.count(sa.case((condition, 1)))
