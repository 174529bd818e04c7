"""The outbox: one row per (campaign run, target), written by the planner, drained by workers.

Life of a row::

    pending ──claim (lease)──► policy ──► rate slot ──► attempt (committed) ──► platform ──► sent
       ▲                          │                                              │
       └── defer / retry later ◄──┴── skip (reason) · fail (error, after max_attempts) ◄──┘

Crash safety rests on three facts of the table, not on process memory:

- **Leases.** :meth:`Outbox.claim` gives a worker a batch for ``lease_seconds``; on PostgreSQL the
  candidate rows are picked ``FOR UPDATE SKIP LOCKED`` so several workers drain one outbox without
  waiting on each other; SQLite serialises writers, so the same statement without the locking
  clause is safe there. A worker that dies simply stops renewing: its rows are claimable again
  when the lease runs out.
- **Attempts are recorded before the platform call.** :meth:`begin_attempt` commits
  ``attempt_at`` (and renews the lease, but only if this worker still owns the row) before the
  send. A row claimed with ``attempt_at`` set is one whose last attempt has an unknown outcome:
  the platform may have accepted it.
- **Idempotent routes are retried, the others are not.** kf ``send_msg`` takes our ``msgid``
  (the outbox key): re-sending after a crash cannot deliver twice, so the row is simply tried
  again. The other routes (``custom/send``, ``add_msg_template``, robots) have no caller id:
  sending again could double a message the platform already accepted, so such a row ends
  ``failed`` with error "outcome unknown" — at most once, and the report shows it. The worker
  (:mod:`campaigns.worker`) applies that rule.

- **A staff task is one send for many rows.** :meth:`Outbox.claim_task` hands the worker that
  holds a task's lock every pending row of that (run, staff owner, text) whose attempt has not
  begun, whoever had claimed it (that worker cannot begin an attempt on a row it no longer
  owns), and :meth:`begin_attempts` marks all of them in one transaction: after a crash they
  all carry ``attempt_at`` and all end "outcome unknown", so no second task is ever sent for
  recipients of the first.

Every row ends ``sent``, ``skipped`` (reason) or ``failed`` (error); ``pending`` rows are still
to do (possibly deferred: ``not_before`` in the future).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.models import require_aware
from campaigns.models import OutboxRow
from knowledge.sql import upsert

OUTBOX = OutboxRow.__table__  # type: ignore[attr-defined]
INSERT_BATCH = 1000


def outbox_key(row_id: int) -> str:
    """The caller id sent with a row's message (kf ``msgid``: at most 32 of [0-9A-Za-z_-])."""
    return f"siyu-ob-{row_id}"


@dataclass(frozen=True, slots=True)
class Planned:
    """One message the planner wants sent; becomes an outbox row."""

    target: str
    channel: str
    text: str
    address: dict[str, Any]
    not_before: datetime
    member_id: int | None = None
    person: str | None = None
    segment: str | None = None
    variant: str | None = None
    expires_at: datetime | None = None


