"""A failure while answering never escapes ``Pipeline.handle``: logged once, polite reply.

The failure is real: the knowledge base embeds with an OpenAI-compatible endpoint (the fake
server), and the fake fails the query's embedding request.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bot.answer import NOT_FOUND_TEXT
from bot.app import App
from bot.types import NoReply, TextReply
from knowledge.errors import EmbeddingError
from tests.bot.conftest import Chat, Clock, built_app, make_settings, pipeline_for
from tests.fakes.openai_server import FakeOpenAI


@pytest.fixture
async def remote_app(data_dir: Path, openai_server: FakeOpenAI) -> AsyncIterator[App]:
    settings = make_settings(
        data_dir,
        knowledge={"embedding": "openai", "embedding_base_url": openai_server.base_url,
                   "embedding_model": "fake-embed"},
    )  # fmt: skip
    async for app in built_app(settings):
        yield app


async def test_answering_failure_gets_a_polite_reply_and_is_logged_once(
    remote_app: App, clock: Clock, openai_server: FakeOpenAI, caplog: pytest.LogCaptureFixture
) -> None:
    chat = Chat(pipeline_for(remote_app, clock))
    openai_server.fail_embeddings(400, "bad request")
    with caplog.at_level(logging.WARNING):
        reply = await chat.say("会员日是几号", msg_id="wx-9")
    assert reply == TextReply(NOT_FOUND_TEXT, answered_by="error")
    [record] = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert record.name == "bot.pipeline"
    assert record.exc_info is not None
    assert isinstance(record.exc_info[1], EmbeddingError)

    # dedupe recorded the message before the failure: a platform retry is not answered twice
    assert await chat.say("会员日是几号", msg_id="wx-9") == NoReply("duplicate")
    # and the next message is answered normally
    again = await chat.say("会员日是几号")
    assert isinstance(again, TextReply)
    assert again.answered_by == "extractive"
    assert again.text.startswith("每月8号是会员日")


async def test_group_failure_reply_quotes_the_asker(
    remote_app: App, clock: Clock, openai_server: FakeOpenAI
) -> None:
    group = Chat(pipeline_for(remote_app, clock), conversation="room-1", group=True)
    openai_server.fail_embeddings(400)
    reply = await group.say("@小域 会员日是几号", mentioned=True)
    assert reply == TextReply(NOT_FOUND_TEXT, quote="小明", answered_by="error")
