"""LLM answering through the pipeline against the fake OpenAI-compatible server."""

from __future__ import annotations

import logging
import socket
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import pytest

from bot.answer import NOT_FOUND_TEXT, ExtractiveAnswerer
from bot.app import App
from bot.llm import LLMAnswerer
from bot.types import TextReply
from tests.bot.conftest import NOW, Chat, Clock, built_app, make_settings, pipeline_for
from tests.fakes.openai_server import FakeOpenAI

EXTRACTIVE_MEMBER_DAY = "每月8号是会员日，会员全场9折。\n（来源：常见问题）"


def answer(reply: object) -> TextReply:
    assert isinstance(reply, TextReply), reply
    return reply


async def test_llm_answer_cites_the_numbered_sources(
    llm_chat: Chat, llm_app: App, openai_server: FakeOpenAI
) -> None:
    openai_server.reply("会员日是每月8号 [1]，门店10:00-22:00营业【2】。")
    reply = answer(await llm_chat.say("会员日是哪天？"))
    assert reply.answered_by == "llm"
    hits = (await llm_app.knowledge.search("会员日是哪天？", at=NOW)).hits
    assert reply.citations == (hits[0].citation, hits[1].citation)
    # The member reads no [n] marks and one source line, each title once, no file names.
    assert reply.text == "会员日是每月8号，门店10:00-22:00营业。\n（来源：常见问题）"
    [request] = openai_server.chat_requests  # no history: no rewrite call
    assert request.body["model"] == "fake-chat"
    assert "示例咖啡" in request.text  # the brand is in the system prompt
    assert "逐字引用" in request.text  # prices and dates are quoted verbatim
    assert "资料中没有相关信息" in request.text  # says so when the sources do not cover it
    assert "[1] 常见问题\n问：会员日是哪天？\n答：每月8号是会员日，会员全场9折。" in request.text
    assert request.last_user_text.endswith("会员问题：会员日是哪天？")


async def test_uncited_llm_answer_cites_the_top_hit(
    llm_chat: Chat, llm_app: App, openai_server: FakeOpenAI
) -> None:
    openai_server.reply(
        "会员日在每月8号。",
    )
    reply = answer(await llm_chat.say("会员日是哪天？"))
    best = (await llm_app.knowledge.search("会员日是哪天？", at=NOW)).best
    assert best is not None
    assert reply.citations == (best.citation,)
    assert reply.text == "会员日在每月8号。\n（来源：常见问题）"


async def test_out_of_range_citations_are_ignored(
    llm_chat: Chat, llm_app: App, openai_server: FakeOpenAI
) -> None:
    openai_server.reply("会员日是每月8号 [9] [2]。")
    reply = answer(await llm_chat.say("会员日是哪天？"))
    hits = (await llm_app.knowledge.search("会员日是哪天？", at=NOW)).hits
    assert reply.citations == (hits[1].citation,)


async def test_follow_up_is_rewritten_with_history_before_retrieval(
    llm_chat: Chat, llm_app: App, openai_server: FakeOpenAI
) -> None:
    openai_server.reply("订单满199元包邮 [1]。")
    first = answer(await llm_chat.say("运费怎么收？"))
    openai_server.reply("会员有什么包邮优惠？", "会员订单满99元即可包邮 [1]。")
    second = answer(await llm_chat.say("那会员呢？"))

    rewrite = openai_server.chat_requests[1]
    assert "改写" in rewrite.text
    assert "会员：运费怎么收？" in rewrite.text  # the history went to the rewrite call
    assert f"客服：{first.text}" in rewrite.text
    assert "最新问题：那会员呢？" in rewrite.text

    answer_call = openai_server.chat_requests[2]
    assert answer_call.last_user_text.endswith("会员问题：会员有什么包邮优惠？")
    assert "会员订单满99元即可包邮。" in answer_call.text  # retrieved with the rewritten question
    member_shipping = (await llm_app.knowledge.search("会员有什么包邮优惠？", at=NOW)).best
    assert member_shipping is not None
    assert second.citations == (member_shipping.citation,)
    assert second.answered_by == "llm"


async def test_not_found_does_not_ask_the_llm_to_answer(
    llm_chat: Chat, openai_server: FakeOpenAI
) -> None:
    reply = answer(await llm_chat.say("量子力学是什么"))
    assert (reply.text, reply.answered_by) == (NOT_FOUND_TEXT, "not_found")
    # Only the retail writer's offer of its tools (tests/bot/test_retail_llm.py); no answer prompt.
    [request] = openai_server.chat_requests
    assert request.tool_names
    assert "资料：" not in request.text


async def test_llm_http_500_falls_back_to_the_extractive_answer(
    llm_chat: Chat, openai_server: FakeOpenAI, caplog: pytest.LogCaptureFixture
) -> None:
    openai_server.fail(500)
    with caplog.at_level(logging.WARNING, logger="bot.llm"):
        reply = answer(await llm_chat.say("会员日是哪天？"))
    assert (reply.text, reply.answered_by) == (EXTRACTIVE_MEMBER_DAY, "extractive")
    assert reply.citations[0].title == "常见问题"
    assert len(openai_server.chat_requests) == 1  # max_retries=0, no second retrieval call
    assert len([r for r in caplog.records if r.name == "bot.llm"]) == 1  # logged once


