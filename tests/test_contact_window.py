"""Issue 10's test: a member who asked once gets at most 5 messages within 48 hours, whatever mix
of answers (several parts each), handoff notices and campaign pushes — on kf and on the Official
Account, counted at the fake platform over real HTTP. A new message opens a new window.

Everything is real but the platform: the core (SQLite, Chroma, hash embeddings), the kf and
Official Account sub-applications behind real callbacks, the planner reading the addresses the
adapters recorded, and the delivery worker sending through the platform sender. The channels,
the planner and the worker all run on the fake platform's clock.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest
from pydantic import SecretStr

from adapters.wecom.config import OfficialAccountConfig, WeComSettings
from adapters.wecom.kf import KF_RUNTIME, create_kf_app
from adapters.wecom.official import OA_CHANNEL, create_official_app
from adapters.wecom.outbound import PlatformSender, platform_sender
from adapters.wecom.xmlwire import build_xml, parse_xml
from bot.app import App
from bot.commands import HANDOFF_TEXT
from bot.contact import SENDS_PER_WINDOW, WINDOW
from bot.demo import DEMO_DIR
from bot.inbox import Inbox
from bot.settings import Settings
from bot.types import Address, InboundMessage, Reply, TextReply
from campaigns.config import CampaignsConfig, RateLimits
from campaigns.copy import CopyWriter
from campaigns.outbox import Outbox
from campaigns.planner import Planner, PlanReport
from campaigns.registry import create_campaign
from campaigns.worker import DeliveryWorker
from knowledge.types import ChunkDraft, DocumentMeta, Kind
from tests.adapters.wecom.test_kf import KFID, account, callback_body
from tests.adapters.wecom.test_kf import post as post_kf
from tests.adapters.wecom.wire import plain_query, post, serve, text_fields
from tests.bot.conftest import document
from tests.fakes.wecom_server import FakePlatform, wecom_server

__all__ = ["wecom_server"]

LONG_QUESTION = "详细说说会员权益"
SLOW_QUESTION = "会员权益有哪些？慢慢说"
GUARD_S = 10.0
"""Only stops a broken test from hanging."""
LONG_ANSWER = "会员每周三全场九五折，积分可抵现。" * 100  # 5,100 bytes: three messages
OA_TOKEN = "oa-callback-token"
OPENID = "o-member-1"
KF_SEND = "/cgi-bin/kf/send_msg"
OA_SEND = "/cgi-bin/message/custom/send"
CONFIG = CampaignsConfig(
    cap_per_day=100, cap_per_week=100,
    rates=RateLimits(kf_per_minute=60_000, oa_per_minute=60_000),
)  # fmt: skip
"""Caps out of the way: the window is what this test is about."""


@dataclass
class Brand:
    """The running brand: its core, channels, planner and delivery worker."""

    core: App
    fake: FakePlatform
    kf_url: str
    oa_url: str
    kf: object
    oa: object
    planner: Planner
    worker: DeliveryWorker
    handled: asyncio.Event
    """Set when the pipeline has handled a :data:`SLOW_QUESTION`."""
    slow: asyncio.Event
    """Its long answer is returned only once this is set."""

    def now(self) -> datetime:
        return datetime.fromtimestamp(self.fake.clock(), UTC)

    async def kf_writes(self, text: str) -> None:
        """The kf member writes ``text``; the channel pulls it and answers."""
        self.fake.add_kf_message("wm-1", text, open_kfid=KFID)
        assert await post_kf(self.kf_url, *callback_body(self.fake)) == (200, b"")
        await self.kf[KF_RUNTIME].channel.drain()  # type: ignore[index]

    async def oa_writes(self, text: str, msg_id: str) -> str:
        """The Official Account member writes ``text``; the passive reply's text."""
        self.fake.add_oa_message(OPENID)
        fields = text_fields(OPENID, "gh_brand", text, msg_id)
        status, body = await post(self.oa_url, build_xml(fields).encode(), plain_query(OA_TOKEN))
        assert status == 200
        await self.oa[OA_CHANNEL].tasks.drain()  # type: ignore[index]
        return parse_xml(body)["Content"]

    async def push(self, run_key: str) -> PlanReport:
        """Plan a daily-deals run now (it is not delivered until :meth:`deliver`)."""
        campaign = await create_campaign(
            self.core.engine, name=run_key, kind="daily_deals", now=self.now()
        )
        return await self.planner.plan(campaign, now=self.now(), run_key=run_key)

    def kf_received(self) -> list[str]:
        return [s["text"]["content"] for s in self.fake.kf_sent if s["touser"] == "wm-1"]

    def oa_received(self) -> list[str]:
        return [s["text"]["content"] for s in self.fake.custom_sent if s["touser"] == OPENID]


