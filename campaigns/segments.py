"""Declarative segments: which members a campaign may address, streamed in id order.

Decisions:

- **Lifecycle.** :func:`lifecycle` puts every member in exactly one of :data:`LIFECYCLE`: ``new``
  while first seen less than 7 days ago, else by days since ``last_active``: ``active`` [0, 15),
  ``at_risk`` [15, 30), ``dormant`` [30, 90), ``lost`` [90, ∞). :data:`BUILTIN` expresses the
  same five as :class:`SegmentRule` values; to keep them disjoint (a new member is not also
  "active") rules carry one field beyond the brief, ``first_seen_before_days``.
- **Members without a profile** (they wrote to the brand; nobody imported them) count as person
  ``"m<id>"``, consent True, no store, tags, interests or groups. Contacting the brand is the
  relationship; opting out (退订, ``Member.opted_out``) is how a member leaves marketing, and
  ``MemberProfile.consent`` False is how an imported list says "never market to this one".
- **Opt-out is per person.** With ``consenting_only`` a member row is excluded when its profile
  says consent False, or when *any* member row of the same ``person`` (its own included) is
  opted out: a customer who sent 退订 on the Official Account gets nothing through kf either.
- **SQL does the cheap, indexed work** (dates, store, channel prefixes, consent, opt-out) on
  SQLite and PostgreSQL alike; tags and interests are JSON lists whose operators differ between
  the two, so they are matched in Python on each fetched page. Pages are fetched by keyset
  (``id > last id ORDER BY id LIMIT n``), never OFFSET, each in its own short connection, so a
  consumer can write to the database between pages and 100k members stream in flat time. A page
  thinned to nothing by the Python filters is not yielded.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.models import Member, require_aware
from campaigns.models import MemberProfile

MEMBER: sa.Table = Member.__table__  # type: ignore[attr-defined]
PROFILE: sa.Table = MemberProfile.__table__  # type: ignore[attr-defined]

LIFECYCLE = ("new", "active", "at_risk", "dormant", "lost")
NEW_DAYS = 7
_BOUNDS = ((15, "active"), (30, "at_risk"), (90, "dormant"))
_DAY = timedelta(days=1)


def lifecycle(first_seen: datetime, last_active: datetime, now: datetime) -> str:
    """The member's lifecycle stage at ``now`` (one of :data:`LIFECYCLE`)."""
    if now - first_seen < NEW_DAYS * _DAY:
        return "new"
    idle = now - last_active
    for days, stage in _BOUNDS:
        if idle < days * _DAY:
            return stage
    return "lost"


_DAYS_FIELDS = (
    "inactive_min_days", "inactive_max_days", "first_seen_within_days", "first_seen_before_days",
)  # fmt: skip
_PROFILE_FIELDS = (
    "person", "home_store", "tags", "interests", "owner_userid", "external_userid", "groups",
)  # fmt: skip


@dataclass(frozen=True)
class SegmentRule:
    """A segment; every condition that is set must hold (empty tuples and None: no condition)."""

    name: str
    inactive_min_days: float | None = None  # last_active at least this many days ago
    inactive_max_days: float | None = None  # last_active less than this many days ago
    first_seen_within_days: float | None = None  # first seen less than this many days ago
    tags_any: tuple[str, ...] = ()
    tags_all: tuple[str, ...] = ()
    store: str | None = None  # home_store equals
    interests_any: tuple[str, ...] = ()
    channels: tuple[str, ...] = ()  # channel prefixes ("kf.", "oa.", "contact"); empty = all
    consenting_only: bool = True  # exclude consent False and persons with an opted-out identity
    first_seen_before_days: float | None = None  # first seen at least this many days ago

    def __post_init__(self) -> None:
        for name in _DAYS_FIELDS:
            value = getattr(self, name)
            if value is not None and value < 0:
                raise ValueError(f"segment {self.name!r}: {name} must not be negative")
        low, high = self.inactive_min_days, self.inactive_max_days
        if low is not None and high is not None and low >= high:
            raise ValueError(
                f"segment {self.name!r}: inactive_min_days ({low}) must be below "
                f"inactive_max_days ({high})"
            )


BUILTIN: dict[str, SegmentRule] = {
    "new": SegmentRule("new", first_seen_within_days=NEW_DAYS),
    "active": SegmentRule("active", inactive_max_days=15, first_seen_before_days=NEW_DAYS),
    "at_risk": SegmentRule(
        "at_risk", inactive_min_days=15, inactive_max_days=30, first_seen_before_days=NEW_DAYS
    ),
    "dormant": SegmentRule(
        "dormant", inactive_min_days=30, inactive_max_days=90, first_seen_before_days=NEW_DAYS
    ),
    "lost": SegmentRule("lost", inactive_min_days=90, first_seen_before_days=NEW_DAYS),
}
"""The five lifecycle stages as rules; each selects exactly the members :func:`lifecycle` puts
in the stage of the same name."""


