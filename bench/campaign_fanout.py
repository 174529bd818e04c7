"""Campaign fan-out: planning a daily-deals run over many members, and delivering an outbox
against the fake platform under a configured kf rate limit.

    .venv/bin/python -m bench.campaign_fanout [--members 100000] [--rate 3000] [--deliver 2000]
        [--repeat 3] [--workers 2]

(run from the repository root: the fake platform and the worker runner come from ``tests``).
Prints one JSON object.

**Planning.** A temporary SQLite database holds ``members`` kf identities (account ``main``)
active within the last day, each with the address it last wrote from and its open contact window
(``member_address``, ``contact_window``: what the pipeline records when a member writes); the
knowledge base
(``bot.app.App``: hash embeddings, no LLM) holds one promotion valid today. ``Planner.plan`` of a
daily-deals campaign (template copy) is timed ``repeat`` times, each with a new run key, so each
writes a whole new run; the median is reported as seconds and rows/s. Setup is not timed.

**Delivery.** The fake platform runs as its own process (``bench.fake_platform``); its kf windows
are opened for ``deliver`` users through ``/bench/kf_messages``. A second SQLite database holds
those members (with their addresses and open windows) and one run of ``deliver`` kf outbox rows;
``workers`` processes of
:mod:`tests.campaigns.delivery_proc` drain it with the kf limit set to ``rate`` per minute (the
shared GCRA limiter of :mod:`campaigns.ratelimit`). From the real times at which the fake accepted
each send (``/bench/kf_send_times``):

- ``achieved_per_minute`` = rows / (last send − first send) × 60, and its ratio to the allowed
  rate (target ≥ 0.95; by this definition a perfectly paced run is n/(n−1) of the rate);
- ``max_60s_window_ratio``: the most sends in any sliding 60 s window ``[t, t + 60)`` over the
  allowed per-minute rate (must never exceed 1.0);
- for a run shorter than a minute, the same for windows of ``k`` send intervals (``60 / rate ×
  k`` seconds, shorter than the run), over ``k``: the spacing check. The limiter spaces *slots*;
  the fake sees each send after a database write and an HTTP round trip whose time varies by a
  few milliseconds, so windows of one or two intervals can hold one send more than ``k``; the
  per-minute limit is what the platform enforces.

CPU seconds are each worker process's own (``time.process_time`` at its exit).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import tempfile
import time
from bisect import bisect_left
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

import campaigns.models  # noqa: F401  (registers the campaigns' tables)
from bench.fake_platform import child
from bot.app import App
from bot.contact import ADDRESSES, WINDOWS
from bot.db import create_engine
from bot.models import Member
from bot.schema import upgrade
from bot.settings import Settings
from bot.types import Address
from campaigns.config import OPT_OUT_HINT, CampaignsConfig
from campaigns.copy import CopyWriter
from campaigns.models import Campaign, CampaignRun
from campaigns.outbox import Outbox, Planned
from campaigns.planner import Planner
from knowledge.loaders.hashing import content_hash
from knowledge.types import ChunkDraft, DocumentMeta, Kind, SourceDocument
from tests.campaigns.delivery_proc import KF_ACCOUNT, DeliveryProc

KFID = "wkbench"
BRAND = "示例咖啡"
PROMOTION = "周末特惠：全场咖啡第二杯半价，会员再享9折，券码 WEEKEND50。"
INSERT_BATCH = 5000
TARGET_RATIO, MAX_WINDOW_RATIO = 0.95, 1.0
SPACING_KS = (1, 2, 5, 10, 50, 100, 500)
MEMBER: sa.Table = Member.__table__  # type: ignore[attr-defined]
CAMPAIGN: sa.Table = Campaign.__table__  # type: ignore[attr-defined]
RUN: sa.Table = CampaignRun.__table__  # type: ignore[attr-defined]


# --- planning --------------------------------------------------------------------------------


async def insert_many(engine: AsyncEngine, table: sa.Table, rows: Sequence[dict[str, Any]]) -> None:
    for start in range(0, len(rows), INSERT_BATCH):
        async with engine.begin() as conn:
            await conn.execute(table.insert(), list(rows[start : start + INSERT_BATCH]))


async def member_ids(engine: AsyncEngine, channel: str) -> dict[str, int]:
    """external_id → member id of the channel's members."""
    stmt = sa.select(MEMBER.c.external_id, MEMBER.c.id).where(MEMBER.c.channel == channel)
    async with engine.connect() as conn:
        return {str(ext): int(mid) for ext, mid in await conn.execute(stmt)}


async def seed_planning(engine: AsyncEngine, count: int, now: datetime) -> None:
    """``count`` kf members active within the last day, each with its address and window."""
    rng = random.Random(4)
    channel = f"kf.{KF_ACCOUNT}"
    active = [now - timedelta(seconds=rng.uniform(60, 86_000)) for _ in range(count)]
    await insert_many(
        engine, MEMBER,
        [
            {"channel": channel, "external_id": f"wm-plan-{n}", "display_name": "",
             "first_seen": now - timedelta(days=60), "last_active": active[n],
             "opted_out": False, "handoff": False}
            for n in range(count)
        ],
    )  # fmt: skip
    ids = await member_ids(engine, channel)
    await seed_windows(
        engine, {ids[f"wm-plan-{n}"]: (f"wm-plan-{n}", active[n]) for n in range(count)}
    )


