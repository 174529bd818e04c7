"""Campaign reports: what happened to each run's messages, and who came back.

- :func:`run_counts`: a run's outbox rows by state and reason (``sent``, ``skipped: cap``, ...).
- :func:`reactivation`: of the members sent a message in a run, how many wrote to the brand
  (any of the person's identities, a member message in the log) within ``window`` (72 h) after
  it, per segment and message variant. Computed in Python over the run's sent rows and the
  members' later messages: two indexed queries, no dialect-specific date arithmetic.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from bot.models import MessageLog
from campaigns.models import MemberProfile, OutboxRow

OUTBOX = OutboxRow.__table__  # type: ignore[attr-defined]
PROFILE = MemberProfile.__table__  # type: ignore[attr-defined]
LOG = MessageLog.__table__  # type: ignore[attr-defined]
REACTIVATION_WINDOW = timedelta(hours=72)


@dataclass(frozen=True, slots=True)
class Reactivation:
    """One (segment, variant) line of the reactivation report."""

    segment: str
    variant: str
    sent: int
    reactivated: int

    @property
    def rate(self) -> float:
        return self.reactivated / self.sent if self.sent else 0.0


async def run_counts(engine: AsyncEngine, run_id: int) -> dict[str, int]:
    """``{"sent": n, "skipped: cap": n, "failed": n, "pending": n, ...}`` for one run."""
    stmt = (
        sa.select(OUTBOX.c.state, OUTBOX.c.reason, sa.func.count())
        .where(OUTBOX.c.run_id == run_id)
        .group_by(OUTBOX.c.state, OUTBOX.c.reason)
    )
    counts: dict[str, int] = {}
    async with engine.connect() as conn:
        for state, reason, n in await conn.execute(stmt):
            key = f"{state}: {reason}" if reason and state != "sent" else str(state)
            counts[key] = counts.get(key, 0) + int(n)
    return dict(sorted(counts.items()))


async def reactivation(
    engine: AsyncEngine, run_id: int, *, window: timedelta = REACTIVATION_WINDOW
) -> list[Reactivation]:
    """Members who wrote within ``window`` after their message, per segment and variant."""
    sent_stmt = sa.select(
        OUTBOX.c.person, OUTBOX.c.member_id, OUTBOX.c.segment, OUTBOX.c.variant,
        OUTBOX.c.sent_at,
    ).where(
        OUTBOX.c.run_id == run_id, OUTBOX.c.state == "sent", OUTBOX.c.member_id.is_not(None)
    )  # fmt: skip
    async with engine.connect() as conn:
        sent = [tuple(r) for r in await conn.execute(sent_stmt)]
        if not sent:
            return []
        first = min(r[4] for r in sent)
        identities = await _identities(conn, {str(r[0]) for r in sent if r[0]})
        members = sorted(
            {m for ids in identities.values() for m in ids} | {int(r[1]) for r in sent}
        )
        writes: dict[int, list[datetime]] = defaultdict(list)
        for start in range(0, len(members), 5000):
            stmt = sa.select(LOG.c.member_id, LOG.c.created_at).where(
                LOG.c.role == "user", LOG.c.created_at > first,
                LOG.c.member_id.in_(members[start : start + 5000]),
            )  # fmt: skip
            for member_id, at in await conn.execute(stmt):
                writes[int(member_id)].append(at)
    totals: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0])
    for person, member_id, segment, variant, sent_at in sent:
        who = identities.get(str(person), {int(member_id)}) if person else {int(member_id)}
        came_back = any(sent_at < at <= sent_at + window for m in who for at in writes.get(m, ()))
        line = totals[(segment or "-", variant or "-")]
        line[0] += 1
        line[1] += int(came_back)
    return [Reactivation(s, v, n, r) for (s, v), (n, r) in sorted(totals.items())]


async def _identities(conn: AsyncConnection, persons: set[str]) -> dict[str, set[int]]:
    """Every member id of each person (profiles), for the persons given."""
    found: dict[str, set[int]] = defaultdict(set)
    names = sorted(persons)
    for start in range(0, len(names), 5000):
        stmt = sa.select(PROFILE.c.person, PROFILE.c.member_id).where(
            PROFILE.c.person.in_(names[start : start + 5000])
        )
        for person, member_id in await conn.execute(stmt):
            found[str(person)].add(int(member_id))
    for name in names:  # persons without a profile are "m<member id>"
        if name not in found and name.startswith("m") and name[1:].isdigit():
            found[name].add(int(name[1:]))
    return found
