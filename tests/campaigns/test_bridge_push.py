"""A daily-deals campaign reaches a bridge's ``push_url``: the scheduler fires the campaign, the
planner writes a ``webhook`` outbox row for the bridge conversation, and the delivery worker
pushes it, signed, to a fake bridge on 127.0.0.1 that verifies the signature. A bridge that
answers 5xx gets the same push id again later; one that answers 4xx is not asked again."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa
from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncEngine

from adapters.webhook.config import Bridge
from adapters.webhook.signing import SignatureMismatch, verify
from adapters.wecom.config import WeComSettings
from adapters.wecom.outbound import PlatformSender, platform_sender
from bot.db import create_engine
from bot.schema import upgrade
from campaigns.config import CampaignsConfig
from campaigns.copy import CopyWriter
from campaigns.outbox import Outbox, outbox_key
from campaigns.planner import Planner
from campaigns.registry import create_campaign, get_campaign_by_id
from campaigns.scheduler import CampaignScheduler, fire_job
from campaigns.worker import DeliveryWorker
from knowledge.base import KnowledgeBase
from tests.campaigns.conftest import T0
from tests.campaigns.test_planner import STORE_PROMO, knowledge
from tests.campaigns.test_scheduler import leading
from tests.campaigns.test_worker import Clock

__all__ = ["knowledge"]

SECRET = "bridge-secret-0123456789"


@pytest.fixture
async def engine(data_dir: Path) -> AsyncIterator[AsyncEngine]:
    """A SQLite file: the scheduler's job store shares it."""
    engine = create_engine(f"sqlite+aiosqlite:///{data_dir / 'siyu.db'}")
    await upgrade(engine)
    yield engine
    await engine.dispose()


@dataclass
class FakeBridge:
    """A bridge's push endpoint: verifies each push's signature, answers the queued statuses."""

    url: str = ""
    pushes: list[dict[str, Any]] = field(default_factory=list)
    statuses: list[int] = field(default_factory=list)
    forged: int = 0

    async def receive(self, request: web.Request) -> web.Response:
        body = await request.read()
        try:
            verify(SECRET, request.headers, body)
        except SignatureMismatch:
            self.forged += 1
            return web.json_response({"error": "signature"}, status=401)
        self.pushes.append(json.loads(body))
        return web.Response(status=self.statuses.pop(0) if self.statuses else 204)


@pytest.fixture
async def bridge() -> AsyncIterator[FakeBridge]:
    fake = FakeBridge()
    app = web.Application()
    app.router.add_post("/push", fake.receive)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    fake.url = f"http://127.0.0.1:{runner.addresses[0][1]}/push"
    yield fake
    await runner.cleanup()


@pytest.fixture
async def sender(bridge: FakeBridge) -> AsyncIterator[PlatformSender]:
    unused = "http://127.0.0.1:9"  # no WeCom account is configured: nothing goes there
    wecom = WeComSettings(_env_file=None, api_base=unused, wechat_api_base=unused)
    bridges = [Bridge(name="bridge", secret=SECRET, push_url=bridge.url)]
    async with platform_sender(wecom, bridges=bridges) as sender:
        yield sender


async def fire_daily_deals(engine: AsyncEngine, knowledge: KnowledgeBase, data_dir: Path) -> int:
    """Create the campaign and let the leading scheduler fire it; the run's id."""
    deals = await create_campaign(
        engine, name="deals", kind="daily_deals", now=T0, store_id="s1", cron="0 9 * * *",
        options={"bridge_groups": ["bridge:group-42"]},
    )  # fmt: skip
    config = CampaignsConfig()
    copy = CopyWriter(config, None, brand="示例咖啡")
    planner = Planner(engine, knowledge, copy, config)
    run_ids: list[int] = []

    async def fire(campaign_id: int, run_key: str) -> str:
        campaign = await get_campaign_by_id(engine, campaign_id)
        assert campaign is not None
        report = await planner.plan(campaign, now=T0, run_key=run_key)  # promotions of T0
        run_ids.append(report.run_id or 0)
        return f"planned {report.planned}"

    url = f"sqlite+aiosqlite:///{data_dir / 'siyu.db'}"
    scheduler = CampaignScheduler(
        engine, url, fire, tz=ZoneInfo("Asia/Shanghai"), owner="leader",
        leader_poll_seconds=0.1, sync_seconds=3600.0,
    )  # fmt: skip
    async with leading(scheduler):
        await fire_job("leader", deals.id or 0)
    await copy.aclose()
    (run_id,) = run_ids
    return run_id


async def test_a_daily_deal_reaches_the_bridge_signed_and_retried_with_its_id(
    engine: AsyncEngine,
    knowledge: KnowledgeBase,
    bridge: FakeBridge,
    sender: PlatformSender,
    data_dir: Path,
) -> None:
    run_id = await fire_daily_deals(engine, knowledge, data_dir)
    box = Outbox(engine)
    (row_state,) = (await box.counts(run_id)).items()
    assert row_state == (("pending", None), 1)
    bridge.statuses = [503]  # busy once
    clock = Clock()
    worker = DeliveryWorker(engine, sender, CampaignsConfig(), owner="w1", clock=clock)
    await worker.drain()
    assert await box.counts(run_id) == {("pending", None): 1}  # a retry later, not a failure
    clock.now = T0 + timedelta(seconds=31)
    await worker.drain()
    assert await box.counts(run_id) == {("sent", None): 1}
    first, again = bridge.pushes
    assert first == again  # the same push, the same id: the bridge shows it once
    async with engine.connect() as conn:
        row_id = (await conn.execute(sa.text("SELECT id FROM outbox"))).scalar_one()
    assert first["id"] == outbox_key(row_id)
    assert (first["type"], first["conversation"]) == ("push", "group-42")
    assert STORE_PROMO in first["text"]
    assert bridge.forged == 0


async def test_a_push_the_bridge_refuses_is_not_repeated(
    engine: AsyncEngine,
    knowledge: KnowledgeBase,
    bridge: FakeBridge,
    sender: PlatformSender,
    data_dir: Path,
) -> None:
    run_id = await fire_daily_deals(engine, knowledge, data_dir)
    bridge.statuses = [400]
    clock = Clock()
    worker = DeliveryWorker(engine, sender, CampaignsConfig(), owner="w1", clock=clock)
    await worker.drain()
    clock.now = T0 + timedelta(hours=1)
    await worker.drain()
    assert await Outbox(engine).counts(run_id) == {("failed", "rejected"): 1}
    assert len(bridge.pushes) == 1


async def test_a_push_interrupted_by_a_crash_is_sent_again_with_its_id(
    engine: AsyncEngine,
    knowledge: KnowledgeBase,
    bridge: FakeBridge,
    sender: PlatformSender,
    data_dir: Path,
) -> None:
    run_id = await fire_daily_deals(engine, knowledge, data_dir)
    box = Outbox(engine)
    (row,) = await box.claim("dead", limit=1, now=T0, lease_seconds=1)
    assert await box.begin_attempt(row.id or 0, "dead", now=T0, lease_seconds=1)
    # The worker died during the push: the bridge may have it. The route carries our id, so the
    # next worker pushes it again (the bridge drops the repeat) rather than giving up.
    await DeliveryWorker(
        engine, sender, CampaignsConfig(), owner="w2", clock=Clock(T0 + timedelta(seconds=5))
    ).drain()
    assert await box.counts(run_id) == {("sent", None): 1}
    (push,) = bridge.pushes
    assert push["id"] == outbox_key(row.id or 0)
