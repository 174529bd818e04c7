"""The delivery policy, rule by rule, on real SQLite and PostgreSQL rows (members, profiles, sent
outbox rows inserted directly); the contact window is the worker's and the ledger's
(tests/campaigns/test_worker.py, tests/bot/test_contact.py). ``quiet_until`` is pure and tested
on its own.

Times are written in the brand's local time (:func:`sh`, Asia/Shanghai) because the rules are: a
local calendar day for the daily cap, a local month for the staff-task quota, local quiet hours.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.models import Member
from campaigns.config import CampaignsConfig
from campaigns.models import Campaign, CampaignRun, MemberProfile, OutboxRow
from campaigns.policy import SKIP_REASONS, Decision, DeliveryPolicy, quiet_until
from tests.campaigns.conftest import add_member

SHANGHAI = ZoneInfo("Asia/Shanghai")
NEW_YORK = ZoneInfo("America/New_York")
BERLIN = ZoneInfo("Europe/Berlin")
SEND = Decision("send")
# Generous limits, so a test of one rule is not stopped by another.
LOOSE = CampaignsConfig(cap_per_day=100, cap_per_week=100, staff_task_per_month=100)


def sh(month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0) -> datetime:
    """A 2026 wall-clock time in Shanghai, as aware UTC."""
    return datetime(2026, month, day, hour, minute, second, tzinfo=SHANGHAI).astimezone(UTC)


def skip(reason: str) -> Decision:
    assert reason in SKIP_REASONS
    return Decision("skip", reason)


def defer(until: datetime) -> Decision:
    return Decision("defer", "quiet_hours", until)


def table(model: Any) -> sa.Table:
    return model.__table__  # type: ignore[no-any-return]


async def insert(engine: AsyncEngine, model: Any, **values: Any) -> int:
    async with engine.begin() as conn:
        result = await conn.execute(table(model).insert().values(**values))
        key = result.inserted_primary_key
        assert key is not None
        return int(key[0])


async def profile(engine: AsyncEngine, member_id: int, person: str, consent: bool = True) -> None:
    await insert(
        engine, MemberProfile, member_id=member_id, person=person, consent=consent,
        tags=[], interests=[], groups=[], updated_at=sh(1, 1),
    )  # fmt: skip


async def new_run(engine: AsyncEngine) -> int:
    """A run of its own campaign: caps count sends of every run."""
    name = uuid.uuid4().hex
    campaign = await insert(engine, Campaign, name=name, kind="daily_deals", created_at=sh(1, 1))
    return await insert(
        engine, CampaignRun, campaign_id=campaign, run_key=name, planned_at=sh(1, 1)
    )


async def sent(
    engine: AsyncEngine,
    at: datetime,
    *,
    member_id: int | None,
    person: str | None,
    channel: str = "kf",
    state: str = "sent",
) -> None:
    """An outbox row of a new run, in ``state`` (``sent_at`` set only when sent)."""
    target = f"person:{person}" if member_id is not None else "group:store-1"
    await insert(
        engine, OutboxRow, run_id=await new_run(engine), target=target,
        member_id=member_id, person=person, channel=channel, address={}, text="deal",
        state=state, attempts=1, not_before=at, created_at=at,
        sent_at=at if state == "sent" else None,
    )  # fmt: skip


def row(
    member_id: int | None,
    person: str | None,
    channel: str = "kf",
    expires_at: datetime | None = None,
) -> OutboxRow:
    """The pending row the worker asks about (the policy only reads its fields)."""
    target = f"person:{person}" if member_id is not None else "group:store-1"
    return OutboxRow(
        run_id=1, target=target, member_id=member_id, person=person, channel=channel,
        text="deal", not_before=sh(1, 1), created_at=sh(1, 1), expires_at=expires_at,
    )  # fmt: skip


async def set_opted_out(engine: AsyncEngine, member_id: int, at: datetime) -> None:
    members = table(Member)
    async with engine.begin() as conn:
        await conn.execute(
            members.update()
            .where(members.c.id == member_id)
            .values(opted_out=True, opted_out_at=at)
        )


# --- quiet_until (pure) -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("now", "until"),
    [
        (sh(6, 10, 21, 29, 59), None),
        (sh(6, 10, 21, 30), sh(6, 11, 8, 30)),
        (sh(6, 10, 23, 59, 59), sh(6, 11, 8, 30)),
        (sh(6, 11, 0, 0), sh(6, 11, 8, 30)),
        (sh(6, 11, 8, 29, 59), sh(6, 11, 8, 30)),
        (sh(6, 11, 8, 30), None),
        (sh(6, 11, 12, 0), None),
    ],
)
def test_quiet_hours_cross_midnight(now: datetime, until: datetime | None) -> None:
    assert quiet_until(now, CampaignsConfig()) == until


@pytest.mark.parametrize(
    ("now", "until"),
    [
        (sh(6, 10, 11, 59, 59), None),
        (sh(6, 10, 12, 0), sh(6, 10, 14, 0)),
        (sh(6, 10, 13, 59, 59), sh(6, 10, 14, 0)),
        (sh(6, 10, 14, 0), None),
        (sh(6, 10, 23, 0), None),
    ],
)
def test_quiet_hours_within_one_day(now: datetime, until: datetime | None) -> None:
    config = CampaignsConfig(quiet_start=time(12, 0), quiet_end=time(14, 0))
    assert quiet_until(now, config) == until


def test_equal_start_and_end_mean_no_quiet_hours() -> None:
    config = CampaignsConfig(quiet_start=time(22, 0), quiet_end=time(22, 0))
    for hour in range(24):
        assert quiet_until(sh(6, 10, hour), config) is None


def test_quiet_hours_in_another_timezone() -> None:
    config = CampaignsConfig(timezone=NEW_YORK)
    nine_thirty_pm = datetime(2026, 6, 10, 21, 30, tzinfo=NEW_YORK)
    assert quiet_until(nine_thirty_pm - timedelta(seconds=1), config) is None
    assert quiet_until(nine_thirty_pm, config) == datetime(2026, 6, 11, 12, 30, tzinfo=UTC)
    # 21:30 in Shanghai is 09:30 in New York: not quiet there.
    assert quiet_until(sh(6, 10, 21, 30), config) is None


def test_quiet_hours_over_a_daylight_saving_change() -> None:
    """Berlin springs forward on 2026-03-29: the night is an hour shorter, 08:30 is still 08:30."""
    config = CampaignsConfig(timezone=BERLIN)
    evening = datetime(2026, 3, 28, 22, 0, tzinfo=BERLIN)
    until = quiet_until(evening, config)
    assert until == datetime(2026, 3, 29, 6, 30, tzinfo=UTC)  # 08:30 CEST
    assert until is not None
    assert until - evening == timedelta(hours=9, minutes=30)


def test_quiet_until_refuses_a_naive_datetime() -> None:
    with pytest.raises(ValueError, match="naive"):
        quiet_until(datetime(2026, 6, 10, 22, 0), CampaignsConfig())


# --- rules 1 and 3: expiry and quiet hours ------------------------------------------------------


async def test_quiet_hours_boundaries_for_groups_and_people(engine: AsyncEngine) -> None:
    policy = DeliveryPolicy(engine, CampaignsConfig())
    group = row(None, None, channel="group")
    assert await policy.decide(group, sh(6, 10, 21, 29, 59)) == SEND
    assert await policy.decide(group, sh(6, 10, 21, 30)) == defer(sh(6, 11, 8, 30))
    assert await policy.decide(group, sh(6, 11, 8, 29, 59)) == defer(sh(6, 11, 8, 30))
    assert await policy.decide(group, sh(6, 11, 8, 30)) == SEND
    member = await add_member(engine, "u1", last_active=sh(6, 10, 20, 0))
    person_row = row(member, f"m{member}")
    assert await policy.decide(person_row, sh(6, 10, 21, 29, 59)) == SEND
    assert await policy.decide(person_row, sh(6, 10, 21, 30)) == defer(sh(6, 11, 8, 30))


async def test_quiet_hours_in_the_brands_timezone(engine: AsyncEngine) -> None:
    policy = DeliveryPolicy(engine, CampaignsConfig(timezone=NEW_YORK))
    group = row(None, None, channel="group")
    late = datetime(2026, 6, 10, 23, 0, tzinfo=NEW_YORK)
    assert await policy.decide(group, late) == defer(datetime(2026, 6, 11, 12, 30, tzinfo=UTC))
    assert await policy.decide(group, sh(6, 10, 23, 0)) == SEND  # 11:00 in New York


async def test_expired_rows_are_never_sent(engine: AsyncEngine) -> None:
    policy = DeliveryPolicy(engine, CampaignsConfig())
    now = sh(6, 10, 10, 0)
    member = await add_member(engine, "u1", last_active=now - timedelta(hours=1), opted_out=True)
    assert await policy.decide(row(None, None, "group", expires_at=now), now) == skip("expired")
    # Rule 1 comes first: an expired row to an opted-out member is "expired".
    assert await policy.decide(row(member, "p1", expires_at=now), now) == skip("expired")
    alive = row(None, None, "group", expires_at=now + timedelta(seconds=1))
    assert await policy.decide(alive, now) == SEND


async def test_deferral_past_expiry_is_skipped(engine: AsyncEngine) -> None:
    policy = DeliveryPolicy(engine, CampaignsConfig())
    night = sh(6, 10, 22, 0)
    ends_tonight = row(None, None, "group", expires_at=sh(6, 10, 23, 59))
    assert await policy.decide(ends_tonight, night) == skip("quiet_hours")
    ends_at_dawn = row(None, None, "group", expires_at=sh(6, 11, 8, 30))
    assert await policy.decide(ends_at_dawn, night) == skip("quiet_hours")  # expired by then
    ends_tomorrow = row(None, None, "group", expires_at=sh(6, 11, 23, 59))
    assert await policy.decide(ends_tomorrow, night) == defer(sh(6, 11, 8, 30))


# --- rule 2: opt-out and consent ----------------------------------------------------------------


async def test_opt_out_of_another_identity_of_the_person(engine: AsyncEngine) -> None:
    now = sh(6, 10, 10, 0)
    kf = await add_member(engine, "kf-1", channel="kf.main", last_active=now - timedelta(hours=1))
    oa = await add_member(engine, "oa-1", channel="oa.main", opted_out=True)
    other = await add_member(engine, "kf-2", channel="kf.main", last_active=now)
    await profile(engine, kf, "cust-42")
    await profile(engine, oa, "cust-42")
    await profile(engine, other, "cust-43")
    policy = DeliveryPolicy(engine, CampaignsConfig())
    assert await policy.decide(row(kf, "cust-42"), now) == skip("opted_out")
    assert await policy.decide(row(other, "cust-43"), now) == SEND


async def test_opt_out_between_two_decisions_stops_the_next_send(engine: AsyncEngine) -> None:
    now = sh(6, 10, 10, 0)
    a = await add_member(engine, "kf-1", last_active=now - timedelta(hours=1))
    b = await add_member(engine, "kf-2", last_active=now - timedelta(hours=1))
    await profile(engine, a, "cust-1")
    await profile(engine, b, "cust-2")
    policy = DeliveryPolicy(engine, CampaignsConfig())
    assert await policy.decide(row(a, "cust-1"), now) == SEND
    await set_opted_out(engine, b, now + timedelta(seconds=1))  # 退订 arrives mid-run
    later = now + timedelta(seconds=2)
    assert await policy.decide(row(b, "cust-2"), later) == skip("opted_out")
    assert await policy.decide(row(a, "cust-1"), later) == SEND


async def test_consent_withdrawn_on_the_profile(engine: AsyncEngine) -> None:
    now = sh(6, 10, 10, 0)
    member = await add_member(engine, "kf-1", last_active=now - timedelta(hours=1))
    await profile(engine, member, "cust-1", consent=False)
    policy = DeliveryPolicy(engine, CampaignsConfig())
    assert await policy.decide(row(member, "cust-1", "staff_task"), now) == skip("opted_out")


async def test_no_push_while_a_human_serves_the_person(engine: AsyncEngine) -> None:
    now = sh(6, 10, 10, 0)
    kf = await add_member(engine, "kf-1", last_active=now - timedelta(hours=1))
    contact = await add_member(engine, "c-1", channel="contact")
    await profile(engine, kf, "cust-1")
    await profile(engine, contact, "cust-1")
    policy = DeliveryPolicy(engine, CampaignsConfig())
    assert await policy.decide(row(contact, "cust-1", "staff_task"), now) == SEND
    async with engine.begin() as conn:  # the member asked for 人工 on kf
        await conn.execute(
            sa.update(Member).where(Member.id == kf).values(handoff=True)  # type: ignore[arg-type]
        )
    assert await policy.decide(row(contact, "cust-1", "staff_task"), now) == skip("human_serving")


async def test_member_without_a_profile(engine: AsyncEngine) -> None:
    now = sh(6, 10, 10, 0)
    active = await add_member(engine, "kf-1", last_active=now - timedelta(hours=1))
    gone = await add_member(engine, "kf-2", last_active=now - timedelta(hours=1), opted_out=True)
    policy = DeliveryPolicy(engine, CampaignsConfig())
    assert await policy.decide(row(active, f"m{active}"), now) == SEND
    assert await policy.decide(row(gone, f"m{gone}"), now) == skip("opted_out")


# --- rule 4: caps -------------------------------------------------------------------------------


async def test_daily_cap_is_the_local_calendar_day(engine: AsyncEngine) -> None:
    config = CampaignsConfig(cap_per_day=1, cap_per_week=3, staff_task_per_month=100)
    policy = DeliveryPolicy(engine, config)
    member = await add_member(engine, "kf-1")
    await profile(engine, member, "p")
    await sent(engine, sh(6, 9, 23, 59), member_id=member, person="p", channel="staff_task")
    task = row(member, "p", "staff_task")
    assert await policy.decide(task, sh(6, 10, 8, 30)) == SEND  # yesterday's does not count
    # 07:00 in Shanghai is still the previous day in UTC: the local day counts it.
    await sent(engine, sh(6, 10, 7, 0), member_id=member, person="p", channel="staff_task")
    assert await policy.decide(task, sh(6, 10, 10, 0)) == skip("cap")
    assert await policy.decide(task, sh(6, 11, 8, 30)) == SEND


async def test_weekly_cap_is_the_last_seven_days(engine: AsyncEngine) -> None:
    config = CampaignsConfig(cap_per_day=1, cap_per_week=3, staff_task_per_month=100)
    policy = DeliveryPolicy(engine, config)
    member = await add_member(engine, "kf-1")
    await profile(engine, member, "p")
    for day in (1, 2, 3):
        await sent(engine, sh(6, day, 10, 0), member_id=member, person="p", channel="staff_task")
    task = row(member, "p", "staff_task")
    assert await policy.decide(task, sh(6, 4, 10, 0)) == skip("cap")
    assert await policy.decide(task, sh(6, 8, 9, 59, 59)) == skip("cap")
    assert await policy.decide(task, sh(6, 8, 10, 0)) == SEND  # day 1's send is 7×24 h old


async def test_caps_count_every_identity_channel_and_run(engine: AsyncEngine) -> None:
    now = sh(6, 10, 10, 0)
    kf = await add_member(engine, "kf-1", channel="kf.main", last_active=now - timedelta(hours=1))
    oa = await add_member(engine, "oa-1", channel="oa.main", last_active=now - timedelta(hours=1))
    await profile(engine, kf, "cust-42")
    await profile(engine, oa, "cust-42")
    policy = DeliveryPolicy(engine, CampaignsConfig())
    for state in ("pending", "skipped", "failed"):  # only "sent" is a message received
        await sent(engine, now - timedelta(hours=1), member_id=oa, person="cust-42", state=state)
    assert await policy.decide(row(kf, "cust-42"), now) == SEND
    await sent(engine, now - timedelta(hours=1), member_id=oa, person="cust-42", channel="oa")
    assert await policy.decide(row(kf, "cust-42"), now) == skip("cap")


async def test_group_rows_ignore_person_caps(engine: AsyncEngine) -> None:
    now = sh(6, 10, 10, 0)
    policy = DeliveryPolicy(engine, CampaignsConfig(cap_per_day=1, cap_per_week=1))
    for minutes in (10, 20, 30):
        await sent(engine, now - timedelta(minutes=minutes), member_id=None, person=None,
                   channel="group")  # fmt: skip
    assert await policy.decide(row(None, None, "group"), now) == SEND
    # ... and group posts do not use up a person's cap.
    member = await add_member(engine, "kf-1", last_active=now - timedelta(hours=1))
    assert await policy.decide(row(member, f"m{member}"), now) == SEND


# --- rule 6: add_msg_template quota -------------------------------------------------------------


async def test_staff_task_quota_is_per_local_calendar_month(engine: AsyncEngine) -> None:
    config = CampaignsConfig(cap_per_day=100, cap_per_week=100, staff_task_per_month=4)
    policy = DeliveryPolicy(engine, config)
    member = await add_member(engine, "kf-1")
    await profile(engine, member, "p")
    await sent(engine, sh(5, 31, 23, 59), member_id=member, person="p", channel="staff_task")
    for day in (1, 2, 3):  # June 1 00:00 in Shanghai is still May 31 in UTC
        await sent(engine, sh(6, day, 0, 0), member_id=member, person="p", channel="staff_task")
    await sent(engine, sh(6, 4, 9, 0), member_id=member, person="p", channel="kf")
    task = row(member, "p", "staff_task")
    assert await policy.decide(task, sh(6, 10, 10, 0)) == SEND  # 3 this month
    await sent(engine, sh(6, 10, 10, 0), member_id=member, person="p", channel="staff_task")
    assert await policy.decide(task, sh(6, 10, 11, 0)) == skip("platform_quota")
    assert await policy.decide(task, sh(6, 30, 20, 0)) == skip("platform_quota")
    assert await policy.decide(task, sh(7, 1, 9, 0)) == SEND
