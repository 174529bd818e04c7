"""The campaign scheduler: cron parsing, jobs that follow the ``campaign`` table, what a firing
records, a missed daily job firing once after downtime, and two scheduler processes on one
PostgreSQL database firing a daily job once, then failing over when the leader is killed."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa
from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlmodel import col

from bot.db import create_engine
from bot.schema import upgrade
from campaigns.leader import sync_url
from campaigns.models import JOBS_TABLE, Campaign, SchedulerFire
from campaigns.scheduler import CampaignScheduler, fire_job, parse_cron
from tests.campaigns.conftest import T0
from tests.campaigns.scheduler_proc import Runner, first_to_say

TZ = ZoneInfo("Asia/Shanghai")


# --- helpers -----------------------------------------------------------------------------------


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, data_dir: Path) -> str:
    """A database URL the scheduler's job store can share: a SQLite file, or a whole new
    PostgreSQL database (the job store has no per-test schema)."""
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{data_dir / 'siyu.db'}"
    return str(request.getfixturevalue("fresh_database"))


@pytest.fixture
async def engine(db_url: str) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(db_url)
    await upgrade(engine)
    yield engine
    await engine.dispose()


class Calls:
    """A ``fire`` callback that remembers its calls; fails for the campaign ids in ``failing``."""

    def __init__(self, *failing: int) -> None:
        self.calls: list[tuple[int, str]] = []
        self.failing = set(failing)

    async def __call__(self, campaign_id: int, run_key: str) -> str:
        self.calls.append((campaign_id, run_key))
        if campaign_id in self.failing:
            raise RuntimeError("platform down")
        return f"planned {campaign_id}"


def make_scheduler(
    engine: AsyncEngine, url: str, fire: Callable[[int, str], Awaitable[str]], **options: Any
) -> CampaignScheduler:
    options.setdefault("sync_seconds", 3600.0)  # the tests call sync_jobs() themselves
    return CampaignScheduler(
        engine, url, fire, tz=TZ, owner="test", leader_poll_seconds=0.1, **options
    )


@asynccontextmanager
async def leading(scheduler: CampaignScheduler) -> AsyncIterator[None]:
    """Run ``scheduler`` in a task until it leads; cancel it on the way out."""
    task = asyncio.create_task(scheduler.run())
    try:
        async with asyncio.timeout(15):
            while not scheduler.leading:
                if task.done():
                    task.result()
                await asyncio.sleep(0.05)
        yield
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def add_campaign(
    engine: AsyncEngine, name: str, cron: str | None, *, enabled: bool = True
) -> int:
    insert = (
        sa.insert(Campaign)
        .values(name=name, kind="daily_deals", cron=cron, enabled=enabled, created_at=T0)
        .returning(col(Campaign.id))
    )
    async with engine.begin() as conn:
        return cast(int, (await conn.execute(insert)).scalar_one())


async def update_campaign(engine: AsyncEngine, campaign_id: int, **values: Any) -> None:
    async with engine.begin() as conn:
        await conn.execute(
            sa.update(Campaign).where(col(Campaign.id) == campaign_id).values(**values)
        )


async def stored_jobs(engine: AsyncEngine) -> dict[str, datetime]:
    """The job store's rows: job id → next run time."""
    async with engine.connect() as conn:
        rows = await conn.execute(sa.text(f"SELECT id, next_run_time FROM {JOBS_TABLE}"))
        return {job_id: datetime.fromtimestamp(ts, UTC) for job_id, ts in rows}


async def fires(engine: AsyncEngine) -> list[tuple[str, str, str]]:
    """``scheduler_fire`` rows in order: (job id, owner, outcome)."""
    query = sa.select(
        col(SchedulerFire.job_id), col(SchedulerFire.owner), col(SchedulerFire.outcome)
    ).order_by(col(SchedulerFire.id))
    async with engine.connect() as conn:
        return [(j, o, out) for j, o, out in (await conn.execute(query)).all()]


