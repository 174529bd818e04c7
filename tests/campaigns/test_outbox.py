"""The outbox's transitions and leases on real SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from campaigns.models import Campaign, CampaignRun, OutboxRow
from campaigns.outbox import Outbox, Planned, outbox_key
from tests.campaigns.conftest import T0

OUTBOX = OutboxRow.__table__  # type: ignore[attr-defined]


async def new_run(engine: AsyncEngine, name: str = "c") -> int:
    async with engine.begin() as conn:
        cid = (
            await conn.execute(
                Campaign.__table__.insert()  # type: ignore[attr-defined]
                .values(name=name, kind="reengage", options={}, enabled=True, created_at=T0)
                .returning(sa.literal_column("id"))
            )
        ).scalar_one()
        rid = (
            await conn.execute(
                CampaignRun.__table__.insert()  # type: ignore[attr-defined]
                .values(campaign_id=cid, run_key="k", state="planned", planned_at=T0, summary={})
                .returning(sa.literal_column("id"))
            )
        ).scalar_one()
    return int(rid)


def planned(n: int, *, not_before_minutes: int = 0) -> list[Planned]:
    return [
        Planned(
            target=f"person:p{i}", channel="group", text=f"hello {i}", address={"robot": "r"},
            not_before=T0 + timedelta(minutes=not_before_minutes),
        )
        for i in range(n)
    ]  # fmt: skip


async def test_add_is_idempotent_per_run_and_target(engine: AsyncEngine) -> None:
    box = Outbox(engine)
    run = await new_run(engine)
    assert await box.add(run, planned(3), T0) == 3
    assert await box.add(run, planned(5), T0) == 2  # only the two new targets
    assert await box.pending(run) == 5
    other = await new_run(engine, "d")
    assert await box.add(other, planned(2), T0) == 2  # another run: its own rows


async def test_claim_leases_due_rows_once(engine: AsyncEngine) -> None:
    box = Outbox(engine)
    run = await new_run(engine)
    await box.add(run, planned(4), T0)
    first = await box.claim("w1", limit=3, now=T0, lease_seconds=60)
    second = await box.claim("w2", limit=3, now=T0, lease_seconds=60)
    assert len(first) == 3
    assert len(second) == 1
    assert {r.id for r in first}.isdisjoint({r.id for r in second})
    assert all(r.lease_owner == "w1" for r in first)
    # Nothing more until the leases run out; then the rows come back.
    assert await box.claim("w3", limit=10, now=T0 + timedelta(seconds=59), lease_seconds=60) == []
    again = await box.claim("w3", limit=10, now=T0 + timedelta(seconds=61), lease_seconds=60)
    assert len(again) == 4


async def test_rows_not_due_are_not_claimed(engine: AsyncEngine) -> None:
    box = Outbox(engine)
    run = await new_run(engine)
    await box.add(run, planned(2, not_before_minutes=30), T0)
    assert await box.claim("w", limit=10, now=T0, lease_seconds=60) == []
    assert (
        len(await box.claim("w", limit=10, now=T0 + timedelta(minutes=31), lease_seconds=60)) == 2
    )


async def test_only_the_owner_moves_a_row(engine: AsyncEngine) -> None:
    box = Outbox(engine)
    run = await new_run(engine)
    await box.add(run, planned(1), T0)
    (row,) = await box.claim("w1", limit=1, now=T0, lease_seconds=1)
    assert row.id is not None
    # The lease ran out and w2 took the row: w1 can no longer attempt or finish it.
    (stolen,) = await box.claim("w2", limit=1, now=T0 + timedelta(seconds=2), lease_seconds=60)
    assert stolen.id == row.id
    assert not await box.begin_attempt(row.id, "w1", now=T0, lease_seconds=60)
    assert not await box.mark_sent(row.id, "w1", now=T0, platform_id="x")
    assert await box.begin_attempt(row.id, "w2", now=T0, lease_seconds=60)
    assert await box.mark_sent(row.id, "w2", now=T0, platform_id="x")
    assert not await box.mark_skipped(row.id, "w2", reason="cap")  # finished rows stay finished
    assert await box.counts(run) == {("sent", None): 1}


async def test_an_attempt_is_recorded_before_the_send(engine: AsyncEngine) -> None:
    box = Outbox(engine)
    run = await new_run(engine)
    await box.add(run, planned(1), T0)
    (row,) = await box.claim("w1", limit=1, now=T0, lease_seconds=1)
    assert row.id is not None
    assert await box.begin_attempt(row.id, "w1", now=T0, lease_seconds=1)
    # The worker dies here. The next claim sees an attempt with an unknown outcome.
    (again,) = await box.claim("w2", limit=1, now=T0 + timedelta(seconds=5), lease_seconds=60)
    assert again.attempt_at is not None
    assert again.attempts == 1
    # A known failure gives the row back without the unknown-outcome mark.
    later = T0 + timedelta(minutes=5)
    assert await box.release(again.id or 0, "w2", not_before=later, error="busy")
    (third,) = await box.claim("w3", limit=1, now=later, lease_seconds=60)
    assert third.attempt_at is None
    assert third.error == "busy"


async def test_every_row_ends_in_one_final_state(engine: AsyncEngine) -> None:
    box = Outbox(engine)
    run = await new_run(engine)
    await box.add(run, planned(3), T0)
    rows = await box.claim("w", limit=3, now=T0, lease_seconds=60)
    ids = [r.id or 0 for r in rows]
    assert await box.mark_sent(ids[0], "w", now=T0, platform_id="m1")
    assert await box.mark_skipped(ids[1], "w", reason="opted_out")
    assert await box.mark_failed(ids[2], "w", error="refused", reason="rejected")
    assert await box.counts(run) == {
        ("sent", None): 1, ("skipped", "opted_out"): 1, ("failed", "rejected"): 1,
    }  # fmt: skip
    assert await box.pending() == 0


async def test_concurrent_claimers_never_share_a_row(engine: AsyncEngine) -> None:
    box = Outbox(engine)
    run = await new_run(engine)
    await box.add(run, planned(200), T0)
    claims = await asyncio.gather(
        *(box.claim(f"w{i}", limit=30, now=T0, lease_seconds=60) for i in range(8))
    )
    ids = [r.id for batch in claims for r in batch]
    assert len(ids) == len(set(ids))  # SKIP LOCKED may hand a claimer fewer rows, never shared ones
    rest = await box.claim("late", limit=500, now=T0, lease_seconds=60)
    assert set(ids).isdisjoint(r.id for r in rest)
    assert len(ids) + len(rest) == 200


def test_keys_fit_the_kf_msgid_rules() -> None:
    key = outbox_key(2**63 - 1)
    assert len(key) <= 32
    assert key.replace("-", "").isalnum()