async def test_llm_timeout_falls_back_to_the_extractive_answer(
    llm_chat: Chat, openai_server: FakeOpenAI
) -> None:
    openai_server.delay(5.0)  # the client gives up after 0.5 s
    reply = answer(await llm_chat.say("会员日是哪天？"))
    assert (reply.text, reply.answered_by) == (EXTRACTIVE_MEMBER_DAY, "extractive")


@pytest.mark.parametrize("script", ["malformed", "empty"])
async def test_unusable_llm_output_falls_back(
    llm_chat: Chat, openai_server: FakeOpenAI, script: str
) -> None:
    if script == "malformed":
        openai_server.malformed()
    else:
        openai_server.reply("   ")
    reply = answer(await llm_chat.say("会员日是哪天？"))
    assert (reply.text, reply.answered_by) == (EXTRACTIVE_MEMBER_DAY, "extractive")
    assert openai_server.pending == 0


async def test_failed_rewrite_answers_the_original_question_extractively(
    llm_chat: Chat, openai_server: FakeOpenAI
) -> None:
    openai_server.reply("订单满199元包邮 [1]。")
    await llm_chat.say("运费怎么收？")
    openai_server.fail(500)
    reply = answer(await llm_chat.say("会员日是哪天？"))
    assert (reply.text, reply.answered_by) == (EXTRACTIVE_MEMBER_DAY, "extractive")
    assert len(openai_server.chat_requests) == 2  # the failed rewrite; the LLM is not retried


@pytest.fixture
async def refused_app(data_dir: Path) -> AsyncIterator[App]:
    """An App whose LLM endpoint refuses connections (nothing listens on the port)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    settings = make_settings(
        data_dir,
        llm={"base_url": f"http://127.0.0.1:{port}/v1", "model": "fake-chat", "timeout": 0.5,
             "max_retries": 0},
    )  # fmt: skip
    async for app in built_app(settings):
        yield app


async def test_refused_connection_falls_back(refused_app: App, clock: Clock) -> None:
    chat = Chat(pipeline_for(refused_app, clock))
    reply = answer(await chat.say("会员日是哪天？"))
    assert (reply.text, reply.answered_by) == (EXTRACTIVE_MEMBER_DAY, "extractive")


async def test_app_chooses_the_answerer_from_settings(
    llm_app: App, tmp_path: Path, openai_server: FakeOpenAI
) -> None:
    assert isinstance(llm_app.answerer.fallback, LLMAnswerer)
    openai_server.reply("**会员日**是每月8号 [1]。")
    preview = await llm_app.preview_answer("会员日是哪天？", at=NOW)
    assert preview == "会员日是每月8号。\n（来源：常见问题）"  # as sent: Markdown and [1] gone
    async for plain in built_app(make_settings(tmp_path / "plain")):
        assert isinstance(plain.answerer.fallback, ExtractiveAnswerer)
        assert await plain.preview_answer("会员日是哪天？", at=NOW) == EXTRACTIVE_MEMBER_DAY


async def test_llm_saying_the_sources_miss_the_question_counts_as_not_found(
    llm_chat: Chat, openai_server: FakeOpenAI
) -> None:
    openai_server.reply("抱歉，资料中没有相关信息，建议回复“人工”转接客服。")
    reply = answer(await llm_chat.say("会员日是哪天？"))
    assert reply.answered_by == "not_found"
    assert reply.citations == ()
    assert "来源" not in reply.text


async def test_history_older_than_the_session_window_is_not_used(
    llm_chat: Chat, clock: Clock, openai_server: FakeOpenAI
) -> None:
    openai_server.reply("订单满199元包邮 [1]。")
    await llm_chat.say("运费怎么收？")
    clock.advance(timedelta(minutes=31))  # a new conversation: nothing to rewrite against
    openai_server.reply("会员日是每月8号 [1]。")
    reply = answer(await llm_chat.say("会员日是哪天？"))
    assert reply.answered_by == "llm"
    assert len(openai_server.chat_requests) == 2
    assert "改写" not in openai_server.chat_requests[1].text


async def test_llm_answer_reads_as_plain_text_with_one_source_line(
    llm_chat: Chat, openai_server: FakeOpenAI
) -> None:
    written = "## 会员日\n**每月8号** [1]：\n- 全场9折 [1]\n* 积分双倍\n\n（来源：faq.md [1]）"
    openai_server.reply(written)  # Markdown, [n] marks and a source line of its own
    reply = answer(await llm_chat.say("会员日是哪天？"))
    assert reply.answered_by == "llm"
    assert reply.text == "会员日\n每月8号：\n· 全场9折\n· 积分双倍\n（来源：常见问题）"
    assert reply.text.count("来源") == 1