async def wait_for_fires(engine: AsyncEngine, count: int, within: float) -> None:
    """Wait until ``count`` firings have finished (their outcome is in)."""
    async with asyncio.timeout(within):
        while True:
            finished = [out for _, _, out in await fires(engine) if out != "running"]
            if len(finished) >= count:
                return
            await asyncio.sleep(0.1)


def daily_at(moment: datetime) -> str:
    """A 6-field cron firing every day at ``moment``'s local time of day (to the second)."""
    local = moment.astimezone(TZ)
    return f"{local.second} {local.minute} {local.hour} * * *"


def today() -> str:
    return datetime.now(TZ).date().isoformat()


# --- parse_cron --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("expr", "expected"),
    [
        ("30 9 * * 1-5", datetime(2026, 6, 11, 9, 30, tzinfo=TZ)),  # T0 is Wednesday 10:00
        ("0 9 * * 0", datetime(2026, 6, 14, 9, 0, tzinfo=TZ)),  # crontab's 0 is Sunday
        ("0 9 * * 7", datetime(2026, 6, 14, 9, 0, tzinfo=TZ)),  # and so is 7
        ("0 9 * * sat", datetime(2026, 6, 13, 9, 0, tzinfo=TZ)),
        ("0 9 * * */3", datetime(2026, 6, 13, 9, 0, tzinfo=TZ)),  # Sun, Wed, Sat
        ("15 30 9 * * *", datetime(2026, 6, 11, 9, 30, 15, tzinfo=TZ)),  # seconds first
        ("0 10 15 * *", datetime(2026, 6, 15, 10, 0, tzinfo=TZ)),
    ],
)
def test_parse_cron_reads_crontab_in_the_brand_timezone(expr: str, expected: datetime) -> None:
    trigger = parse_cron(expr, TZ)
    assert trigger.get_next_fire_time(None, T0) == expected