@pytest.fixture
async def brand(tmp_path: Path, wecom_server: FakePlatform) -> AsyncIterator[Brand]:
    settings = Settings(
        _env_file=None, data_dir=tmp_path / "data", llm={},
        knowledge={"embedding": "hash", "refresh_seconds": 0},
        bot={"handoff_hours": "00:00-00:00"},
    )  # fmt: skip
    core = await App.build(settings)
    fake = wecom_server
    clock = lambda: datetime.fromtimestamp(fake.clock(), UTC)  # noqa: E731
    oa_account = OfficialAccountConfig(
        name="brand", token=SecretStr(OA_TOKEN), app_id=fake.oa_app_id,
        secret=SecretStr(fake.oa_secret), mode="plain",
    )  # fmt: skip

    handled, slow = asyncio.Event(), asyncio.Event()
    slow.set()

    async def handle(msg: InboundMessage) -> Reply:
        """The real pipeline; questions about membership get an answer of three messages."""
        reply = await core.pipeline.handle(msg)
        if msg.text == SLOW_QUESTION:
            handled.set()
            await slow.wait()
        if msg.text in (LONG_QUESTION, SLOW_QUESTION) and isinstance(reply, TextReply):
            return TextReply(LONG_ANSWER)
        return reply

    async with AsyncExitStack() as stack:
        stack.push_async_callback(core.close)
        await core.knowledge.ingest_path(DEMO_DIR / "faq.csv")
        await core.knowledge.ingest(promotion())
        inbox = Inbox(core.engine, handle)
        kf = create_kf_app(
            inbox, [account(fake)], api_base=fake.url, engine=core.engine, clock=clock,
            backoff=0.0,
        )  # fmt: skip
        oa = create_official_app(
            inbox, [oa_account], api_base=fake.url, ledger=core.store.contacts, clock=clock
        )
        kf_url = await stack.enter_async_context(serve("/wecom/kf/", kf)) + "shop"
        oa_url = await stack.enter_async_context(serve("/wechat/oa/", oa)) + "brand"
        sender: PlatformSender = await stack.enter_async_context(
            platform_sender(
                WeComSettings(
                    _env_file=None, kf=[account(fake)], official_accounts=[oa_account],
                    api_base=fake.url, wechat_api_base=fake.url,
                )
            )
        )  # fmt: skip
        copy = CopyWriter(CONFIG, None, brand="禾町")
        stack.push_async_callback(copy.aclose)
        planner = Planner(core.engine, core.knowledge, copy, CONFIG)
        worker = DeliveryWorker(core.engine, sender, CONFIG, owner="w1", clock=clock)
        yield Brand(core, fake, kf_url, oa_url, kf, oa, planner, worker, handled, slow)


def promotion() -> object:
    """A chain-wide promotion valid around the fake platform's clock (late February 2026)."""
    meta = DocumentMeta(
        source="feb.md", kind=Kind.PROMOTION, title="二月会员日",
        valid_from=datetime(2026, 2, 1, tzinfo=UTC), valid_to=datetime(2026, 3, 31, tzinfo=UTC),
    )  # fmt: skip
    return document(meta, ChunkDraft(text="二月会员日：全场饮品第二杯半价。"))