@dataclass(frozen=True)
class Audience:
    """One member row with its profile (defaults when it has none)."""

    member_id: int
    channel: str
    external_id: str
    person: str
    home_store: str | None
    tags: tuple[str, ...]
    interests: tuple[str, ...]
    owner_userid: str | None
    external_userid: str | None
    groups: tuple[str, ...]
    first_seen: datetime
    last_active: datetime


async def select_audience(
    engine: AsyncEngine, rule: SegmentRule, *, now: datetime, batch_size: int = 5000
) -> AsyncIterator[list[Audience]]:
    """The members ``rule`` selects at ``now``, by member id, in non-empty batches."""
    require_aware(now)
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, not {batch_size}")
    base = _statement(rule, now).limit(batch_size)
    after: int | None = None
    while True:
        page = base if after is None else base.where(MEMBER.c.id > after)
        async with engine.connect() as conn:
            rows = (await conn.execute(page)).all()
        batch = [a for a in map(_audience, rows) if _matches_lists(rule, a)]
        if batch:
            yield batch
        if len(rows) < batch_size:
            return
        after = rows[-1].id


def person_of(member: sa.FromClause, profile: sa.FromClause) -> sa.ColumnElement[str]:
    """SQL for a member row's person: the profile's, else ``'m' || id``."""
    return sa.func.coalesce(
        profile.c.person, sa.literal("m", sa.String) + sa.cast(member.c.id, sa.String)
    )


def _statement(rule: SegmentRule, now: datetime) -> sa.Select[Any]:
    joined = MEMBER.outerjoin(PROFILE, PROFILE.c.member_id == MEMBER.c.id)
    member = [
        MEMBER.c[name] for name in ("id", "channel", "external_id", "first_seen", "last_active")
    ]
    profile = [PROFILE.c[name] for name in _PROFILE_FIELDS]
    statement = sa.select(*member, *profile).select_from(joined).order_by(MEMBER.c.id)
    return statement.where(*_conditions(rule, now))


def _conditions(rule: SegmentRule, now: datetime) -> list[sa.ColumnElement[bool]]:
    def ago(days: float) -> datetime:
        return now - days * _DAY

    conditions: list[sa.ColumnElement[bool]] = []
    if rule.inactive_min_days is not None:
        conditions.append(MEMBER.c.last_active <= ago(rule.inactive_min_days))
    if rule.inactive_max_days is not None:
        conditions.append(MEMBER.c.last_active > ago(rule.inactive_max_days))
    if rule.first_seen_within_days is not None:
        conditions.append(MEMBER.c.first_seen > ago(rule.first_seen_within_days))
    if rule.first_seen_before_days is not None:
        conditions.append(MEMBER.c.first_seen <= ago(rule.first_seen_before_days))
    if rule.store is not None:
        conditions.append(PROFILE.c.home_store == rule.store)
    if rule.channels:
        prefixes = (MEMBER.c.channel.startswith(p, autoescape=True) for p in rule.channels)
        conditions.append(sa.or_(*prefixes))
    if rule.consenting_only:
        conditions.extend(_consenting())
    return conditions


def _consenting() -> list[sa.ColumnElement[bool]]:
    """Consent not refused, and no identity of the same person opted out."""
    other, other_profile = MEMBER.alias("opted_member"), PROFILE.alias("opted_profile")
    opted_out_persons = (
        sa.select(person_of(other, other_profile))
        .select_from(other.outerjoin(other_profile, other_profile.c.member_id == other.c.id))
        .where(other.c.opted_out == sa.true())
    )
    return [
        sa.or_(PROFILE.c.consent.is_(None), PROFILE.c.consent == sa.true()),
        person_of(MEMBER, PROFILE).not_in(opted_out_persons),
    ]


def _audience(row: sa.Row[Any]) -> Audience:
    return Audience(
        member_id=row.id,
        channel=row.channel,
        external_id=row.external_id,
        person=row.person or f"m{row.id}",
        home_store=row.home_store,
        tags=_strings(row.tags),
        interests=_strings(row.interests),
        owner_userid=row.owner_userid,
        external_userid=row.external_userid,
        groups=_strings(row.groups),
        first_seen=row.first_seen,
        last_active=row.last_active,
    )


def _strings(value: Any) -> tuple[str, ...]:
    return tuple(str(item) for item in value) if isinstance(value, list) else ()


def _matches_lists(rule: SegmentRule, audience: Audience) -> bool:
    return (
        _any(rule.tags_any, audience.tags)
        and set(rule.tags_all) <= set(audience.tags)
        and _any(rule.interests_any, audience.interests)
    )


def _any(wanted: Sequence[str], have: Sequence[str]) -> bool:
    return not wanted or not set(wanted).isdisjoint(have)