async def seed_windows(engine: AsyncEngine, members: dict[int, tuple[str, datetime]]) -> None:
    """The kf address each member (id → (external_userid, last message)) wrote from, and the
    window that message opened: what :class:`bot.contact.ContactLedger` records."""
    key = {"route": "kf", "account": KF_ACCOUNT, "chat": KFID}
    await insert_many(
        engine, ADDRESSES,
        [{"member_id": mid, "user_id": user, "last_inbound_at": at, **key}
         for mid, (user, at) in members.items()],
    )  # fmt: skip
    await insert_many(
        engine, WINDOWS,
        [{"user_id": user, "opened_at": at, "used": 0, **key} for user, at in members.values()],
    )  # fmt: skip


async def ingest_promotion(app: App, now: datetime) -> None:
    meta = DocumentMeta(
        source="weekend.md", kind=Kind.PROMOTION, title="周末特惠",
        valid_from=now - timedelta(days=1), valid_to=now + timedelta(days=30),
    )  # fmt: skip
    drafts = (ChunkDraft(text=PROMOTION),)
    await app.knowledge.ingest(SourceDocument(meta, drafts, content_hash(meta, drafts)))


async def new_campaign(engine: AsyncEngine, name: str, kind: str, now: datetime) -> Campaign:
    async with engine.begin() as conn:
        result = await conn.execute(
            CAMPAIGN.insert()
            .values(name=name, kind=kind, options={}, enabled=True, created_at=now)
            .returning(CAMPAIGN.c.id)
        )
        campaign_id = int(result.scalar_one())
    return Campaign(id=campaign_id, name=name, kind=kind, options={}, created_at=now)


async def bench_planning(members: int, repeat: int, data_dir: Path) -> dict[str, Any]:
    settings = Settings(
        _env_file=None, data_dir=data_dir, database_url=None,
        knowledge={"embedding": "hash", "refresh_seconds": 0}, llm={},
    )  # fmt: skip
    app = await App.build(settings)
    try:
        now = datetime.now(UTC)
        await seed_planning(app.engine, members, now)
        await ingest_promotion(app, now)
        campaign = await new_campaign(app.engine, "daily", "daily_deals", now)
        config = CampaignsConfig()
        seconds, planned = [], []
        for n in range(repeat):
            copy = CopyWriter(config, None, brand=BRAND)
            planner = Planner(app.engine, app.knowledge, copy, config)
            started = time.perf_counter()
            report = await planner.plan(campaign, now=now, run_key=f"bench-{n}")
            seconds.append(time.perf_counter() - started)
            planned.append(report.added)
            await copy.aclose()
    finally:
        await app.close()
    median = statistics.median(seconds)
    return {
        "members": members, "rows_planned": planned, "runs_seconds": [round(s, 3) for s in seconds],
        "seconds": round(median, 3), "rows_per_s": round(statistics.median(planned) / median),
    }  # fmt: skip


# --- delivery --------------------------------------------------------------------------------


@asynccontextmanager
async def fake_platform() -> AsyncIterator[str]:
    """``bench.fake_platform`` as a process; its URL. Stopped by closing its standard input."""
    async with child("bench.fake_platform") as (url, _pid):
        yield url


async def seed_delivery(engine: AsyncEngine, count: int, now: datetime) -> int:
    """The users ``/bench/kf_messages`` opened windows for, as members, and one run's rows."""
    channel = f"kf.{KF_ACCOUNT}"
    users = [f"wm-bench-{n}" for n in range(count)]
    await insert_many(
        engine, MEMBER,
        [
            {"channel": channel, "external_id": u, "display_name": "", "first_seen": now,
             "last_active": now, "opted_out": False, "handoff": False}
            for u in users
        ],
    )  # fmt: skip
    ids = await member_ids(engine, channel)
    await seed_windows(engine, {ids[u]: (u, now) for u in users})
    campaign = await new_campaign(engine, "deliver", "daily_deals", now)
    async with engine.begin() as conn:
        result = await conn.execute(
            RUN.insert()
            .values(
                campaign_id=campaign.id, run_key="deliver", state="planned", planned_at=now,
                summary={},
            )
            .returning(RUN.c.id)
        )  # fmt: skip
        run_id = int(result.scalar_one())
    rows = [
        Planned(
            target=f"person:m{ids[u]}", channel="kf", text=f"{PROMOTION}\n{OPT_OUT_HINT}",
            address=Address("kf", KF_ACCOUNT, u, KFID).as_fields(),
            not_before=now, member_id=ids[u], person=f"m{ids[u]}",
        )
        for u in users
    ]  # fmt: skip
    await Outbox(engine).add(run_id, rows, now)
    return run_id


