"""What the logs never hold: a member's words in SQL parameters or database errors, and what the
LLM endpoint sent back when a call fails (bot.redact)."""

from __future__ import annotations

import logging
from pathlib import Path

import httpx
import openai
import pytest
import sqlalchemy as sa
from pydantic import BaseModel, ValidationError

from bot.db import create_engine
from bot.redact import llm_failure
from bot.types import TextReply
from tests.bot.conftest import Chat
from tests.fakes.openai_server import FakeOpenAI

SECRET = "我的会员卡密码是314159"


async def test_sql_parameters_stay_out_of_info_logs_and_errors(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'db.sqlite'}")
    try:
        # The root at INFO (SIYU_LOG_LEVEL=INFO), and SQLAlchemy's statements turned on too, as
        # an operator would to see the SQL (SQLAlchemy holds its own logger at WARNING).
        with caplog.at_level(logging.INFO), caplog.at_level(logging.INFO, "sqlalchemy.engine"):
            async with engine.connect() as conn:
                assert (await conn.execute(sa.text("SELECT :x"), {"x": SECRET})).scalar() == SECRET
                with pytest.raises(sa.exc.OperationalError) as failed:
                    await conn.execute(sa.text("SELECT no_such_column, :x"), {"x": SECRET})
    finally:
        await engine.dispose()
    assert "SELECT" in caplog.text, "SQLAlchemy logged at INFO, so the check means something"
    assert "hidden" in caplog.text
    assert SECRET not in caplog.text
    assert "no_such_column" in str(failed.value)
    assert SECRET not in str(failed.value), "a database error is logged with its text"


async def test_a_member_message_is_not_logged_at_info(
    chat: Chat, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO):
        reply = await chat.say(f"会员日是哪天？{SECRET}")
    assert isinstance(reply, TextReply)
    assert SECRET not in caplog.text


@pytest.mark.parametrize(("status", "code"), [(400, "invalid_request_error"), (500, None)])
async def test_a_failed_llm_call_is_logged_without_the_response(
    llm_chat: Chat,
    openai_server: FakeOpenAI,
    caplog: pytest.LogCaptureFixture,
    status: int,
    code: str | None,
) -> None:
    # Some providers put the refused input in the error; it holds the member's words.
    openai_server.fail(status, f"content filter: {SECRET}")
    with caplog.at_level(logging.WARNING, logger="bot.llm"):
        reply = await llm_chat.say("会员日是哪天？")
    assert isinstance(reply, TextReply)
    assert reply.answered_by == "extractive"  # the fallback
    [warning] = [r.getMessage() for r in caplog.records if r.name == "bot.llm"]
    assert f"HTTP {status}" in warning
    assert SECRET not in caplog.text


def test_llm_failure_keeps_transport_errors_and_drops_quoted_output() -> None:
    quoted = ValueError(f"Unexpected response type: got str: '<html>{SECRET}</html>'")
    assert llm_failure(quoted) == (
        f"ValueError (message of {len(str(quoted))} characters not logged: it may quote the model)"
    )

    class Completion(BaseModel):
        content: int

    with pytest.raises(ValidationError) as invalid:
        Completion.model_validate({"content": SECRET})
    assert SECRET in str(invalid.value)
    assert SECRET not in llm_failure(invalid.value)
    request = httpx.Request("POST", "http://127.0.0.1:9/v1/chat/completions")
    refused = openai.APIConnectionError(request=request)
    assert llm_failure(refused) == "APIConnectionError: Connection error."
    assert llm_failure(httpx.ConnectError("[Errno 111] Connection refused")) == (
        "ConnectError: [Errno 111] Connection refused"
    )
    response = httpx.Response(429, request=request, json={"error": {"message": SECRET}})
    limited = openai.RateLimitError(SECRET, response=response, body={"code": "rate_limit"})
    assert llm_failure(limited) == "RateLimitError: HTTP 429 (rate_limit)"
