"""Crash safety of the outbox delivery: worker processes killed with SIGKILL and restarted.

Each test seeds a run's outbox (real ``member`` rows whose kf windows are open, at the fake too),
starts :mod:`tests.campaigns.delivery_proc` workers against the in-test fake platform and kills
them; at the end every row is ``sent`` and the fake holds exactly one message per member.

- The random kills come at a seeded random 0.2–1.5 s after the worker printed ``ready`` (its
  imports done, so every kill lands in the delivery itself, whatever the machine's load). They may
  hit any step: a claim, a policy read, a committed attempt whose send is on the wire, a ``sent``
  not yet recorded. The tests print (and put in their assertion messages) how many ``send_msg``
  requests the fake received beyond one per member: the retries that the kf ``msgid`` (our outbox
  key) made harmless.
- Random kills hit the window between the committed attempt and ``sent`` only by luck, so
  :func:`test_a_worker_dying_after_the_platform_accepted` makes that crash deterministic
  (``--die-after-attempt``): on kf the row is retried and delivered once; on the Official
  Account, which has no caller id, it ends ``failed`` ("outcome unknown"), delivered once.
- Leases are 2 s (1 s for the deterministic test) so a restarted worker reclaims a dead worker's
  rows quickly; every subprocess is killed in ``finally``.
"""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.contact import WINDOWS
from bot.db import create_engine
from bot.models import Member
from bot.schema import upgrade
from bot.types import Address
from campaigns.models import Campaign, CampaignRun, OutboxRow
from campaigns.outbox import Outbox, Planned, outbox_key
from tests.campaigns.delivery_proc import DIED_EXIT_CODE, KF_ACCOUNT, OA_ACCOUNT, DeliveryProc
from tests.fakes.wecom_server import FakePlatform, wecom_server

__all__ = ["wecom_server"]

MEMBERS = 5000
KFID = "wkcrash"
KILLS = 4
READY_WITHIN_S = 60.0
FINISH_WITHIN_S = 300.0  # "does not hang": 5,000 sends on a loaded 2-core machine took >120 s
OUTBOX = OutboxRow.__table__  # type: ignore[attr-defined]
MEMBER = Member.__table__  # type: ignore[attr-defined]


@dataclass
class Procs:
    """Every worker process a test started, so ``finally`` can kill them all."""

    started: list[DeliveryProc] = field(default_factory=list)

    async def start(self, db: str, api: str, owner: str, log_dir: Path, *opts: str) -> DeliveryProc:
        proc = await DeliveryProc.start(db, api, owner, log_dir, *opts)
        self.started.append(proc)
        assert await proc.ready(READY_WITHIN_S), f"worker {owner} never became ready"
        return proc

    async def kill_all(self) -> None:
        for proc in self.started:
            await proc.kill()


# --- seeding -------------------------------------------------------------------------------


async def new_run(engine: AsyncEngine, now: datetime) -> int:
    """A campaign and one run of it; the run's id."""
    async with engine.begin() as conn:
        campaign = await conn.execute(
            Campaign.__table__.insert()  # type: ignore[attr-defined]
            .values(name="crash", kind="daily_deals", options={}, enabled=True, created_at=now)
            .returning(Campaign.__table__.c.id)  # type: ignore[attr-defined]
        )
        run = await conn.execute(
            CampaignRun.__table__.insert()  # type: ignore[attr-defined]
            .values(
                campaign_id=campaign.scalar_one(), run_key="crash", state="planned",
                planned_at=now, summary={},
            )
            .returning(CampaignRun.__table__.c.id)  # type: ignore[attr-defined]
        )  # fmt: skip
        return int(run.scalar_one())


async def add_members(
    engine: AsyncEngine, channel: str, users: Sequence[str], now: datetime
) -> dict[str, int]:
    """Member rows active ``now`` (their windows open); external id → member id."""
    values = [
        {"channel": channel, "external_id": u, "display_name": "", "first_seen": now,
         "last_active": now, "opted_out": False, "handoff": False}
        for u in users
    ]  # fmt: skip
    async with engine.begin() as conn:
        for start in range(0, len(values), 1000):
            await conn.execute(MEMBER.insert(), values[start : start + 1000])
        found = await conn.execute(
            sa.select(MEMBER.c.external_id, MEMBER.c.id).where(MEMBER.c.channel == channel)
        )
        return {str(ext): int(mid) for ext, mid in found}


async def open_windows(engine: AsyncEngine, addresses: Iterable[Address], now: datetime) -> None:
    """Contact windows opened ``now`` for ``addresses``, inserted in bulk (thousands of members
    writing at once; :meth:`bot.contact.ContactLedger.open` does it one by one)."""
    values = [
        {"route": a.route, "account": a.account, "user_id": a.user, "chat": a.chat or "",
         "opened_at": now, "used": 0}
        for a in addresses
    ]  # fmt: skip
    async with engine.begin() as conn:
        for start in range(0, len(values), 1000):
            await conn.execute(WINDOWS.insert(), values[start : start + 1000])


