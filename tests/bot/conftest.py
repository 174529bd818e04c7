"""Fixtures for the bot core's tests: a real App (SQLite + Chroma + hash embeddings) seeded with a
small brand knowledge base, a settable clock, and a chat helper that sends InboundMessages.

The fake OpenAI server fixture is imported, not registered with ``pytest_plugins``: pytest refuses
``pytest_plugins`` in a conftest below the rootdir when the whole suite is collected.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from itertools import count
from pathlib import Path
from typing import Any

import pytest

from bot.app import App
from bot.inbox import Inbox
from bot.pipeline import Pipeline
from bot.settings import Settings
from bot.types import InboundMessage, MemberRef, Reply
from knowledge.base import KnowledgeBase
from knowledge.loaders.hashing import content_hash
from knowledge.loaders.markdown import qa_draft
from knowledge.types import ChunkDraft, DocumentMeta, Kind, SourceDocument
from tests.bot.retail_brand import seed_brand
from tests.fakes.openai_server import FakeOpenAI, openai_server

__all__ = ["openai_server"]

NOW = datetime(2026, 6, 10, 2, 0, tzinfo=UTC)  # 10:00 in Shanghai, inside the summer promotion

FAQ = (
    ("会员日是哪天？", "每月8号是会员日，会员全场9折。"),
    ("门店营业时间是几点？", "门店营业时间为每天10:00-22:00。"),
    ("运费怎么收？", "订单满199元包邮，不满199元收10元运费。"),
    ("会员有什么包邮优惠？", "会员订单满99元即可包邮。"),
    ("怎么退货？", "购买后7天内凭小票可无理由退货。"),
)
PROMOTION_TEXT = "夏日满减活动：6月1日至6月30日，全场满199减30，限线下门店。"


def document(meta: DocumentMeta, *drafts: ChunkDraft) -> SourceDocument:
    return SourceDocument(meta, drafts, content_hash(meta, drafts))


async def seed(kb: KnowledgeBase) -> None:
    """The brand's FAQ (titled 常见问题) and a June-only promotion (titled 夏日满减)."""
    faq = DocumentMeta(source="faq.md", title="常见问题")
    await kb.ingest(document(faq, *(qa_draft(q, a) for q, a in FAQ)))
    promo = DocumentMeta(
        source="summer.md", kind=Kind.PROMOTION, title="夏日满减",
        valid_from=datetime(2026, 5, 31, 16, 0, tzinfo=UTC),
        valid_to=datetime(2026, 6, 30, 15, 59, tzinfo=UTC),
    )  # fmt: skip
    await kb.ingest(document(promo, ChunkDraft(text=PROMOTION_TEXT)))


def make_settings(data_dir: Path, **overrides: Any) -> Settings:
    """Settings that ignore the environment: hash embeddings, SQLite in ``data_dir``.

    ``overrides`` are top-level values, or a section's fields as a dict merged over these
    defaults (``bot={"reply_max_bytes": 300}``). A section given as a dict reads nothing from the
    environment; the others read the process environment but no ``.env``.
    """
    values: dict[str, Any] = {
        "data_dir": data_dir, "knowledge": {"embedding": "hash"},
        "bot": {"name": "小域", "brand": "示例咖啡"},
    }  # fmt: skip
    for key, value in overrides.items():
        given = values.get(key)
        values[key] = {**given, **value} if isinstance(given, dict) else value
    return Settings(_env_file=None, **values)


@dataclass
class Clock:
    """A clock the test moves by hand."""

    now: datetime = NOW

    def __call__(self) -> datetime:
        return self.now

    def advance(self, delta: timedelta) -> None:
        self.now += delta


@dataclass
class Chat:
    """Sends a member's messages to the app's inbox (as the channels do), with fresh ids."""

    pipeline: Inbox
    member: str = "u1"
    name: str = "小明"
    conversation: str = "c1"
    channel: str = "web"
    group: bool = False
    store_id: str | None = None
    _ids: count[int] = field(default_factory=count)

    def message(
        self, text: str, *, msg_id: str | None = None, mentioned: bool = False
    ) -> InboundMessage:
        return InboundMessage(
            id=msg_id or f"{self.member}-{next(self._ids)}", channel=self.channel,
            conversation=self.conversation, sender=MemberRef(self.channel, self.member, self.name),
            text=text, received_at=NOW, is_group=self.group, mentioned_bot=mentioned,
            store_id=self.store_id,
        )  # fmt: skip

    async def say(self, text: str, *, msg_id: str | None = None, mentioned: bool = False) -> Reply:
        return await self.pipeline.handle(self.message(text, msg_id=msg_id, mentioned=mentioned))


async def built_app(settings: Settings) -> AsyncIterator[App]:
    app = await App.build(settings)
    try:
        await seed(app.knowledge)
        yield app
    finally:
        await app.close()


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
async def app(data_dir: Path) -> AsyncIterator[App]:
    """An App without an LLM (extractive answers), seeded."""
    async for app in built_app(make_settings(data_dir)):
        yield app


@pytest.fixture
async def llm_app(data_dir: Path, openai_server: FakeOpenAI) -> AsyncIterator[App]:
    """An App answering with the fake LLM (0.5 s client timeout, no retries), seeded."""
    settings = make_settings(
        data_dir,
        llm={"base_url": openai_server.base_url, "model": "fake-chat", "timeout": 0.5,
             "max_retries": 0},
    )  # fmt: skip
    async for app in built_app(settings):
        yield app


def pipeline_for(app: App, clock: Clock) -> Inbox:
    """The app's way in, on the test's clock: an inbox over a pipeline over the app's store and
    answerer (``.handle`` as the channels call it)."""
    pipeline = Pipeline(app.store, app.answerer, app.settings.bot.config(), clock)
    return Inbox(app.engine, pipeline.handle, clock=clock)


@pytest.fixture
def chat(app: App, clock: Clock) -> Chat:
    return Chat(pipeline_for(app, clock))


@pytest.fixture
def llm_chat(llm_app: App, clock: Clock) -> Chat:
    return Chat(pipeline_for(llm_app, clock))


@pytest.fixture
async def shop(data_dir: Path) -> AsyncIterator[App]:
    """An app holding the bakery brand of tests/bot/retail_brand.py (stores, products, deals)."""
    app = await App.build(make_settings(data_dir))
    try:
        await seed_brand(app.knowledge)
        yield app
    finally:
        await app.close()
