"""The campaigns' clock: APScheduler 3.11 jobs built from the ``campaign`` table, run by one leader.

Shape. :class:`CampaignScheduler` waits for :class:`~campaigns.leader.Leadership`, then runs an
``AsyncIOScheduler`` over a ``SQLAlchemyJobStore`` in the same database (table
``apscheduler_jobs``), and every ``sync_seconds`` makes the jobs match the enabled campaigns that
have a cron: one job ``campaign:<id>`` each. It checks it still leads every ``leader_poll_seconds``
(and so before each sync); when it does not (its lock's connection died with a database outage,
say), it shuts its scheduler down and goes back to waiting, which elects again once the database
is back. Cancel :meth:`CampaignScheduler.run` to stop it: leadership is released.

Decisions:

- **Missed runs.** ``coalesce=True`` + ``misfire_grace_time`` (default 6 h): after downtime the
  missed firings of a job collapse into one, which runs if the latest one is within the grace.
  This only works because the store keeps each job's ``next_run_time`` across restarts, so the
  sync never replaces an unchanged job (``add_job(replace_existing=True)`` would recompute it
  from "now" and silently skip the missed day). Only a changed cron reschedules.
- **The job references a function, not an object.** The job store pickles a textual reference
  (``campaigns.scheduler:fire_job``) and plain args (owner, campaign id), so the job cannot carry
  the engine or the ``fire`` callback. :func:`fire_job` finds the running scheduler in
  ``_LEADING``, the one module-level registry here, keyed by owner; it holds a scheduler only
  while that scheduler leads. A new leader first rewrites the owner in the jobs it inherited
  (the scheduler starts paused, syncs, then resumes), so no job fires for a dead owner.
- **Run key** = the local date (``tz``) of the moment the job runs; the ``campaign_run`` unique
  key (campaign, run key) makes a day's plan happen once even if a job fired twice in a
  split-brain moment (a leader that lost its lock between two syncs).
- **Cron syntax** (:func:`parse_cron`): crontab's meaning, not APScheduler 3.x's: numeric days of
  week count from Sunday = 0 (APScheduler 3.x counts from Monday = 0, see ``from_crontab``), and a
  cron restricting both day of month and day of week is refused (crontab ORs them, APScheduler
  ANDs them).
- **Maintenance.** Given a ``maintenance`` callback (the composition root passes
  :func:`campaigns.retention.prune`), the leader also keeps one job ``maintenance:prune`` on
  ``maintenance_cron`` (daily); it runs only in the leading process, like the campaigns' jobs,
  and is recorded in ``scheduler_fire`` the same way. Without a callback the job is removed.
- **Errors.** A failing ``fire`` or maintenance is logged here, once, and its error is the
  recorded outcome; it never reaches APScheduler. A failing sync is logged and retried at the
  next round.
- The job store is synchronous (psycopg 3 / sqlite3) and APScheduler calls it on the event loop;
  our sync adds one read of the job table per round plus a write per changed job.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.cron import CronTrigger
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlmodel import col

from bot.clock import Clock, utc_now
from campaigns.leader import Leadership, sync_url
from campaigns.models import JOBS_TABLE, Campaign, SchedulerFire

log = logging.getLogger(__name__)

Fire = Callable[[int, str], Awaitable[str]]
"""(campaign id, run key) → outcome text; what a scheduled campaign does when its time comes."""
Maintenance = Callable[[], Awaitable[str]]
"""→ outcome text; the leader's daily housekeeping (pruning old rows)."""

JOB_FUNC = "campaigns.scheduler:fire_job"
JOB_PREFIX = "campaign:"
MAINTENANCE_FUNC = "campaigns.scheduler:maintenance_job"
MAINTENANCE_JOB = "maintenance:prune"
_OUTCOME_MAX = 255  # scheduler_fire.outcome

_LEADING: dict[str, CampaignScheduler] = {}
"""Owner → the scheduler leading in this process (see the module docstring for why)."""

_DOW_NAMES = ("sun", "mon", "tue", "wed", "thu", "fri", "sat", "sun")
_NUMERIC_WEEKDAYS = re.compile(r"(?P<span>\*|\d+(?:-\d+)?)(?:/(?P<step>\d+))?")