async def seed_kf(engine: AsyncEngine, fake: FakePlatform, count: int) -> int:
    """``count`` kf members, their windows open at the fake, and one run's outbox rows."""
    now = datetime.now(UTC)
    users = [f"wm-crash-{n}" for n in range(count)]
    ids = await add_members(engine, f"kf.{KF_ACCOUNT}", users, now)
    for user in users:
        fake.add_kf_message(user, "hi", open_kfid=KFID)
    addresses = {u: Address("kf", KF_ACCOUNT, u, chat=KFID) for u in users}
    await open_windows(engine, addresses.values(), now)
    rows = [
        Planned(
            target=f"person:m{ids[u]}", channel="kf", text=f"今日特惠 {u}",
            address=addresses[u].as_fields(), not_before=now, member_id=ids[u],
            person=f"m{ids[u]}",
        )
        for u in users
    ]  # fmt: skip
    run = await new_run(engine, now)
    assert await Outbox(engine).add(run, rows, now) == count
    return run


async def seed_oa(engine: AsyncEngine, fake: FakePlatform, count: int) -> int:
    """``count`` Official Account members (windows open) and one run's outbox rows."""
    now = datetime.now(UTC)
    users = [f"oa-crash-{n}" for n in range(count)]
    ids = await add_members(engine, f"oa.{OA_ACCOUNT}", users, now)
    for user in users:
        fake.add_oa_message(user)
    addresses = {u: Address("oa", OA_ACCOUNT, u) for u in users}
    await open_windows(engine, addresses.values(), now)
    rows = [
        Planned(
            target=f"person:m{ids[u]}", channel="oa", text=f"今日特惠 {u}",
            address=addresses[u].as_fields(), not_before=now, member_id=ids[u],
            person=f"m{ids[u]}",
        )
        for u in users
    ]  # fmt: skip
    run = await new_run(engine, now)
    assert await Outbox(engine).add(run, rows, now) == count
    return run


# --- reading the outcome -------------------------------------------------------------------


async def rows_by_state(engine: AsyncEngine) -> Counter[str]:
    async with engine.connect() as conn:
        result = await conn.execute(
            sa.select(OUTBOX.c.state, sa.func.count()).group_by(OUTBOX.c.state)
        )
        return Counter({str(state): int(n) for state, n in result})


async def in_flight(engine: AsyncEngine, owner: str | None = None) -> set[int]:
    """Rows (of ``owner``'s, or of anyone's) whose attempt is committed but whose outcome is not
    recorded: right after a kill, what it left mid-send."""
    stmt = sa.select(OUTBOX.c.id).where(
        OUTBOX.c.state == "pending", OUTBOX.c.attempt_at.is_not(None)
    )
    if owner is not None:
        stmt = stmt.where(OUTBOX.c.lease_owner == owner)
    async with engine.connect() as conn:
        return {int(row_id) for row_id in (await conn.scalars(stmt))}


async def expected_msgids(engine: AsyncEngine) -> dict[str, str]:
    """external_userid → the msgid its row must have been delivered with (its outbox key)."""
    async with engine.connect() as conn:
        result = await conn.execute(sa.select(OUTBOX.c.id, OUTBOX.c.address))
        return {str(address["user"]): outbox_key(int(i)) for i, address in result}


async def assert_each_member_got_one(engine: AsyncEngine, fake: FakePlatform, note: str) -> None:
    states = await rows_by_state(engine)
    assert states == Counter({"sent": MEMBERS}), f"{dict(states)}; {note}"
    delivered = Counter(str(s["touser"]) for s in fake.kf_sent)
    assert len(fake.kf_sent) == MEMBERS, f"{len(fake.kf_sent)} delivered; {note}"
    assert len(delivered) == MEMBERS, f"{len(delivered)} distinct members; {note}"
    assert delivered.most_common(1)[0][1] == 1, note
    by_user = {str(s["touser"]): str(s["msgid"]) for s in fake.kf_sent}
    assert by_user == await expected_msgids(engine), note


def retry_note(fake: FakePlatform, killed_mid_send: int) -> str:
    requests = fake.count("/cgi-bin/kf/send_msg")
    note = (
        f"the fake received {requests} send_msg requests for {MEMBERS} members: "
        f"{requests - MEMBERS} repeats made harmless by the msgid; "
        f"{killed_mid_send} rows were left mid-send by the kills"
    )
    print(note)
    return note


# --- the tests -----------------------------------------------------------------------------


async def kill_and_restart(
    procs: Procs,
    engine: AsyncEngine,
    db: str,
    api: str,
    owner: str,
    log_dir: Path,
    rng: random.Random,
) -> set[int]:
    """Start ``owner`` and SIGKILL it at random points ``KILLS`` times; the rows the kills left
    mid-send."""
    mid_send: set[int] = set()
    for _ in range(KILLS):
        proc = await procs.start(db, api, owner, log_dir, "--lease", "2")
        await asyncio.sleep(rng.uniform(0.2, 1.5))
        await proc.kill()
        mid_send |= await in_flight(engine, owner)
    return mid_send


