"""The delivery worker: claims outbox rows and sends them, one policy decision per message.

Per claimed row, in order (see :mod:`campaigns.outbox` for why each step is where it is):

1. a row whose previous attempt has an unknown outcome (``attempt_at`` set: a worker died
   during the platform call) is tried again only on an idempotent route (kf, with our ``msgid``);
   on any other route it ends ``failed`` ("outcome unknown") rather than risk a double send;
2. a row that used up ``max_attempts`` ends ``failed``;
3. with the person's lease held (one worker at a time per person, so two workers cannot both
   pass a cap with two rows of one person), the delivery policy
   (:class:`campaigns.policy.DeliveryPolicy`): skip with a reason, defer (quiet hours: back to
   pending until the morning), or send;
4. a slot from the shared rate limiter (per route, and per robot for group posts);
5. the attempt is committed; a ``kf`` / ``oa`` row then consumes one send of the member's
   contact window (:mod:`bot.contact`, shared with the bot's answers and handoff notices), and a
   closed or used-up window ends it ``skipped`` (``window_closed``) instead of being retried;
   then the adapter sends (:class:`bot.types.OutboundSender`);
6. ``sent`` with the platform's id; or, on :class:`bot.errors.DeliveryError`, a retry later
   with exponential backoff (transient), ``skipped`` (the member's window closed — the ledger's
   window is closed too —, a platform quota), or ``failed`` (refused).

``staff_task`` rows of one run, staff owner and text are sent together: one ``add_msg_template``
task per owner lists all their customers (the staff member confirms it once in WeCom), however
many claims the rows arrived in. The worker that claims one of them takes the task's lease
(:class:`campaigns.locks.SendLocks`, key ``task:<run>:<owner>:<text digest>``), then
:meth:`campaigns.outbox.Outbox.claim_task` gathers every row of the task not yet attempted,
from other workers' claims too; a worker that finds the task's lease taken puts its rows back
for :data:`PERSON_BUSY_SECONDS`, and the gatherer looks that far ahead, so it collects them.
The rows' attempts are recorded in one transaction, so a crash never leads to a second task.
Known limit: a row of the task whose person is busy with another send at that moment (held by
another worker), or that becomes due later (a retry), goes out in a later task of its own.

Several workers (processes) may run against one database: claims never overlap (leases, SKIP
LOCKED on PostgreSQL) and the rate limiter's slots are shared.

Outages and stopping (:meth:`DeliveryWorker.run`):

- **A database outage does not end the worker.** A dependency failure
  (:func:`bot.errors.is_unavailable`) anywhere in a round ends that round; the worker waits with
  a capped exponential backoff (:class:`bot.outage.Outage`, logged once per outage) and claims
  again. Nothing is lost or doubled by the round it broke off: the rows it had claimed come back
  when their lease runs out; a row whose attempt was committed but whose ``sent`` was not is an
  "unknown outcome" row (step 1): retried with the same ``msgid`` on kf, ended ``failed`` on
  routes that cannot be repeated safely.
- **Stopping** (``stop`` set: SIGTERM) takes effect between sends: the send in hand finishes
  and is recorded, the rows of the batch not yet started are given back at once
  (:meth:`campaigns.outbox.Outbox.give_back`), then ``run`` returns.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Sequence
from datetime import timedelta

from sqlalchemy.ext.asyncio import AsyncEngine

from bot.clock import Clock, utc_now
from bot.contact import WINDOWED_ROUTES, ContactLedger
from bot.errors import DeliveryError, is_unavailable
from bot.outage import Outage, pause
from bot.types import Address, Outbound, OutboundSender
from campaigns.config import CampaignsConfig
from campaigns.locks import SendLocks
from campaigns.models import OutboxRow
from campaigns.outbox import Outbox, outbox_key
from campaigns.policy import DeliveryPolicy
from campaigns.ratelimit import RateLimiter

log = logging.getLogger(__name__)

IDEMPOTENT_ROUTES = frozenset({"kf", "webhook"})
"""Routes whose send carries our key, so a repeated send is not delivered twice."""
SKIP_ERRORS = frozenset({"window_closed", "platform_quota"})
"""Delivery errors that end a row as skipped (a rule said no), not failed."""
BACKOFF_SECONDS = 30.0
PERSON_BUSY_SECONDS = 2.0
"""Another worker is sending to this person: try the row again this soon."""
UNKNOWN_OUTCOME = "outcome unknown: a worker stopped during the send; not repeated"


def rate_key(row: OutboxRow) -> str:
    """The limiter a row's send counts against: its route, its group robot, or its bridge."""
    if row.channel == "group":
        return f"robot:{row.address.get('robot', '')}"
    if row.channel == "webhook":
        return f"bridge:{row.address.get('bridge', '')}"
    return f"route:{row.channel}"


