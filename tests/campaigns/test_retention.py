"""Retention: the prune job deletes what is older than each table keeps (in batches) and keeps
the rest; the scheduler registers it as a daily job that only the leader runs."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.contact import ContactLedger
from bot.db import create_engine
from bot.models import InboxMessage, MessageLog
from bot.schema import upgrade
from bot.store import delete_in_batches
from bot.types import Address
from campaigns.config import RetentionConfig
from campaigns.models import CampaignRun, OutboxRow, SchedulerFire, SendLock
from campaigns.outbox import Outbox, Planned
from campaigns.retention import prune, summary
from campaigns.scheduler import (
    JOBS_TABLE,
    MAINTENANCE_JOB,
    CampaignScheduler,
    maintenance_job,
)
from tests.campaigns.conftest import T0, add_member
from tests.campaigns.test_outbox import new_run
from tests.campaigns.test_scheduler import leading

NOW = T0 + timedelta(days=365)
WALL = NOW.timestamp()
SEEN: sa.Table = InboxMessage.__table__  # type: ignore[attr-defined]
LOG: sa.Table = MessageLog.__table__  # type: ignore[attr-defined]
OUTBOX: sa.Table = OutboxRow.__table__  # type: ignore[attr-defined]
RUNS: sa.Table = CampaignRun.__table__  # type: ignore[attr-defined]
FIRES: sa.Table = SchedulerFire.__table__  # type: ignore[attr-defined]
LOCKS: sa.Table = SendLock.__table__  # type: ignore[attr-defined]


def seen(message_id: str, at: datetime) -> dict[str, Any]:
    """An inbox row of a message delivered at ``at``."""
    return {
        "channel": "kf", "message_id": message_id, "session_key": "s", "message": {},
        "state": "delivered", "attempts": 1, "received_at": at, "updated_at": at,
    }  # fmt: skip


def ago(days: float) -> datetime:
    return NOW - timedelta(days=days)


async def insert(engine: AsyncEngine, table: sa.Table, rows: list[dict[str, Any]]) -> None:
    async with engine.begin() as conn:
        await conn.execute(table.insert(), rows)


async def column(engine: AsyncEngine, col: sa.Column[Any]) -> list[Any]:
    async with engine.connect() as conn:
        return sorted((await conn.execute(sa.select(col))).scalars(), key=repr)


async def outbox_rows(engine: AsyncEngine, run: int, rows: dict[str, tuple[str, float]]) -> None:
    """Rows ``target`` → (state, planned how many days ago)."""
    await Outbox(engine).add(
        run,
        [Planned(target=t, channel="group", text="x", address={}, not_before=NOW) for t in rows],
        NOW,
    )
    async with engine.begin() as conn:
        for target, (state, days) in rows.items():
            await conn.execute(
                OUTBOX.update()
                .where(OUTBOX.c.target == target)
                .values(state=state, created_at=ago(days))
            )


async def test_old_rows_are_pruned_and_recent_ones_kept(engine: AsyncEngine) -> None:
    member = await add_member(engine, "u1")
    await insert(engine, SEEN, [
        seen("old", ago(8)),
        seen("new", ago(6)),
    ])  # fmt: skip
    await insert(engine, LOG, [
        {"session_key": "s", "member_id": member, "role": "user", "text": t, "citations": [],
         "created_at": ago(days)}
        for t, days in (("old", 181), ("new", 179))
    ])  # fmt: skip
    kept_run, gone_run = await new_run(engine, "a"), await new_run(engine, "b")
    await outbox_rows(engine, kept_run, {
        "sent-old": ("sent", 91), "failed-old": ("failed", 120), "sent-new": ("sent", 89),
        "pending-old": ("pending", 200),
    })  # fmt: skip
    await outbox_rows(engine, gone_run, {"skipped-old": ("skipped", 100)})
    async with engine.begin() as conn:
        await conn.execute(RUNS.update().values(planned_at=ago(200)))
    await insert(engine, FIRES, [
        {"job_id": f"j{days}", "owner": "o", "fired_at": ago(days), "outcome": ""}
        for days in (91, 89)
    ])  # fmt: skip
    await insert(engine, LOCKS, [
        {"key": "dead", "owner": "w", "until": WALL - 2 * 86400},
        {"key": "live", "owner": "w", "until": WALL + 60},
    ])  # fmt: skip
    ledger = ContactLedger(engine)
    closed, still_open = Address("kf", "a", "closed", "wk"), Address("oa", "a", "open")
    await ledger.open(closed, NOW - timedelta(hours=49))
    await ledger.open(still_open, NOW - timedelta(hours=47))

    counts = await prune(engine, RetentionConfig(), now=NOW, wall=WALL)

    assert counts == {
        "inbox_message": 1, "message_log": 1, "outbox": 3, "campaign_run": 1,
        "scheduler_fire": 1, "send_lock": 1, "contact_window": 1,
    }  # fmt: skip
    assert await column(engine, SEEN.c.message_id) == ["new"]
    assert await column(engine, LOG.c.text) == ["new"]
    assert await column(engine, OUTBOX.c.target) == ["pending-old", "sent-new"]
    assert await column(engine, RUNS.c.id) == [kept_run]  # its rows are not all gone
    assert await column(engine, FIRES.c.job_id) == ["j89"]
    assert await column(engine, LOCKS.c.key) == ["live"]
    assert await ledger.remaining(still_open, NOW) == 5  # the open window is untouched
    assert summary(counts).startswith("pruned inbox_message 1, message_log 1, outbox 3")
    assert await prune(engine, RetentionConfig(), now=NOW, wall=WALL) == dict.fromkeys(counts, 0)


async def test_deletes_go_in_batches(engine: AsyncEngine) -> None:
    await insert(engine, SEEN, [
        seen(str(i), ago(30)) for i in range(7)
    ])  # fmt: skip
    assert await delete_in_batches(engine, SEEN, SEEN.c.updated_at < NOW, batch=3) == 7
    assert await column(engine, SEEN.c.id) == []


# --- only the leader prunes -------------------------------------------------------------------


@pytest.fixture
async def file_engine(data_dir: Path) -> AsyncIterator[tuple[AsyncEngine, str]]:
    url = f"sqlite+aiosqlite:///{data_dir / 'siyu.db'}"
    engine = create_engine(url)
    await upgrade(engine)
    yield engine, url
    await engine.dispose()


async def test_only_the_leader_runs_the_daily_prune(
    file_engine: tuple[AsyncEngine, str],
) -> None:
    engine, url = file_engine
    runs: list[str] = []

    def scheduler(owner: str) -> CampaignScheduler:
        async def maintain() -> str:
            runs.append(owner)
            return summary(await prune(engine, RetentionConfig(), now=datetime.now(UTC)))

        async def fire(campaign_id: int, run_key: str) -> str:
            raise AssertionError("no campaign is scheduled here")

        return CampaignScheduler(
            engine, url, fire, tz=ZoneInfo("Asia/Shanghai"), owner=owner,
            leader_poll_seconds=0.1, sync_seconds=3600.0, maintenance=maintain,
            maintenance_cron="30 4 * * *",
        )  # fmt: skip

    month_ago = datetime.now(UTC) - timedelta(days=30)
    await insert(engine, SEEN, [seen("old", month_ago)])
    leader, standby = scheduler("a"), scheduler("b")
    async with leading(leader):
        waiting = asyncio.create_task(standby.run())
        await asyncio.sleep(0.5)  # the standby polls for leadership meanwhile
        assert not standby.leading
        await maintenance_job("b")  # fired for a process that does not lead: nothing runs
        await maintenance_job("a")
        waiting.cancel()
        await asyncio.gather(waiting, return_exceptions=True)
        async with engine.connect() as conn:
            jobs = (await conn.execute(sa.text(f"SELECT id FROM {JOBS_TABLE}"))).scalars().all()
    assert jobs == [MAINTENANCE_JOB]
    assert runs == ["a"]
    assert await column(engine, SEEN.c.id) == []
    async with engine.connect() as conn:
        fired = (
            await conn.execute(sa.select(FIRES.c.job_id, FIRES.c.owner, FIRES.c.outcome))
        ).all()
    assert [(j, o) for j, o, _ in fired] == [(MAINTENANCE_JOB, "a")]
    assert fired[0][2].startswith("pruned inbox_message 1")


def test_the_outbox_must_outlive_the_cooldown_and_a_month(monkeypatch: pytest.MonkeyPatch) -> None:
    from pydantic import ValidationError

    from bot.app import campaigns_config
    from bot.settings import Settings
    from campaigns.config import CampaignSettings

    for key in ("SIYU_RETENTION_OUTBOX_DAYS", "SIYU_CAMPAIGN_REENGAGE_COOLDOWN_DAYS"):
        monkeypatch.delenv(key, raising=False)
    with pytest.raises(
        ValidationError, match=r"OUTBOX_DAYS \(40\) must exceed .*COOLDOWN_DAYS \(60\)"
    ):
        CampaignSettings(_env_file=None, retention_outbox_days=40, reengage_cooldown_days=60)
    with pytest.raises(ValidationError, match="greater than or equal to 32"):
        CampaignSettings(_env_file=None, retention_outbox_days=20, reengage_cooldown_days=7)
    # The section reads the variables the README names.
    monkeypatch.setenv("SIYU_RETENTION_MESSAGE_LOG_DAYS", "365")
    monkeypatch.setenv("SIYU_RETENTION_CRON", "0 3 * * *")
    retention = campaigns_config(Settings(_env_file=None)).retention
    assert (retention.message_log_days, retention.outbox_days, retention.cron) == (
        365, 90, "0 3 * * *",
    )  # fmt: skip