def max_in_window(times: Sequence[float], length: float) -> int:
    """The most of the sorted ``times`` in any half-open window ``[t, t + length)``."""
    return max((bisect_left(times, t + length) - i for i, t in enumerate(times)), default=0)


def rate_figures(times: Sequence[float], per_minute: float) -> dict[str, Any]:
    """Achieved rate, its ratio to the allowed one, and the sliding-window maxima."""
    ordered = sorted(times)
    span = ordered[-1] - ordered[0] if len(ordered) > 1 else 0.0
    achieved = len(ordered) / span * 60 if span > 0 else 0.0
    max_minute = max_in_window(ordered, 60.0)
    figures: dict[str, Any] = {
        "allowed_per_minute": per_minute, "sends": len(ordered), "span_seconds": round(span, 3),
        "achieved_per_minute": round(achieved, 1), "ratio": round(achieved / per_minute, 4),
        "max_sends_60s_window": max_minute,
        "max_60s_window_ratio": round(max_minute / per_minute, 4),
    }  # fmt: skip
    if span < 60:
        interval = 60.0 / per_minute
        figures["spacing"] = {
            str(k): {
                "window_s": round(interval * k, 4),
                "max_sends": (most := max_in_window(ordered, interval * k)),
                "ratio": round(most / k, 3),
            }
            for k in SPACING_KS
            if interval * k < span
        }
    return figures


async def bench_delivery(
    count: int, per_minute: float, workers: int, data_dir: Path
) -> dict[str, Any]:
    db = f"sqlite+aiosqlite:///{data_dir / 'deliver.db'}"
    engine = create_engine(db)
    procs: list[DeliveryProc] = []
    try:
        await upgrade(engine)
        async with fake_platform() as url, aiohttp.ClientSession() as http:
            spec = {"count": count, "users": count, "open_kfid": KFID}
            async with http.post(f"{url}/bench/kf_messages", json=spec) as response:
                response.raise_for_status()
            run_id = await seed_delivery(engine, count, datetime.now(UTC))
            options = ("--rate", str(per_minute), "--lease", "60", "--batch", "10")
            for n in range(workers):
                procs.append(await DeliveryProc.start(db, url, f"w{n + 1}", data_dir, *options))
            for proc in procs:
                if not await proc.ready(120):
                    raise RuntimeError(f"worker {proc.owner} did not start")
            within = count / per_minute * 60 * 2 + 120
            summaries = await asyncio.gather(*(p.finish(within) for p in procs))
            async with http.get(f"{url}/bench/kf_send_times") as response:
                times = [float(t) for t in (await response.json())["times"]]
            async with http.get(f"{url}/bench/stats") as response:
                stats = await response.json()
        states = await Outbox(engine).counts(run_id)
    finally:
        for proc in procs:
            await proc.kill()
        await engine.dispose()
    return {
        "rows": count, "workers": workers, **rate_figures(times, per_minute),
        "outbox": {f"{s}:{r}" if r else s: n for (s, r), n in states.items()},
        "send_msg_requests": stats["calls"].get("/cgi-bin/kf/send_msg", 0),
        "worker_cpu_seconds": {s["owner"]: round(s["cpu_seconds"], 2) for s in summaries},
        "worker_cpu_seconds_total": round(sum(s["cpu_seconds"] for s in summaries), 2),
    }  # fmt: skip


async def main(args: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="siyu-fanout-") as tmp:
        plan_dir, deliver_dir = Path(tmp) / "plan", Path(tmp) / "deliver"
        deliver_dir.mkdir()
        planning = await bench_planning(args.members, args.repeat, plan_dir)
        delivery = await bench_delivery(args.deliver, args.rate, args.workers, deliver_dir)
    return {
        "planning": planning,
        "delivery": delivery,
        "targets": {
            "ratio_at_least": TARGET_RATIO, "max_60s_window_ratio_at_most": MAX_WINDOW_RATIO,
            "ratio_met": delivery["ratio"] >= TARGET_RATIO,
            "window_met": delivery["max_60s_window_ratio"] <= MAX_WINDOW_RATIO,
        },
    }  # fmt: skip


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--members", type=int, default=100_000, help="members to plan over")
    parser.add_argument("--repeat", type=int, default=3, help="planning runs (median reported)")
    parser.add_argument("--rate", type=float, default=3000.0, help="kf sends allowed per minute")
    parser.add_argument("--deliver", type=int, default=2000, help="outbox rows to deliver")
    parser.add_argument("--workers", type=int, default=2, help="worker processes")
    args = parser.parse_args(argv)
    if min(args.members, args.repeat, args.deliver, args.workers) < 1 or args.rate <= 0:
        parser.error("sizes must be at least 1 and the rate positive")
    return args


if __name__ == "__main__":
    print(json.dumps(asyncio.run(main(parse_args())), ensure_ascii=False, indent=2))