class Outbox:
    """The outbox table's operations. Every method is one short transaction."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        self._postgres = engine.dialect.name == "postgresql"

    async def add(self, run_id: int, rows: Sequence[Planned], now: datetime) -> int:
        """Insert ``rows`` for ``run_id``; a (run, target) already there is left alone (a plan
        that is run again adds only what is missing). Returns the rows inserted."""
        require_aware(now)
        # One compiled statement, executed for many parameter sets (SQLAlchemy batches them into
        # multi-row INSERTs); RETURNING names only the rows that were new.
        stmt = upsert(self._engine.dialect, OUTBOX, ["run_id", "target"]).returning(OUTBOX.c.id)
        added = 0
        for start in range(0, len(rows), INSERT_BATCH):
            values = [_values(run_id, p, now) for p in rows[start : start + INSERT_BATCH]]
            async with self._engine.begin() as conn:
                result = await conn.execute(stmt, values)
                added += len(result.all())
        return added

    async def claim(
        self, owner: str, *, limit: int, now: datetime, lease_seconds: float
    ) -> list[OutboxRow]:
        """Lease up to ``limit`` due pending rows to ``owner``, oldest first."""
        require_aware(now)
        due = (
            sa.select(OUTBOX.c.id)
            .where(
                OUTBOX.c.state == "pending",
                OUTBOX.c.not_before <= now,
                sa.or_(OUTBOX.c.lease_until.is_(None), OUTBOX.c.lease_until < now),
            )
            .order_by(OUTBOX.c.not_before, OUTBOX.c.id)
            .limit(limit)
        )
        if self._postgres:
            due = due.with_for_update(skip_locked=True)
        stmt = (
            OUTBOX.update()
            .where(OUTBOX.c.id.in_(due.scalar_subquery()))
            .values(lease_owner=owner, lease_until=now + timedelta(seconds=lease_seconds))
            .returning(*OUTBOX.c)
        )
        async with self._engine.begin() as conn:
            result = await conn.execute(stmt)
            rows = [OutboxRow.model_validate(dict(r._mapping)) for r in result]
        return sorted(rows, key=lambda r: (r.not_before, r.id or 0))

    async def claim_task(
        self, row: OutboxRow, owner: str, *, now: datetime, lease_seconds: float, due: datetime
    ) -> list[OutboxRow]:
        """Lease to ``owner`` every pending ``staff_task`` row of ``row``'s run, staff owner and
        text that is due by ``due`` and whose attempt has not begun, ``row`` included, even rows
        another worker claimed (only the holder of the task's lock may call this)."""
        require_aware(now)
        same_task = sa.and_(
            OUTBOX.c.run_id == row.run_id, OUTBOX.c.channel == "staff_task",
            OUTBOX.c.text == row.text, OUTBOX.c.state == "pending",
            OUTBOX.c.attempt_at.is_(None), OUTBOX.c.not_before <= due,
        )  # fmt: skip
        staff = row.address.get("owner")
        async with self._engine.begin() as conn:
            found = await conn.execute(sa.select(OUTBOX.c.id, OUTBOX.c.address).where(same_task))
            ids = [i for i, address in found if address.get("owner") == staff]
            result = await conn.execute(
                OUTBOX.update()
                .where(OUTBOX.c.id.in_(ids), same_task)
                .values(lease_owner=owner, lease_until=now + timedelta(seconds=lease_seconds))
                .returning(*OUTBOX.c)
            )
            rows = [OutboxRow.model_validate(dict(r._mapping)) for r in result]
        return sorted(rows, key=lambda r: r.id or 0)

    async def begin_attempt(
        self, row_id: int, owner: str, *, now: datetime, lease_seconds: float
    ) -> bool:
        """:meth:`begin_attempts` for one row; False if it is no longer this worker's."""
        started = await self.begin_attempts([row_id], owner, now=now, lease_seconds=lease_seconds)
        return started == [row_id]

    async def begin_attempts(
        self, row_ids: Sequence[int], owner: str, *, now: datetime, lease_seconds: float
    ) -> list[int]:
        """Record that ``owner`` is about to call the platform for the rows (one transaction,
        committed before the call) and renew their leases; the ids still this worker's to send.

        Ownership is ``lease_owner``: a lease that ran out while this worker waited for a rate
        slot is still its own unless another worker claimed the row meanwhile."""
        async with self._engine.begin() as conn:
            result = await conn.execute(
                OUTBOX.update()
                .where(OUTBOX.c.id.in_(list(row_ids)), OUTBOX.c.lease_owner == owner)
                .where(OUTBOX.c.state == "pending")
                .values(
                    attempt_at=now, attempts=OUTBOX.c.attempts + 1,
                    lease_until=now + timedelta(seconds=lease_seconds),
                )
                .returning(OUTBOX.c.id)
            )  # fmt: skip
            started = {int(i) for (i,) in result}
        return [i for i in row_ids if i in started]

    async def mark_sent(
        self, row_id: int, owner: str, *, now: datetime, platform_id: str | None
    ) -> bool:
        """The platform accepted the message."""
        values = {"state": "sent", "sent_at": now, "platform_id": platform_id, "error": None}
        return await self._finish(row_id, owner, values)

    async def mark_skipped(self, row_id: int, owner: str, *, reason: str) -> bool:
        """The message will not be sent, for ``reason`` (opted_out, cap, window_closed, ...)."""
        return await self._finish(row_id, owner, {"state": "skipped", "reason": reason})

    async def mark_failed(
        self, row_id: int, owner: str, *, error: str, reason: str | None = None
    ) -> bool:
        """The message could not be sent and will not be tried again."""
        return await self._finish(
            row_id, owner, {"state": "failed", "error": error[:2000], "reason": reason}
        )

    async def release(
        self, row_id: int, owner: str, *, not_before: datetime, error: str | None = None
    ) -> bool:
        """Give the row back as pending from ``not_before`` (a deferral, or a retry after a
        transient error: the attempt's outcome is known, so ``attempt_at`` is cleared)."""
        values: dict[str, Any] = {
            "not_before": require_aware(not_before), "lease_owner": None, "lease_until": None,
            "attempt_at": None,
        }  # fmt: skip
        if error is not None:
            values["error"] = error[:2000]
        return await self._update_owned(row_id, owner, values)

    async def give_back(self, owner: str) -> int:
        """Release every row ``owner`` claimed whose attempt has not begun (a worker stopping);
        rows with an attempt keep their lease: their outcome is unknown (module docstring).
        How many were given back."""
        stmt = (
            OUTBOX.update()
            .where(
                OUTBOX.c.lease_owner == owner,
                OUTBOX.c.state == "pending",
                OUTBOX.c.attempt_at.is_(None),
            )
            .values(lease_owner=None, lease_until=None)
        )
        async with self._engine.begin() as conn:
            return int((await conn.execute(stmt)).rowcount)

    async def counts(self, run_id: int) -> dict[tuple[str, str | None], int]:
        """Rows of a run by (state, reason)."""
        stmt = (
            sa.select(OUTBOX.c.state, OUTBOX.c.reason, sa.func.count())
            .where(OUTBOX.c.run_id == run_id)
            .group_by(OUTBOX.c.state, OUTBOX.c.reason)
        )
        async with self._engine.connect() as conn:
            return {(s, r): int(n) for s, r, n in await conn.execute(stmt)}

    async def pending(self, run_id: int | None = None) -> int:
        """Rows still to do (of one run, or of all)."""
        stmt = sa.select(sa.func.count()).where(OUTBOX.c.state == "pending")
        if run_id is not None:
            stmt = stmt.where(OUTBOX.c.run_id == run_id)
        async with self._engine.connect() as conn:
            return int((await conn.execute(stmt)).scalar_one())

    async def _finish(self, row_id: int, owner: str, values: dict[str, Any]) -> bool:
        return await self._update_owned(
            row_id, owner, {**values, "lease_owner": None, "lease_until": None}
        )

    async def _update_owned(self, row_id: int, owner: str, values: dict[str, Any]) -> bool:
        """Apply ``values`` to a pending row ``owner`` holds; False if it holds it no more."""
        async with self._engine.begin() as conn:
            result = await conn.execute(
                OUTBOX.update()
                .where(OUTBOX.c.id == row_id, OUTBOX.c.lease_owner == owner)
                .where(OUTBOX.c.state == "pending")
                .values(**values)
            )
        return result.rowcount == 1


def _values(run_id: int, p: Planned, now: datetime) -> dict[str, Any]:
    return {
        "run_id": run_id, "target": p.target, "member_id": p.member_id, "person": p.person,
        "segment": p.segment, "variant": p.variant, "channel": p.channel, "address": p.address,
        "text": p.text, "state": "pending", "attempts": 0, "not_before": p.not_before,
        "expires_at": p.expires_at, "created_at": now,
    }  # fmt: skip
