"""An LLM outage, as a member sees it: every failure mode still gets an answer in time, the
breaker stops asking a failing LLM, and answers are written by the LLM again once it is back.

Real App (SQLite, Chroma, hash embeddings), the fake OpenAI-compatible server over HTTP in each
outage mode (``tests/fakes/openai_server.py``), the breaker on a clock the test moves. The time
bounds are generous upper bounds proving "does not hang"; latency is measured in
``bench/llm_outage.py``.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from bot.app import App
from bot.types import TextReply
from knowledge.breaker import COOL_DOWN, State
from tests.bot.conftest import Chat, Clock, make_settings, pipeline_for, seed
from tests.fakes.openai_server import OUTAGES, FakeOpenAI, Outage

EXTRACTIVE_MEMBER_DAY = "每月8号是会员日，会员全场9折。\n（来源：常见问题）"
QUESTION = "会员日是哪天？"


@dataclass
class Monotonic:
    """The breakers' clock, moved by hand."""

    now: float = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


async def outage_app(
    data_dir: Path,
    server: FakeOpenAI,
    monotonic: Monotonic,
    *,
    llm: dict[str, Any] | None = None,
    bot: dict[str, Any] | None = None,
) -> AsyncIterator[App]:
    """An App answering with the fake LLM, the breakers on ``monotonic``; ``llm`` and ``bot``
    override those sections' defaults."""
    settings = make_settings(
        data_dir, llm={"base_url": server.base_url, "model": "fake-chat", **(llm or {})},
        bot=bot or {},
    )  # fmt: skip
    app = await App.build(settings, monotonic=monotonic)
    try:
        await seed(app.knowledge)
        yield app
    finally:
        await app.close()


@pytest.fixture
def monotonic() -> Monotonic:
    return Monotonic()


@pytest.fixture
async def default_app(
    data_dir: Path, openai_server: FakeOpenAI, monotonic: Monotonic
) -> AsyncIterator[App]:
    """The shipped defaults: SIYU_ANSWER_DEADLINE 8 s, SIYU_LLM_TIMEOUT 20 s, 1 retry."""
    async for app in outage_app(data_dir, openai_server, monotonic):
        yield app


@pytest.fixture
async def quick_app(
    data_dir: Path, openai_server: FakeOpenAI, monotonic: Monotonic
) -> AsyncIterator[App]:
    """A 1 s answer deadline, so that tripping the breaker in hang mode takes seconds."""
    bot = {"answer_deadline": 1.0}
    async for app in outage_app(data_dir, openai_server, monotonic, bot=bot):
        yield app


async def ask(app: App, clock: Clock, text: str = QUESTION) -> tuple[TextReply, float]:
    """The reply to ``text`` from a fresh member (no history), and how long it took."""
    someone = f"m{time.monotonic_ns()}"
    chat = Chat(pipeline_for(app, clock), member=someone, conversation=someone)
    started = time.monotonic()
    reply = await chat.say(text)
    assert isinstance(reply, TextReply), reply
    return reply, time.monotonic() - started


@pytest.mark.parametrize("mode", OUTAGES)
async def test_every_outage_mode_is_answered_extractively_within_ten_seconds(
    default_app: App, openai_server: FakeOpenAI, clock: Clock, mode: Outage
) -> None:
    openai_server.outage(mode)
    reply, took = await ask(default_app, clock)
    assert (reply.text, reply.answered_by) == (EXTRACTIVE_MEMBER_DAY, "extractive")
    assert took < 10.0  # hang and drip: the 8 s answer deadline, not 20 s per read or 60 s
    requests = len(openai_server.chat_requests)
    if mode == "down":
        assert requests == 2  # SIYU_LLM_MAX_RETRIES=1: one retry after a short back-off
    elif mode == "rate_limited":
        assert requests == 1  # Retry-After: 60 does not fit in the deadline: no retry, no wait
    else:
        assert requests >= 1


