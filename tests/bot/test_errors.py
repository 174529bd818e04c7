"""Failures while answering: an outage is a failure the caller retries, a bug a polite reply.

The failure is real: the member table is renamed away under the running app, so SQLite fails
every query on it (an OperationalError, as a lost database gives), then renamed back. (Outages of
the LLM and the embeddings server are answered from the extractive path and keyword search:
tests/bot/test_llm_outage.py, tests/knowledge/test_embedding_outage.py.) The bug is an
answerer that raises something no dependency raises (our own code failing), the one stand-in.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Sequence
from datetime import datetime
from pathlib import Path

import pytest
import sqlalchemy as sa

from bot.answer import NOT_FOUND_TEXT, Answer, Turn
from bot.app import App
from bot.demo import DEMO_DIR
from bot.errors import Unavailable
from bot.inbox import Inbox
from bot.pipeline import Pipeline
from bot.types import NoReply, TextReply
from tests.bot.conftest import Chat, Clock, built_app, make_settings, pipeline_for


@pytest.fixture
async def app(data_dir: Path) -> AsyncIterator[App]:
    async for built in built_app(make_settings(data_dir)):
        yield built


async def _rename(app: App, old: str, new: str) -> None:
    async with app.engine.begin() as conn:
        await conn.execute(sa.text(f"ALTER TABLE {old} RENAME TO {new}"))


async def test_a_database_failure_is_retried_not_apologised_for(
    app: App, clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    chat = Chat(pipeline_for(app, clock))
    await app.knowledge.ingest_path(DEMO_DIR / "faq.csv")
    await _rename(app, "member", "member_away")  # the database fails every member query
    try:
        with caplog.at_level(logging.WARNING), pytest.raises(Unavailable) as raised:
            await chat.say("会员日是几号", msg_id="wx-9")
    finally:
        await _rename(app, "member_away", "member")
    assert raised.value.retry_after > 0
    [record] = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert record.name == "bot.pipeline"
    assert record.exc_info is None, "an outage is one line, not a traceback"
    assert not await app.store.session_log("web:c1"), "no apology was logged as sent"
    assert (await chat.pipeline.waiting(clock()))[0] == 1, "the message waits in the inbox"

    # the platform's retry of the same message, once the database is back, gets the answer
    again = await chat.say("会员日是几号", msg_id="wx-9")
    assert isinstance(again, TextReply)
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