def parse_cron(expr: str, tz: ZoneInfo) -> CronTrigger:
    """A trigger for ``expr`` in ``tz``: 5 fields = crontab (minute hour day month weekday),
    6 fields = seconds first. Weekday numbers are crontab's (0 or 7 = Sunday); names work too.
    Raises :class:`ValueError` with the reason when ``expr`` is not one of these."""
    fields = expr.split()
    if len(fields) == 5:
        fields = ["0", *fields]
    if len(fields) != 6:
        raise ValueError(
            f"cron {expr!r}: expected 5 fields (minute hour day month weekday) "
            f"or 6 (second first), got {len(fields)}"
        )
    second, minute, hour, day, month, weekday = fields
    if day != "*" and weekday != "*":
        raise ValueError(f"cron {expr!r}: restrict the day of month or the weekday, not both")
    try:
        return CronTrigger(
            second=second, minute=minute, hour=hour, day=day, month=month,
            day_of_week=_crontab_weekdays(weekday), timezone=tz,
        )  # fmt: skip
    except ValueError as exc:
        raise ValueError(f"cron {expr!r}: {exc}") from exc


def _crontab_weekdays(field: str) -> str:
    """Crontab weekdays (Sunday = 0 or 7) as APScheduler 3.x day names: numeric parts
    (``1-5``, ``*/2``, ``0``) become explicit names; named parts (``mon-fri``) pass through."""
    if field == "*":
        return field
    days: list[str] = []
    for part in field.split(","):
        numeric = _NUMERIC_WEEKDAYS.fullmatch(part)
        if numeric is None:
            days.append(part)  # names (or garbage, which CronTrigger reports)
            continue
        span, step = numeric["span"], int(numeric["step"] or 1)
        low, _, high = ("0-6" if span == "*" else span).partition("-")
        first, last = int(low), int(high or low)
        if step < 1 or not 0 <= first <= last <= 7:
            raise ValueError(f"weekday {part!r} is not a crontab weekday (0-7, Sunday = 0 or 7)")
        days += [_DOW_NAMES[n] for n in range(first, last + 1, step)]
    return ",".join(dict.fromkeys(days))


async def fire_job(owner: str, campaign_id: int) -> None:
    """The job callable APScheduler stores by reference: hand the firing to ``owner``."""
    scheduler = _LEADING.get(owner)
    if scheduler is None:
        log.error("job campaign:%s fired for owner %r, who does not lead here", campaign_id, owner)
        return
    await scheduler._fire_scheduled(campaign_id)


async def maintenance_job(owner: str) -> None:
    """The maintenance job's callable: run the housekeeping of ``owner``, if it leads here."""
    scheduler = _LEADING.get(owner)
    if scheduler is None:
        log.error("job %s fired for owner %r, who does not lead here", MAINTENANCE_JOB, owner)
        return
    await scheduler._run_maintenance()


@dataclass(frozen=True, slots=True)
class _Wanted:
    campaign_id: int
    name: str
    trigger: CronTrigger