async def test_one_question_gets_at_most_five_messages_on_kf_and_the_official_account(
    brand: Brand,
) -> None:
    await brand.kf_writes(LONG_QUESTION)
    passive = await brand.oa_writes(LONG_QUESTION, "9001")
    assert len(brand.kf_received()) == 3  # the answer, in three messages
    assert passive  # the first part as the passive reply: not a customer-service message
    assert len(brand.oa_received()) == 2  # the rest through custom/send

    # Three pushes planned while kf has 2 sends left and the OA 3: the worker sends what fits.
    reports = [await brand.push(run) for run in ("r1", "r2", "r3")]
    assert all(dict(r.by_route) == {"kf": 1, "oa": 1} for r in reports)
    await brand.worker.drain()

    assert len(brand.kf_received()) == SENDS_PER_WINDOW
    assert len(brand.oa_received()) == SENDS_PER_WINDOW
    # Never beyond: the platform was not even asked for a sixth (it would have refused it).
    assert brand.fake.count(KF_SEND) == SENDS_PER_WINDOW
    assert brand.fake.count(OA_SEND) == SENDS_PER_WINDOW
    # Rows go out in plan order: r3's kf row found the window used up.
    outcomes = await Outbox(brand.core.engine).counts(reports[-1].run_id or 0)
    assert outcomes == {("skipped", "window_closed"): 1, ("sent", None): 1}
    # Later runs plan nothing 1:1: both windows are used up.
    assert (await brand.push("r4")).not_planned == {"window_closed": 2}

    # A new message, a minute later, opens a new window: the handoff notice uses one send of it.
    brand.fake.clock.advance(60)
    await brand.kf_writes("转人工")
    assert brand.kf_received()[-1] == HANDOFF_TEXT
    kf_address = Address("kf", "shop", "wm-1", chat=KFID)
    assert await brand.core.store.contacts.remaining(kf_address, brand.now()) == 4
    await brand.oa_writes("谢谢", "9002")
    report = await brand.push("r5")
    await brand.worker.drain()
    assert len(brand.oa_received()) == SENDS_PER_WINDOW + 1
    # A person serves the kf member now: the push is skipped, the window keeps its sends.
    outcomes = await Outbox(brand.core.engine).counts(report.run_id or 0)
    assert outcomes == {("skipped", "human_serving"): 1, ("sent", None): 1}
    assert await brand.core.store.contacts.remaining(kf_address, brand.now()) == 4

    # 48 hours after the last message the windows are closed: nothing is planned or sent.
    brand.fake.clock.advance(WINDOW.total_seconds())
    assert (await brand.push("r6")).not_planned == {"window_closed": 2}
    assert await brand.worker.drain() == 0
    assert brand.fake.count(OA_SEND) == SENDS_PER_WINDOW + 1


async def test_pushes_during_a_slow_answer_leave_it_what_the_window_allows(brand: Brand) -> None:
    """The member's message opened the window; while the answer is still being written the
    pushes use 4 sends of it: the answer is shortened to the one left, nothing beyond 5."""
    brand.slow.clear()
    writing = asyncio.create_task(brand.oa_writes(SLOW_QUESTION, "9101"))
    await asyncio.wait_for(brand.handled.wait(), GUARD_S)  # the pipeline opened the window
    for run in ("r1", "r2", "r3", "r4"):
        await brand.push(run)
    await brand.worker.drain()
    assert len(brand.oa_received()) == 4
    brand.slow.set()
    passive = await asyncio.wait_for(writing, GUARD_S)
    assert LONG_ANSWER.startswith(passive)  # the first part, passively: not counted
    received = brand.oa_received()
    assert len(received) == SENDS_PER_WINDOW
    assert received[-1].endswith("…")  # the rest, cut to the one send left
    assert brand.fake.count(OA_SEND) == SENDS_PER_WINDOW
