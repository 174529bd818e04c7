"""Retention: how long each growing table keeps its rows, and the daily job that prunes them.

The scheduler leader runs :func:`prune` once a day (``RetentionConfig.cron``, default 04:30 in
the brand's timezone, a quiet hour; :mod:`campaigns.scheduler` registers the job, so exactly one
process prunes). Each table is deleted from in batches of :data:`bot.store.PRUNE_BATCH` rows,
one short transaction each, and the counts are logged and returned.

- ``inbox_message`` (the durable inbox, :mod:`bot.inbox`: dedupe keys and answers): 7 days after
  a row last changed (``SIYU_RETENTION_SEEN_DAYS``). The platforms retry a callback within
  minutes; a week also covers a backlog replayed after an outage.
- ``message_log``: 180 days (``SIYU_RETENTION_MESSAGE_LOG_DAYS``), the planner's interest
  lookback (:data:`campaigns.planner.INTEREST_LOOKBACK`); a shorter retention shortens that
  lookback to what is kept. Reports and the reactivation figures read the log too.
- ``outbox`` rows ``sent`` / ``skipped`` / ``failed``: 90 days after planning
  (``SIYU_RETENTION_OUTBOX_DAYS``). Caps count sent rows over a week and a calendar month, the
  win-back cooldown over its days: the settings refuse fewer than 32 days or fewer than the
  cooldown. ``pending`` rows are work still to do and are never pruned.
- ``campaign_run``: 90 days after planning (``SIYU_RETENTION_RUNS_DAYS``) and only once none of
  its outbox rows is left (a run is its report's header; it goes with its last row).
- ``scheduler_fire``: as ``campaign_run`` (the record of what the leader fired).
- ``send_lock``: leases that ran out a day ago (a worker that died leaves its lease behind; a
  live lease is never touched).
- ``contact_window``: windows that closed (48 h after the member's last message) before the
  prune runs. A window row only ever allows sends while open; without one, nothing is allowed,
  so pruning a closed one changes nothing. ``member_address`` keeps one row per member (the
  address they last wrote from) and does not grow past the members.

Members, member profiles and campaigns are the brand's records, not logs: they are not pruned.
``rate_slot`` holds one row per route or robot and does not grow.
"""

from __future__ import annotations

import logging
import time
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.contact import ContactLedger
from bot.inbox import prune_inbox
from bot.models import require_aware
from bot.store import Store, delete_in_batches
from campaigns.config import RetentionConfig
from campaigns.models import CampaignRun, OutboxRow, SchedulerFire, SendLock

log = logging.getLogger(__name__)

FINISHED = ("sent", "skipped", "failed")
STALE_LOCK_SECONDS = 86_400.0
OUTBOX: sa.Table = OutboxRow.__table__  # type: ignore[attr-defined]
RUNS: sa.Table = CampaignRun.__table__  # type: ignore[attr-defined]
FIRES: sa.Table = SchedulerFire.__table__  # type: ignore[attr-defined]
LOCKS: sa.Table = SendLock.__table__  # type: ignore[attr-defined]


async def prune(
    engine: AsyncEngine, config: RetentionConfig, *, now: datetime, wall: float | None = None
) -> dict[str, int]:
    """Delete what is older than ``config`` keeps at ``now``; rows deleted per table.
    ``wall`` is the Unix time lock leases are compared with (default: now)."""
    require_aware(now)
    store = Store(engine)
    runs_before = now - timedelta(days=config.runs_days)
    no_rows_left = ~sa.exists().where(OUTBOX.c.run_id == RUNS.c.id)
    lock_horizon = (time.time() if wall is None else wall) - STALE_LOCK_SECONDS
    counts = {
        "inbox_message": await prune_inbox(engine, now - timedelta(days=config.seen_messages_days)),
        "message_log": await store.prune_log(now - timedelta(days=config.message_log_days)),
        "outbox": await delete_in_batches(
            engine,
            OUTBOX,
            sa.and_(
                OUTBOX.c.state.in_(FINISHED),
                OUTBOX.c.created_at < now - timedelta(days=config.outbox_days),
            ),
        ),
        "campaign_run": await delete_in_batches(
            engine, RUNS, sa.and_(RUNS.c.planned_at < runs_before, no_rows_left)
        ),
        "scheduler_fire": await delete_in_batches(engine, FIRES, FIRES.c.fired_at < runs_before),
        "send_lock": await delete_in_batches(engine, LOCKS, LOCKS.c.until < lock_horizon),
        "contact_window": await ContactLedger(engine).prune(now),
    }
    log.info("pruned old rows: %s", ", ".join(f"{t} {n}" for t, n in counts.items()))
    return counts


def summary(counts: dict[str, int]) -> str:
    """One line for the scheduler's record of the run."""
    return "pruned " + ", ".join(f"{table} {n}" for table, n in counts.items())
