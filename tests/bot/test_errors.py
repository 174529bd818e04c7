"""Failures while answering: an outage is a failure the caller retries, a bug a polite reply.

The outage is real: the knowledge base embeds with an OpenAI-compatible endpoint (the fake
server), and the fake fails the query's embedding request. The bug is an answerer that raises
something no dependency raises (our own code failing), the one stand-in here.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Sequence
from datetime import datetime
from pathlib import Path

import pytest

from bot.answer import NOT_FOUND_TEXT, Answer, Turn
from bot.app import App
from bot.errors import Unavailable
from bot.inbox import Inbox
from bot.pipeline import Pipeline
from bot.types import NoReply, TextReply
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


async def test_an_embeddings_outage_is_retried_not_apologised_for(
    remote_app: App, clock: Clock, openai_server: FakeOpenAI, caplog: pytest.LogCaptureFixture
) -> None:
    chat = Chat(pipeline_for(remote_app, clock))
    openai_server.fail_embeddings(400, "refused")  # one failed request: 4xx are not retried
    with caplog.at_level(logging.WARNING), pytest.raises(Unavailable) as raised:
        await chat.say("会员日是几号", msg_id="wx-9")
    assert raised.value.retry_after > 0
    [record] = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert record.name == "bot.pipeline"
    assert record.exc_info is None, "an outage is one line, not a traceback"
    assert not await remote_app.store.session_log("web:c1"), "no apology was logged as sent"
    assert (await chat.pipeline.waiting(clock()))[0] == 1, "the message waits in the inbox"

    # the platform's retry of the same message, once the server is back, gets the answer
    again = await chat.say("会员日是几号", msg_id="wx-9")
    assert isinstance(again, TextReply)
    assert again.answered_by == "extractive"
    assert again.text.startswith("每月8号是会员日")
    assert await chat.say("会员日是几号", msg_id="wx-9") == NoReply("duplicate")
    assert (await chat.pipeline.waiting(clock()))[0] == 0


class _Broken:
    """An answerer with a bug in it."""

    uses_history = False

    async def answer(
        self, question: str, history: Sequence[Turn], *, store_id: str | None, at: datetime
    ) -> Answer:
        raise KeyError("a bug")


async def test_a_bug_gets_a_polite_reply_logged_once_with_its_traceback(
    app: App, clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    pipeline = Pipeline(app.store, _Broken(), app.settings.bot.config(), clock)
    group = Chat(Inbox(app.engine, pipeline.handle, clock=clock), conversation="room-1", group=True)
    with caplog.at_level(logging.WARNING):
        reply = await group.say("@小域 会员日是几号", mentioned=True, msg_id="wx-10")
    assert reply == TextReply(NOT_FOUND_TEXT, quote="小明", answered_by="error")
    [record] = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert record.exc_info is not None
    assert isinstance(record.exc_info[1], KeyError)
    # a retry of it is not answered twice
    assert await group.say("@小域 会员日是几号", mentioned=True, msg_id="wx-10") == NoReply(
        "duplicate"
    )