@pytest.mark.parametrize(
    ("expr", "reason"),
    [
        ("0 9 * *", "expected 5 fields"),
        ("0 0 9 * * * 2026", "got 7"),
        ("0 9 1 * 1", "not both"),
        ("0 9 * * 8", "not a crontab weekday"),
        ("61 9 * * *", "61"),
        ("0 9 * * funday", "funday"),
    ],
)
def test_parse_cron_says_what_is_wrong(expr: str, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        parse_cron(expr, TZ)


# --- syncing and firing (in process) -----------------------------------------------------------


async def test_jobs_follow_the_campaign_table(
    engine: AsyncEngine, db_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    deals = await add_campaign(engine, "deals", "0 9 * * *")
    winback = await add_campaign(engine, "winback", "0 20 * * *", enabled=False)
    await add_campaign(engine, "by hand", None)
    await add_campaign(engine, "typo", "0 25 * * *")
    scheduler = make_scheduler(engine, db_url, Calls())
    async with leading(scheduler):
        jobs = await stored_jobs(engine)
        assert jobs == {f"campaign:{deals}": next_fire("0 9 * * *")}

        await update_campaign(engine, winback, enabled=True)
        await update_campaign(engine, deals, cron="30 8 * * *")
        await scheduler.sync_jobs()
        assert await stored_jobs(engine) == {
            f"campaign:{deals}": next_fire("30 8 * * *"),
            f"campaign:{winback}": next_fire("0 20 * * *"),
        }

        await update_campaign(engine, deals, enabled=False)
        await scheduler.sync_jobs()
        assert set(await stored_jobs(engine)) == {f"campaign:{winback}"}
    not_scheduled = [r for r in caplog.records if "is not scheduled" in r.getMessage()]
    assert len(not_scheduled) == 1  # a bad cron is reported once, not at every sync
    assert "typo" in not_scheduled[0].getMessage()


def next_fire(cron: str) -> datetime:
    fire_time: datetime | None = parse_cron(cron, TZ).get_next_fire_time(None, datetime.now(TZ))
    assert fire_time is not None
    return fire_time.astimezone(UTC)


async def test_sync_jobs_needs_leadership(engine: AsyncEngine, db_url: str) -> None:
    with pytest.raises(RuntimeError, match="leader"):
        await make_scheduler(engine, db_url, Calls()).sync_jobs()


async def test_a_firing_is_recorded_with_its_outcome_or_error(
    data_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    url = f"sqlite+aiosqlite:///{data_dir / 'siyu.db'}"
    engine = create_engine(url)
    await upgrade(engine)
    ok = await add_campaign(engine, "ok", "0 9 * * *")
    failing = await add_campaign(engine, "failing", "0 9 * * *")
    fire = Calls(failing)
    async with leading(make_scheduler(engine, url, fire)):
        await fire_job("test", ok)
        await fire_job("test", failing)  # must not raise: the scheduler carries on
        await fire_job("somebody-else", ok)  # not leading here: nothing runs
    assert fire.calls == [(ok, today()), (failing, today())]
    assert await fires(engine) == [
        (f"campaign:{ok}", "test", f"planned {ok}"),
        (f"campaign:{failing}", "test", "error: RuntimeError: platform down"),
    ]
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert [r.exc_info is not None for r in errors] == [True, False]  # failure, unknown owner
    await engine.dispose()


async def test_missed_days_fire_once_after_downtime(engine: AsyncEngine, db_url: str) -> None:
    # A daily job whose time today has just passed, and whose stored next run is 3 days ago:
    # the scheduler was down for 3 days. Grace covers all 4 missed firings, so only
    # coalescing keeps it to one.
    deals = await add_campaign(engine, "deals", daily_at(datetime.now(UTC) - timedelta(minutes=1)))
    async with leading(make_scheduler(engine, db_url, Calls())):
        pass
    await set_next_run_time(db_url, f"campaign:{deals}", datetime.now(UTC) - timedelta(days=3))

    fire = Calls()
    scheduler = make_scheduler(engine, db_url, fire, misfire_grace_seconds=4 * 86400)
    async with leading(scheduler):
        await wait_for_fires(engine, 1, within=10)
        await asyncio.sleep(1.0)  # room for any further (wrong) firing
    assert fire.calls == [(deals, today())]
    assert len(await fires(engine)) == 1
    next_run = (await stored_jobs(engine))[f"campaign:{deals}"]
    assert next_run > datetime.now(UTC) + timedelta(hours=23)  # tomorrow, not another missed day


async def set_next_run_time(url: str, job_id: str, when: datetime) -> None:
    """Rewrite one stored job's next run time through APScheduler (the job is pickled)."""
    store = SQLAlchemyJobStore(url=sync_url(url), tablename=JOBS_TABLE)
    scheduler = AsyncIOScheduler(jobstores={"default": store}, timezone=TZ)
    scheduler.start(paused=True)
    scheduler.modify_job(job_id, next_run_time=when)
    scheduler.shutdown(wait=False)
    await asyncio.sleep(0)


# --- two processes on PostgreSQL ---------------------------------------------------------------


@pytest.mark.postgres
async def test_two_processes_fire_a_daily_job_once_and_fail_over(
    fresh_database: str, tmp_path: Path
) -> None:
    engine = create_engine(fresh_database)
    await upgrade(engine)
    runners = [await Runner.start(fresh_database, owner, tmp_path) for owner in ("alpha", "beta")]
    try:
        leader = await first_to_say(runners, "leader", 30)
        follower = runners[1] if leader is runners[0] else runners[0]
        soon = datetime.now(UTC) + timedelta(seconds=4)
        deals = await add_campaign(engine, "deals", daily_at(soon))
        await wait_for_fires(engine, 1, within=15)
        await asyncio.sleep(1.0)  # room for a second (wrong) firing by either process
        job = f"campaign:{deals}"
        assert await fires(engine) == [(job, leader.owner, f"fired {deals} for {today()}")]

        await leader.kill()
        assert await follower.says("leader", 10)
        soon = datetime.now(UTC) + timedelta(seconds=3)
        await update_campaign(engine, deals, cron=daily_at(soon))
        await wait_for_fires(engine, 2, within=15)
        await asyncio.sleep(1.0)
        assert [owner for _, owner, _ in await fires(engine)] == [leader.owner, follower.owner]
    finally:
        for runner in runners:
            await runner.kill()
        await engine.dispose()