class CampaignScheduler:
    """Runs the campaigns' cron jobs while this process is the scheduler leader."""

    def __init__(
        self,
        engine: AsyncEngine,
        database_url: str,
        fire: Fire,
        *,
        tz: ZoneInfo,
        owner: str,
        misfire_grace_seconds: float = 6 * 3600,
        leader_poll_seconds: float = 5.0,
        sync_seconds: float = 30.0,
        maintenance: Maintenance | None = None,
        maintenance_cron: str = "30 4 * * *",
        clock: Clock = utc_now,
    ) -> None:
        self._engine = engine
        self._clock = clock
        self._store_url = sync_url(database_url)
        self._fire = fire
        self._tz = tz
        self._owner = owner
        self._misfire_grace = misfire_grace_seconds
        self._poll = leader_poll_seconds
        self._sync_seconds = sync_seconds
        self._leadership = Leadership(engine)
        self._scheduler: AsyncIOScheduler | None = None
        self._leading = False
        self._bad_crons: dict[int, str] = {}
        self._maintenance = maintenance
        self._maintenance_trigger = parse_cron(maintenance_cron, tz)

    @property
    def leading(self) -> bool:
        """Whether this scheduler leads and has synced its jobs at least once."""
        return self._leading

    async def run(self) -> None:
        """Wait for leadership, schedule while leading, wait again when it is lost; until
        cancelled (then the scheduler is shut down and leadership released)."""
        try:
            while True:
                await self._leadership.wait(self._poll)
                try:
                    await self._lead()
                except (OSError, SQLAlchemyError):
                    log.exception(
                        "scheduler %s stopped leading after a database error", self._owner
                    )
                await self._leadership.release()
                await asyncio.sleep(self._poll)
        finally:
            await self._leadership.release()

    async def sync_jobs(self) -> None:
        """Make the job store's ``campaign:<id>`` jobs match the enabled campaigns with a cron:
        add the new, remove the gone, reschedule a changed cron, adopt jobs of a former owner."""
        scheduler = self._scheduler
        if scheduler is None:
            raise RuntimeError("sync_jobs needs a running scheduler: only the leader syncs")
        wanted = await self._wanted_jobs()
        for job in scheduler.get_jobs():
            if job.id.startswith(JOB_PREFIX):
                self._reconcile(scheduler, job, wanted.pop(job.id, None))
        for job_id, want in wanted.items():
            scheduler.add_job(
                JOB_FUNC, want.trigger, args=[self._owner, want.campaign_id], id=job_id,
                name=want.name, replace_existing=True,
            )  # fmt: skip
            log.info("scheduled %s (%s): %s", job_id, want.name, want.trigger)
        self._sync_maintenance(scheduler)

    def _sync_maintenance(self, scheduler: AsyncIOScheduler) -> None:
        job = scheduler.get_job(MAINTENANCE_JOB)
        if self._maintenance is None:
            if job is not None:
                scheduler.remove_job(MAINTENANCE_JOB)
            return
        trigger = self._maintenance_trigger
        if job is None:
            scheduler.add_job(
                MAINTENANCE_FUNC, trigger, args=[self._owner], id=MAINTENANCE_JOB,
                name="prune old rows",
            )  # fmt: skip
            log.info("scheduled %s: %s", MAINTENANCE_JOB, trigger)
            return
        if repr(job.trigger) != repr(trigger):
            scheduler.reschedule_job(MAINTENANCE_JOB, trigger=trigger)
        if tuple(job.args) != (self._owner,):
            scheduler.modify_job(MAINTENANCE_JOB, args=[self._owner])

    async def _lead(self) -> None:
        if _LEADING.setdefault(self._owner, self) is not self:
            raise RuntimeError(f"another scheduler already leads as {self._owner!r} here")
        scheduler = self._new_scheduler()
        try:
            scheduler.start(paused=True)  # adopt and fix the stored jobs before any of them runs
            self._scheduler = scheduler
            await self.sync_jobs()
            scheduler.resume()
            self._leading = True
            log.info("scheduler %s leads", self._owner)
            await self._keep_syncing()
        finally:
            self._leading = False
            self._scheduler = None
            del _LEADING[self._owner]
            if scheduler.running:
                scheduler.shutdown(wait=False)
                await asyncio.sleep(0)  # AsyncIOScheduler shuts down in a loop callback

    async def _keep_syncing(self) -> None:
        """Check the leadership every ``leader_poll_seconds`` (a lost lock connection is noticed
        that soon, not at the next sync) and sync the jobs every ``sync_seconds``."""
        check = min(self._poll, self._sync_seconds)
        rounds_per_sync = max(1, round(self._sync_seconds / check))
        rounds = 0
        while True:
            await asyncio.sleep(check)
            if not await self._leadership.still_leader():
                log.warning("scheduler %s lost leadership; stops scheduling", self._owner)
                return
            rounds += 1
            if rounds % rounds_per_sync:
                continue
            try:
                await self.sync_jobs()
            except (OSError, SQLAlchemyError):
                log.exception("job sync failed; retrying in %s s", self._sync_seconds)

    def _new_scheduler(self) -> AsyncIOScheduler:
        engine_options: dict[str, Any] = (
            {"connect_args": {"timeout": 30}}  # sqlite3 busy timeout, like bot.db's engine
            if self._store_url.startswith("sqlite")
            else {"pool_pre_ping": True}
        )
        store = SQLAlchemyJobStore(
            url=self._store_url, tablename=JOBS_TABLE, engine_options=engine_options
        )
        return AsyncIOScheduler(
            jobstores={"default": store},
            job_defaults={
                "coalesce": True,
                "max_instances": 1,
                "misfire_grace_time": self._misfire_grace,
            },
            timezone=self._tz,
        )

    async def _wanted_jobs(self) -> dict[str, _Wanted]:
        query = sa.select(col(Campaign.id), col(Campaign.name), col(Campaign.cron)).where(
            col(Campaign.enabled).is_(True), col(Campaign.cron).is_not(None)
        )
        async with self._engine.connect() as conn:
            rows = (await conn.execute(query)).all()
        wanted: dict[str, _Wanted] = {}
        for row in rows:
            campaign_id, name, cron = cast(tuple[int, str, str], tuple(row))
            try:
                trigger = parse_cron(cron, self._tz)
            except ValueError as exc:
                if self._bad_crons.get(campaign_id) != cron:  # log each bad cron once
                    log.error("campaign %s (%s) is not scheduled: %s", campaign_id, name, exc)
                self._bad_crons[campaign_id] = cron
                continue
            self._bad_crons.pop(campaign_id, None)
            wanted[f"{JOB_PREFIX}{campaign_id}"] = _Wanted(campaign_id, name, trigger)
        return wanted

    def _reconcile(self, scheduler: AsyncIOScheduler, job: Any, want: _Wanted | None) -> None:
        if want is None:
            scheduler.remove_job(job.id)
            log.info("unscheduled %s (campaign removed, disabled or without a valid cron)", job.id)
            return
        if repr(job.trigger) != repr(want.trigger):
            scheduler.reschedule_job(job.id, trigger=want.trigger)
            log.info("rescheduled %s: %s", job.id, want.trigger)
        args = (self._owner, want.campaign_id)
        if tuple(job.args) != args or job.name != want.name:
            scheduler.modify_job(job.id, args=args, name=want.name)
            log.info("%s now runs as %s (%s)", job.id, self._owner, want.name)

    async def _fire_scheduled(self, campaign_id: int) -> None:
        now = self._clock()
        run_key = now.astimezone(self._tz).date().isoformat()
        await self._recorded(
            f"{JOB_PREFIX}{campaign_id}", now, lambda: self._fire(campaign_id, run_key),
            f"campaign {campaign_id} failed for run {run_key}",
        )  # fmt: skip

    async def _run_maintenance(self) -> None:
        work = self._maintenance
        if work is None:
            log.error("%s fired but this scheduler has no maintenance", MAINTENANCE_JOB)
            return
        await self._recorded(MAINTENANCE_JOB, self._clock(), work, "maintenance failed")

    async def _recorded(
        self, job_id: str, now: datetime, work: Callable[[], Awaitable[str]], failure: str
    ) -> None:
        """Run ``work`` with a ``scheduler_fire`` row recording its outcome or its error."""
        fire_id = await self._record_fire(job_id, now)
        try:
            outcome = await work()
        except Exception as exc:
            # The one place a scheduled job's failure is logged; the scheduler carries on.
            log.exception(failure)
            outcome = f"error: {type(exc).__name__}: {exc}"
        await self._finish_fire(fire_id, outcome)

    async def _record_fire(self, job_id: str, now: datetime) -> int:
        insert = (
            sa.insert(SchedulerFire)
            .values(job_id=job_id, owner=self._owner, fired_at=now, outcome="running")
            .returning(col(SchedulerFire.id))
        )
        async with self._engine.begin() as conn:
            return cast(int, (await conn.execute(insert)).scalar_one())

    async def _finish_fire(self, fire_id: int, outcome: str) -> None:
        update = (
            sa.update(SchedulerFire)
            .where(col(SchedulerFire.id) == fire_id)
            .values(outcome=outcome[:_OUTCOME_MAX])
        )
        async with self._engine.begin() as conn:
            await conn.execute(update)