async def test_sqlite_worker_killed_at_random_points_delivers_each_member_once(
    wecom_server: FakePlatform, data_dir: Path, tmp_path: Path
) -> None:
    db = f"sqlite+aiosqlite:///{data_dir / 'crash.db'}"
    engine = create_engine(db)
    procs = Procs()
    try:
        await upgrade(engine)
        await seed_kf(engine, wecom_server, MEMBERS)
        rng = random.Random(20260610)
        mid_send = await kill_and_restart(procs, engine, db, wecom_server.url, "w1", tmp_path, rng)
        done_before = (await rows_by_state(engine))["sent"]
        assert 0 < done_before < MEMBERS, "the kills should land during the delivery"
        final = await procs.start(db, wecom_server.url, "w1", tmp_path, "--lease", "2")
        await final.finish(FINISH_WITHIN_S)
        note = retry_note(wecom_server, len(mid_send))
        await assert_each_member_got_one(engine, wecom_server, note)
    finally:
        await procs.kill_all()
        await engine.dispose()


@pytest.mark.postgres
async def test_postgres_two_workers_killed_at_random_points_deliver_each_member_once(
    wecom_server: FakePlatform, fresh_database: str, tmp_path: Path
) -> None:
    engine = create_engine(fresh_database)
    procs = Procs()
    try:
        await upgrade(engine)
        await seed_kf(engine, wecom_server, MEMBERS)
        api = wecom_server.url
        cycles = [
            kill_and_restart(
                procs, engine, fresh_database, api, owner, tmp_path, random.Random(seed)
            )
            for owner, seed in (("w1", 11), ("w2", 22))
        ]
        mid_send = set().union(*await asyncio.gather(*cycles))
        done_before = (await rows_by_state(engine))["sent"]
        assert 0 < done_before < MEMBERS, "the kills should land during the delivery"
        finals = await asyncio.gather(
            *(procs.start(fresh_database, api, o, tmp_path, "--lease", "2") for o in ("w1", "w2"))
        )
        summaries = await asyncio.gather(*(p.finish(FINISH_WITHIN_S) for p in finals))
        note = retry_note(wecom_server, len(mid_send))
        assert all(s["handled"] > 0 for s in summaries), (
            f"both workers should share the rest: {summaries}"
        )
        await assert_each_member_got_one(engine, wecom_server, note)
    finally:
        await procs.kill_all()
        await engine.dispose()


@pytest.mark.parametrize(
    ("route", "first_row_ends", "requests"),
    [
        # No caller id: sending again could double it, so the row fails "outcome unknown".
        ("oa", "failed", 3),
        # Our msgid: the retry reaches the platform but is not delivered twice.
        ("kf", "sent", 4),
    ],
)
async def test_a_worker_dying_after_the_platform_accepted(
    wecom_server: FakePlatform,
    data_dir: Path,
    tmp_path: Path,
    route: str,
    first_row_ends: str,
    requests: int,
) -> None:
    db = f"sqlite+aiosqlite:///{data_dir / 'died.db'}"
    engine = create_engine(db)
    procs = Procs()
    fake = wecom_server
    try:
        await upgrade(engine)
        await (seed_oa if route == "oa" else seed_kf)(engine, fake, 3)
        sends, api = (
            (fake.custom_sent, "/cgi-bin/message/custom/send")
            if route == "oa"
            else (fake.kf_sent, "/cgi-bin/kf/send_msg")
        )
        dying = await procs.start(
            db, fake.url, "w1", tmp_path, "--lease", "1", "--die-after-attempt"
        )
        async with asyncio.timeout(FINISH_WITHIN_S):
            assert await dying.proc.wait() == DIED_EXIT_CODE
        assert len(sends) == 1  # the platform accepted it...
        assert len(await in_flight(engine)) == 1  # ...and the worker died before "sent"
        restarted = await procs.start(db, fake.url, "w1", tmp_path, "--lease", "1")
        await restarted.finish(FINISH_WITHIN_S)
        async with engine.connect() as conn:
            rows = (await conn.execute(sa.select(OUTBOX).order_by(OUTBOX.c.id))).all()
        assert [r.state for r in rows] == [first_row_ends, "sent", "sent"]
        if first_row_ends == "failed":
            assert "outcome unknown" in (rows[0].error or "")
        else:
            assert rows[0].attempts == 2  # tried again after the crash
        delivered = Counter(str(s["touser"]) for s in sends)
        assert sorted(delivered.values()) == [1, 1, 1]  # each member once, the first not twice
        assert fake.count(api) == requests
    finally:
        await procs.kill_all()
        await engine.dispose()