class DeliveryWorker:
    """Drains the outbox: ``run`` until cancelled, or ``drain`` until nothing is due."""

    def __init__(
        self,
        engine: AsyncEngine,
        sender: OutboundSender,
        config: CampaignsConfig,
        *,
        owner: str,
        clock: Clock = utc_now,
        batch: int = 20,
        idle_seconds: float = 1.0,
        limiter: RateLimiter | None = None,
    ) -> None:
        self._outbox = Outbox(engine)
        self._sender = sender
        self._config = config
        self._owner = owner
        self._clock = clock
        self._batch = batch
        self._idle = idle_seconds
        self._policy = DeliveryPolicy(engine, config)
        self._limiter = limiter or RateLimiter(engine, margin=config.rates.margin_seconds)
        self._locks = SendLocks(engine)
        self._ledger = ContactLedger(engine)

    @property
    def outbox(self) -> Outbox:
        return self._outbox

    async def run(self, stop: asyncio.Event | None = None) -> None:
        """Deliver until ``stop`` is set (or cancelled), polling every ``idle_seconds`` when
        nothing is due; database outages are waited out (module docstring)."""
        stop = stop or asyncio.Event()
        outage = Outage(f"delivery worker {self._owner}")
        while not stop.is_set():
            try:
                handled = await self.run_once(stop)
            except Exception as exc:
                if not is_unavailable(exc):
                    raise
                await outage.wait(exc, stop)
                continue
            outage.over()
            if not handled:
                await pause(self._idle, stop)
        await self._give_back()

    async def drain(self) -> int:
        """Deliver until no row is due now; the number of rows handled."""
        total = 0
        while handled := await self.run_once():
            total += handled
        return total

    async def run_once(self, stop: asyncio.Event | None = None) -> int:
        """Claim one batch and handle every row of it (until ``stop`` is set: the rest stay
        claimed, for :meth:`run` to give back); how many rows were claimed."""
        rows = await self._outbox.claim(
            self._owner, limit=self._batch, now=self._clock(),
            lease_seconds=self._config.lease_seconds,
        )  # fmt: skip
        for group in _sendable_groups(rows):
            if stop is not None and stop.is_set():
                break
            await self._handle(group)
        return len(rows)

    async def _give_back(self) -> None:
        """Stopping: the rows claimed but not started go back to other workers now."""
        try:
            count = await self._outbox.give_back(self._owner)
        except Exception as exc:
            if not is_unavailable(exc):
                raise
            log.warning("could not give back the claimed rows (%s); their lease runs out", exc)
            return
        if count:
            log.info("gave back %d claimed outbox rows", count)

    async def _handle(self, rows: Sequence[OutboxRow]) -> None:
        """One send: a single row, or every row of one staff task (under the task's lease).

        Rows whose last attempt has an unknown outcome are settled first, before any lease is
        waited for: putting such a row back would clear its ``attempt_at`` and so forget that
        the platform may already have it."""
        rows = [row for row in rows if not await self._ended_unknown(row)]
        if not rows:
            return
        if rows[0].channel != "staff_task":
            await self._handle_rows(rows)
            return
        key = task_key(rows[0])
        if not await self._locks.acquire(key, self._owner, self._config.lease_seconds):
            later = self._clock() + timedelta(seconds=PERSON_BUSY_SECONDS)
            for row in rows:
                await self._outbox.release(_id(row), self._owner, not_before=later)
            return
        try:
            now = self._clock()
            whole = await self._outbox.claim_task(
                rows[0], self._owner, now=now, lease_seconds=self._config.lease_seconds,
                due=now + timedelta(seconds=PERSON_BUSY_SECONDS),
            )  # fmt: skip
            await self._handle_rows(whole)
        finally:
            await self._locks.release(key, self._owner)

    async def _handle_rows(self, rows: Sequence[OutboxRow]) -> None:
        """Each person's lease is held from the policy decision until the outcome is recorded
        (:mod:`campaigns.locks`); the rows admitted are sent as one message."""
        held: list[str] = []
        try:
            go: list[OutboxRow] = []
            for row in rows:
                if row.person is not None and row.channel != "group":
                    key = f"person:{row.person}"
                    if not await self._locks.acquire(key, self._owner, self._config.lease_seconds):
                        later = self._clock() + timedelta(seconds=PERSON_BUSY_SECONDS)
                        await self._outbox.release(_id(row), self._owner, not_before=later)
                        continue
                    held.append(key)
                if await self._admit(row):
                    go.append(row)
            if go:
                await self._attempt(go)
        finally:
            for key in held:
                await self._locks.release(key, self._owner)

    async def _attempt(self, go: Sequence[OutboxRow]) -> None:
        first = go[0]
        await self._limiter.acquire(rate_key(first), self._config.rates.per_minute(first.channel))
        started_ids = await self._outbox.begin_attempts(
            [_id(row) for row in go], self._owner, now=self._clock(),
            lease_seconds=self._config.lease_seconds,
        )  # fmt: skip
        started = [row for row in go if row.id in started_ids]
        if started:
            await self._send(started)

    async def _ended_unknown(self, row: OutboxRow) -> bool:
        """End ``row`` failed if its last attempt's outcome is unknown on a route that cannot
        be repeated safely; whether it did."""
        if row.attempt_at is None or row.channel in IDEMPOTENT_ROUTES:
            return False
        await self._outbox.mark_failed(_id(row), self._owner, error=UNKNOWN_OUTCOME)
        return True

    async def _admit(self, row: OutboxRow) -> bool:
        """Whether the row may be sent now; settles it (skip, defer, fail) when not."""
        row_id = _id(row)
        if row.attempts >= self._config.max_attempts:
            error = f"gave up after {row.attempts} attempts: {row.error or 'unknown error'}"
            await self._outbox.mark_failed(row_id, self._owner, error=error)
            return False
        decision = await self._policy.decide(row, self._clock())
        if decision.action == "skip":
            await self._outbox.mark_skipped(row_id, self._owner, reason=decision.reason or "")
            return False
        if decision.action == "defer":
            until = decision.until or self._clock() + timedelta(minutes=5)
            await self._outbox.release(row_id, self._owner, not_before=until)
            return False
        return True

    async def _use_window(self, row: OutboxRow) -> bool:
        """Consume one send of a windowed row's contact window; settle the row when none is left
        (skipped) or its address is unusable (failed). True for rows on other routes."""
        if row.channel not in WINDOWED_ROUTES:
            return True
        try:
            address = Address.from_fields(row.address)
        except ValueError as exc:
            await self._outbox.mark_failed(_id(row), self._owner, error=str(exc), reason="rejected")
            return False
        if await self._ledger.consume(address, 1, self._clock()):
            return True
        await self._outbox.mark_skipped(_id(row), self._owner, reason="window_closed")
        return False

    async def _send(self, rows: Sequence[OutboxRow]) -> None:
        first = rows[0]
        if not await self._use_window(first):  # windowed routes send one row at a time
            return
        recipients = tuple(str(r.address.get("external_userid", "")) for r in rows)
        message = Outbound(
            route=first.channel,
            address={k: str(v) for k, v in first.address.items()},
            text=first.text,
            key=outbox_key(_id(first)),
            recipients=recipients if first.channel == "staff_task" else (),
        )
        try:
            platform_id = await self._sender.send(message)
        except DeliveryError as exc:
            for row in rows:
                await self._failed(row, exc)
            return
        except Exception as exc:  # a bug or an unexpected library error: retry, bounded
            log.exception("delivery of outbox row %s failed unexpectedly", first.id)
            error = DeliveryError(f"{type(exc).__name__}: {exc}", reason="error", retryable=True)
            for row in rows:
                await self._failed(row, error)
            return
        now = self._clock()
        for row in rows:
            await self._outbox.mark_sent(_id(row), self._owner, now=now, platform_id=platform_id)

    async def _failed(self, row: OutboxRow, exc: DeliveryError) -> None:
        row_id = _id(row)
        attempts = row.attempts + 1
        if exc.reason == "window_closed" and row.channel in WINDOWED_ROUTES:
            await self._ledger.close(Address.from_fields(row.address))  # the platform knows best
        if exc.reason in SKIP_ERRORS:
            await self._outbox.mark_skipped(row_id, self._owner, reason=exc.reason)
        elif exc.retryable and attempts < self._config.max_attempts:
            delay = BACKOFF_SECONDS * 2 ** (attempts - 1)
            until = self._clock() + timedelta(seconds=delay)
            await self._outbox.release(row_id, self._owner, not_before=until, error=str(exc))
        else:
            await self._outbox.mark_failed(row_id, self._owner, error=str(exc), reason=exc.reason)


def task_key(row: OutboxRow) -> str:
    """The lease key of the staff task ``row`` belongs to: its run, staff owner and text."""
    digest = hashlib.sha256(row.text.encode()).hexdigest()[:16]
    return f"task:{row.run_id}:{row.address.get('owner', '')}:{digest}"


def _sendable_groups(rows: Sequence[OutboxRow]) -> list[list[OutboxRow]]:
    """Each row alone, except staff tasks: one group per (run, owner, text)."""
    groups: dict[tuple[object, ...], list[OutboxRow]] = {}
    for row in rows:
        if row.channel == "staff_task":
            key: tuple[object, ...] = ("staff", row.run_id, row.address.get("owner"), row.text)
        else:
            key = ("row", row.id)
        groups.setdefault(key, []).append(row)
    return list(groups.values())


def _id(row: OutboxRow) -> int:
    if row.id is None:
        raise ValueError("an outbox row without an id")
    return row.id
