"""Segments: lifecycle boundaries, rule filters, per-person opt-out and keyset batches, on real
SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from campaigns.members import MEMBER, PROFILE, profile_row
from campaigns.segments import (
    BUILTIN,
    LIFECYCLE,
    Audience,
    SegmentRule,
    lifecycle,
    select_audience,
)
from tests.campaigns.conftest import T0, add_member

DAY = timedelta(days=1)
LONG_AGO = T0 - 365 * DAY


async def add(
    engine: AsyncEngine,
    external_id: str,
    *,
    idle_days: float = 1,
    channel: str = "kf.main",
    opted_out: bool = False,
    **profile: Any,
) -> int:
    """A member last active ``idle_days`` ago (first seen long ago), with a profile if given."""
    mid = await add_member(
        engine, external_id, channel=channel, last_active=T0 - idle_days * DAY,
        first_seen=LONG_AGO, opted_out=opted_out,
    )  # fmt: skip
    if profile:
        async with engine.begin() as conn:
            await conn.execute(PROFILE.insert(), [profile_row(mid, T0, **profile)])
    return mid


async def audience(engine: AsyncEngine, rule: SegmentRule, **kwargs: Any) -> list[Audience]:
    return [a async for batch in select_audience(engine, rule, now=T0, **kwargs) for a in batch]


async def ids(engine: AsyncEngine, rule: SegmentRule) -> list[str]:
    return [a.external_id for a in await audience(engine, rule)]


@pytest.mark.parametrize(
    ("idle_days", "stage"),
    [
        (0, "active"),
        (14.99, "active"),
        (15, "at_risk"),
        (29.99, "at_risk"),
        (30, "dormant"),
        (89.99, "dormant"),
        (90, "lost"),
        (400, "lost"),
    ],
)
def test_lifecycle_boundaries(idle_days: float, stage: str) -> None:
    assert lifecycle(LONG_AGO, T0 - idle_days * DAY, T0) == stage


def test_new_members_are_new_for_seven_days() -> None:
    assert lifecycle(T0 - 6.99 * DAY, T0 - 6.99 * DAY, T0) == "new"
    assert lifecycle(T0 - 7 * DAY, T0 - 7 * DAY, T0) == "active"


async def test_builtin_segments_match_lifecycle_at_every_boundary(engine: AsyncEngine) -> None:
    idle = [0, 14.99, 15, 29.99, 30, 89.99, 90, 400]
    for days in idle:
        await add(engine, f"idle{days}", idle_days=days)
    await add_member(engine, "fresh", first_seen=T0 - 6.99 * DAY, last_active=T0 - 6.99 * DAY)
    await add_member(engine, "week", first_seen=T0 - 7 * DAY, last_active=T0 - 7 * DAY)
    assert list(BUILTIN) == list(LIFECYCLE)
    selected: dict[str, list[str]] = {}
    for name, rule in BUILTIN.items():
        for member in await audience(engine, rule):
            assert lifecycle(member.first_seen, member.last_active, T0) == name
            selected.setdefault(member.external_id, []).append(name)
    assert selected == {
        "idle0": ["active"], "idle14.99": ["active"], "idle15": ["at_risk"],
        "idle29.99": ["at_risk"], "idle30": ["dormant"], "idle89.99": ["dormant"],
        "idle90": ["lost"], "idle400": ["lost"], "fresh": ["new"], "week": ["active"],
    }  # fmt: skip


async def test_tags_store_interests_and_channels(engine: AsyncEngine) -> None:
    await add(engine, "a", tags=["vip", "母婴"], home_store="SH01", interests=["零食"])
    await add(engine, "b", tags=["vip"], home_store="SH02")
    await add(engine, "c", tags=["母婴"], home_store="SH01", channel="oa.main")
    await add(engine, "d", channel="contact")
    await add(engine, "e", channel="kf_x")  # "_" is not a LIKE wildcard here
    assert await ids(engine, SegmentRule("t", tags_any=("vip", "母婴"))) == ["a", "b", "c"]
    assert await ids(engine, SegmentRule("t", tags_all=("vip", "母婴"))) == ["a"]
    assert await ids(engine, SegmentRule("t", store="SH01")) == ["a", "c"]
    assert await ids(engine, SegmentRule("t", interests_any=("零食", "家电"))) == ["a"]
    assert await ids(engine, SegmentRule("t", channels=("kf.",))) == ["a", "b"]
    assert await ids(engine, SegmentRule("t", channels=("oa.", "contact"))) == ["c", "d"]
    assert await ids(engine, SegmentRule("t", channels=("kf_",))) == ["e"]
    combined = SegmentRule("t", store="SH01", tags_any=("母婴",), channels=("kf.",))
    assert await ids(engine, combined) == ["a"]


async def test_members_without_profile_get_defaults(engine: AsyncEngine) -> None:
    mid = await add(engine, "bare")
    [member] = await audience(engine, SegmentRule("all"))
    assert member == Audience(
        member_id=mid, channel="kf.main", external_id="bare", person=f"m{mid}", home_store=None,
        tags=(), interests=(), owner_userid=None, external_userid=None, groups=(),
        first_seen=LONG_AGO, last_active=T0 - DAY,
    )  # fmt: skip


async def test_opted_out_identity_excludes_the_whole_person(engine: AsyncEngine) -> None:
    await add(engine, "kf-of-p1", person="P1", owner_userid="zhang", external_userid="wm1")
    await add(engine, "oa-of-p1", channel="oa.main", opted_out=True, person="P1")
    await add(engine, "contact-of-p1", channel="contact", person="P1")
    await add(engine, "p2", person="P2")
    await add(engine, "no-profile-out", opted_out=True)
    await add(engine, "no-consent", person="P3", consent=False)
    assert await ids(engine, SegmentRule("all")) == ["p2"]
    everyone = await ids(engine, SegmentRule("all", consenting_only=False))
    assert everyone == [
        "kf-of-p1", "oa-of-p1", "contact-of-p1", "p2", "no-profile-out", "no-consent",
    ]  # fmt: skip


async def test_keyset_batches_cover_everything_exactly_once(engine: AsyncEngine) -> None:
    expected = [await add(engine, f"m{i}", tags=["even"] if i % 2 == 0 else []) for i in range(23)]
    batches = [b async for b in select_audience(engine, SegmentRule("all"), now=T0, batch_size=5)]
    assert [len(b) for b in batches] == [5, 5, 5, 5, 3]
    assert [a.member_id for b in batches for a in b] == expected
    rule = SegmentRule("even", tags_any=("even",))
    batches = [b async for b in select_audience(engine, rule, now=T0, batch_size=5)]
    assert [a.member_id for b in batches for a in b] == expected[::2]
    assert all(batches)  # a page the tag filter empties is not yielded
    exact = [b async for b in select_audience(engine, SegmentRule("all"), now=T0, batch_size=23)]
    assert [len(b) for b in exact] == [23]


def bulk_member(i: int) -> dict[str, Any]:
    """Member ``i`` of a bulk insert: idle ``i % 120`` days, every 50th opted out."""
    return {
        "channel": "kf.main", "external_id": f"bulk{i}", "display_name": "",
        "first_seen": LONG_AGO, "last_active": T0 - (i % 120) * DAY, "opted_out": i % 50 == 0,
        "handoff": False,
    }  # fmt: skip


async def test_builtin_segments_stream_many_members(engine: AsyncEngine) -> None:
    rows = [bulk_member(i) for i in range(3000)]
    async with engine.begin() as conn:
        await conn.execute(MEMBER.insert(), rows)
    counts = {
        name: sum(1 for _ in await audience(engine, rule, batch_size=400))
        for name, rule in BUILTIN.items()
    }
    expected = {stage: 0 for stage in LIFECYCLE}
    for i in range(3000):
        if i % 50:
            expected[lifecycle(LONG_AGO, T0 - (i % 120) * DAY, T0)] += 1
    assert counts == expected
    assert sum(counts.values()) == 3000 - 60


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"first_seen_within_days": -1}, "must not be negative"),
        ({"inactive_min_days": 30, "inactive_max_days": 15}, "must be below"),
    ],
)
def test_bad_rules_are_refused(data: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        SegmentRule("x", **data)