async def test_drip_is_cut_by_one_overall_deadline_not_per_read(
    data_dir: Path, openai_server: FakeOpenAI, monotonic: Monotonic, clock: Clock
) -> None:
    """A 1 s LLM timeout against a body dripping a byte every second: each read arrives within
    the httpx read timeout, so only an overall deadline ends the call."""
    openai_server.outage("drip")
    llm = {"timeout": 1.0, "max_retries": 0}
    async for app in outage_app(data_dir, openai_server, monotonic, llm=llm):
        reply, took = await ask(app, clock)
        assert reply.answered_by == "extractive"
        assert took < 4.0


@pytest.mark.parametrize("mode", OUTAGES)
async def test_three_failures_open_the_breaker_and_answers_skip_the_llm(
    quick_app: App, openai_server: FakeOpenAI, clock: Clock, mode: Outage
) -> None:
    openai_server.outage(mode)
    for _ in range(3):
        reply, _ = await ask(quick_app, clock)
        assert reply.answered_by == "extractive"
    assert quick_app.llm_breaker.state is State.OPEN
    sent = len(openai_server.chat_requests)
    reply, took = await ask(quick_app, clock)
    assert (reply.text, reply.answered_by) == (EXTRACTIVE_MEMBER_DAY, "extractive")
    assert len(openai_server.chat_requests) == sent  # not asked at all while open
    assert took < 1.0  # no deadline waited out


@pytest.mark.parametrize("mode", ["down", "hang"])
async def test_answers_are_written_by_the_llm_again_once_it_is_back(
    quick_app: App, openai_server: FakeOpenAI, clock: Clock, monotonic: Monotonic, mode: Outage
) -> None:
    openai_server.outage(mode)
    for _ in range(3):
        await ask(quick_app, clock)
    openai_server.up()
    reply, _ = await ask(quick_app, clock)
    assert reply.answered_by == "extractive"  # still cooling down: the LLM is not asked yet
    sent = len(openai_server.chat_requests)

    monotonic.advance(COOL_DOWN)
    openai_server.reply("会员日是每月8号 [1]。")
    reply, _ = await ask(quick_app, clock)
    assert reply.answered_by == "llm"  # the probe went through and succeeded
    assert len(openai_server.chat_requests) == sent + 1
    assert quick_app.llm_breaker.state is State.CLOSED
    reply, _ = await ask(quick_app, clock)
    assert reply.answered_by == "llm"


async def test_a_failed_probe_opens_the_breaker_again(
    quick_app: App, openai_server: FakeOpenAI, clock: Clock, monotonic: Monotonic
) -> None:
    openai_server.outage("down")
    for _ in range(3):
        await ask(quick_app, clock)
    monotonic.advance(COOL_DOWN)
    sent = len(openai_server.chat_requests)
    reply, _ = await ask(quick_app, clock)  # the probe: still down
    assert reply.answered_by == "extractive"
    assert len(openai_server.chat_requests) > sent
    assert quick_app.llm_breaker.state is State.OPEN
    sent = len(openai_server.chat_requests)
    await ask(quick_app, clock)
    assert len(openai_server.chat_requests) == sent  # open for another cool-down


async def test_a_retry_after_that_fits_the_deadline_is_honoured(
    default_app: App, openai_server: FakeOpenAI, clock: Clock
) -> None:
    openai_server.fail(429, "slow down", retry_after=1.0)
    openai_server.reply("会员日是每月8号 [1]。")
    reply, took = await ask(default_app, clock)
    assert reply.answered_by == "llm"
    assert len(openai_server.chat_requests) == 2
    assert took >= 1.0  # the retry waited as the server asked


async def test_a_rejected_request_is_not_an_outage(
    quick_app: App, openai_server: FakeOpenAI, clock: Clock
) -> None:
    """A 400 (a wrong model name, say) is the LLM answering: extractive, never retried, and it
    does not open the breaker."""
    openai_server.fail(400, "unknown model", times=4)
    for _ in range(4):
        reply, _ = await ask(quick_app, clock)
        assert reply.answered_by == "extractive"
    assert len(openai_server.chat_requests) == 4
    assert quick_app.llm_breaker.state is State.CLOSED
