"""The durable inbox on real SQLite, and on real PostgreSQL when ``SIYU_TEST_POSTGRES_URL`` is set:
recorded before answered, answered once, handed out once, in order per conversation, taken over
when its owner dies, and an outage is a failure to retry.

Two inboxes on two engines (``twin_engine``) are what two processes would have. The answer
function is the test's (it counts and orders answers); the pipeline behind the inbox is tested
with the real one in test_pipeline.py and test_errors.py.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.db import create_engine
from bot.errors import Unavailable
from bot.inbox import (
    LEASE,
    Inbox,
    message_fields,
    reply_fields,
    reply_from_fields,
    stored_message,
)
from bot.types import (
    Address,
    HandoffReply,
    InboundMessage,
    MemberRef,
    NoReply,
    Reply,
    TextReply,
)
from knowledge.types import Citation
from tests.sql import BACKENDS, sql_engine, twin_engine

T0 = datetime(2026, 6, 10, 2, 0, tzinfo=UTC)


@pytest.fixture(params=BACKENDS)
async def engine(request: pytest.FixtureRequest, data_dir: Path) -> AsyncIterator[AsyncEngine]:
    async with sql_engine(request.param, data_dir) as engine:
        yield engine


@pytest.fixture
async def twin(engine: AsyncEngine) -> AsyncIterator[AsyncEngine]:
    other = await twin_engine(engine)
    try:
        yield other
    finally:
        await other.dispose()


def message(msg_id: str, text: str = "会员日是哪天？", *, member: str = "u1") -> InboundMessage:
    return InboundMessage(
        id=msg_id, channel="webhook.shop", conversation=member, text=text, received_at=T0,
        sender=MemberRef("webhook.shop", member), address=Address("oa", "brand", member),
    )  # fmt: skip


@dataclass
class Answers:
    """The answer function: counts what it answered, in order; ``gate`` holds answers back."""

    answered: list[str] = field(default_factory=list)
    gate: asyncio.Event = field(default_factory=asyncio.Event)
    started: asyncio.Event = field(default_factory=asyncio.Event)

    def __post_init__(self) -> None:
        self.gate.set()

    async def __call__(self, msg: InboundMessage) -> Reply:
        self.started.set()
        await self.gate.wait()
        self.answered.append(msg.id)
        return TextReply(f"answer to {msg.text}", answered_by="extractive")


@dataclass
class Clock:
    now: datetime = T0

    def __call__(self) -> datetime:
        return self.now


async def test_a_message_is_answered_once_and_its_retries_are_duplicates(
    engine: AsyncEngine,
) -> None:
    answers = Answers()
    inbox = Inbox(engine, answers)
    first = await inbox.handle(message("m1"))
    assert first == TextReply("answer to 会员日是哪天？", answered_by="extractive")
    assert await inbox.handle(message("m1")) == NoReply("duplicate")
    assert answers.answered == ["m1"]
    assert await inbox.waiting() == (0, timedelta(0))


async def test_concurrent_copies_on_two_processes_get_one_answer(
    engine: AsyncEngine, twin: AsyncEngine
) -> None:
    answers = Answers()
    one, two = Inbox(engine, answers), Inbox(twin, answers)
    copies = [
        inbox.handle(message(f"m{n}", member=f"u{n}"))
        for n in range(40)
        for inbox in (one, two, one)
    ]
    replies = await asyncio.gather(*copies)
    kinds = Counter(type(r).__name__ for r in replies)
    assert kinds == {"TextReply": 40, "NoReply": 80}
    assert sorted(answers.answered) == sorted(f"m{n}" for n in range(40))


async def test_a_retry_whose_answer_never_reached_its_caller_gets_the_answer(
    engine: AsyncEngine,
) -> None:
    answers = Answers()
    inbox = Inbox(engine, answers)
    first = await inbox.respond(message("m1"))
    assert isinstance(first, TextReply)
    await inbox.responded(message("m1"), False)  # the bridge had hung up
    assert await inbox.respond(message("m1")) == first  # its retry gets it, not silence
    await inbox.responded(message("m1"), True)
    assert await inbox.respond(message("m1")) == NoReply("duplicate")
    assert answers.answered == ["m1"], "answered once"


async def test_a_retry_waits_while_the_answer_is_being_written(
    engine: AsyncEngine, twin: AsyncEngine
) -> None:
    answers = Answers()
    one, two = Inbox(engine, answers), Inbox(twin, answers, join_wait=30)
    first = await one.respond(message("m1"))
    retry = asyncio.create_task(two.respond(message("m1")))
    await asyncio.sleep(0.5)
    assert not retry.done(), "not told duplicate before the response went out"
    await one.responded(message("m1"), True)
    assert await retry == NoReply("duplicate")
    assert isinstance(first, TextReply)


async def test_an_answer_whose_writer_died_goes_to_the_retry_after_the_lease(
    engine: AsyncEngine, twin: AsyncEngine
) -> None:
    clock = Clock()
    answers = Answers()
    dead = Inbox(engine, answers, clock=clock, owner="dead")
    first = await dead.respond(message("m1"))  # ... and the process dies before it confirms
    live = Inbox(twin, answers, clock=clock, join_wait=0.3)
    with pytest.raises(Unavailable):  # the lease is live: its response may still go out
        await live.respond(message("m1"))
    clock.now += LEASE + timedelta(seconds=1)
    assert await live.respond(message("m1")) == first
    assert answers.answered == ["m1"], "the answer is handed out again, not made again"


async def test_a_retry_while_the_answer_is_made_elsewhere_waits_for_it(
    engine: AsyncEngine, twin: AsyncEngine
) -> None:
    answers = Answers()
    answers.gate.clear()
    one, two = Inbox(engine, answers), Inbox(twin, answers, join_wait=30)
    first = asyncio.create_task(one.handle(message("m1")))
    await answers.started.wait()
    retry = asyncio.create_task(two.handle(message("m1")))
    await asyncio.sleep(0.3)
    assert not retry.done()
    answers.gate.set()
    replies = {await first, await retry}
    assert replies == {
        TextReply("answer to 会员日是哪天？", answered_by="extractive"),
        NoReply("duplicate"),
    }


async def test_a_retry_gives_up_waiting_with_a_failure_to_retry(
    engine: AsyncEngine, twin: AsyncEngine
) -> None:
    answers = Answers()
    answers.gate.clear()
    one, two = Inbox(engine, answers), Inbox(twin, answers, join_wait=0.3)
    first = asyncio.create_task(one.handle(message("m1")))
    await answers.started.wait()
    with pytest.raises(Unavailable):
        await two.handle(message("m1"))
    answers.gate.set()
    assert isinstance(await first, TextReply)


async def test_a_conversation_is_answered_in_order_across_processes(
    engine: AsyncEngine, twin: AsyncEngine
) -> None:
    answers = Answers()
    answers.gate.clear()
    one, two = Inbox(engine, answers), Inbox(twin, answers, join_wait=30)
    first = asyncio.create_task(one.handle(message("m1", "第一句")))
    await answers.started.wait()
    second = asyncio.create_task(two.handle(message("m2", "第二句")))
    others = Inbox(twin, Answers())  # another member's message is not held back
    assert isinstance(await others.handle(message("x1", "别人的问题", member="u2")), TextReply)
    await asyncio.sleep(0.3)
    assert not second.done(), "the second message waits for the first"
    answers.gate.set()
    assert isinstance(await first, TextReply)
    assert isinstance(await second, TextReply)
    assert answers.answered == ["m1", "m2"]


async def test_a_dead_owners_message_is_taken_over_after_its_lease(
    engine: AsyncEngine, twin: AsyncEngine
) -> None:
    clock = Clock()
    hung = Answers()
    hung.gate.clear()
    dead = Inbox(engine, hung, clock=clock, owner="dead")
    stuck = asyncio.create_task(dead.handle(message("m1")))
    await hung.started.wait()
    answers = Answers()
    live = Inbox(twin, answers, clock=clock, join_wait=0.3)
    with pytest.raises(Unavailable):  # the lease is live: the owner may still answer
        await live.handle(message("m1"))
    clock.now += LEASE + timedelta(seconds=1)
    assert isinstance(await live.handle(message("m1")), TextReply)
    assert answers.answered == ["m1"]
    hung.gate.set()
    assert await stuck == NoReply("duplicate"), "the late owner lost its lease: nothing twice"


async def test_shutting_down_gives_leases_back(engine: AsyncEngine, twin: AsyncEngine) -> None:
    hung = Answers()
    hung.gate.clear()
    leaving = Inbox(engine, hung)
    stuck = asyncio.create_task(leaving.handle(message("m1")))
    await hung.started.wait()
    assert await leaving.release() == 1
    answers = Answers()
    assert isinstance(await Inbox(twin, answers).handle(message("m1")), TextReply)
    assert answers.answered == ["m1"]
    stuck.cancel()  # the process that released them goes away
    with pytest.raises(asyncio.CancelledError):
        await stuck
    await leaving.settle()  # its give-back finds nothing of its own left to give back


async def test_a_cancelled_answer_is_given_back_before_settle_returns(
    engine: AsyncEngine, twin: AsyncEngine
) -> None:
    """The caller went away (a bridge hung up, a shutdown): its message is handed back in the
    background, and ``settle`` waits for that before the engine may be disposed."""
    hung = Answers()
    hung.gate.clear()
    inbox = Inbox(engine, hung)
    cut = asyncio.create_task(inbox.handle(message("m1")))
    await hung.started.wait()
    cut.cancel()
    with pytest.raises(asyncio.CancelledError):
        await cut
    await inbox.settle()
    answers = Answers()
    other = Inbox(twin, answers, join_wait=0.3)  # no lease to wait out: it was given back
    assert isinstance(await other.handle(message("m1")), TextReply)
    assert answers.answered == ["m1"]


async def test_a_burst_is_recorded_in_a_few_commits_each_message_once(engine: AsyncEngine) -> None:
    """Group commit: 200 messages arriving at once (and a copy of each) are all recorded before
    their callers return, once each, in far fewer transactions than messages."""
    commits = 0

    def count(_conn: object) -> None:
        nonlocal commits
        commits += 1

    sa.event.listen(engine.sync_engine, "commit", count)
    try:
        inbox = Inbox(engine, Answers())
        burst = [message(f"m{n}", member=f"u{n}") for n in range(200)]
        await asyncio.gather(*(inbox.record(msg) for msg in burst + burst))
    finally:
        sa.event.remove(engine.sync_engine, "commit", count)
    assert commits <= 20, commits
    async with engine.connect() as conn:
        rows = (await conn.execute(sa.text("SELECT message_id, state FROM inbox_message"))).all()
    assert sorted(rows) == sorted((f"m{n}", "pending") for n in range(200))


async def test_a_database_that_cannot_record_is_unavailable(tmp_path: Path) -> None:
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'missing' / 'siyu.db'}")
    try:
        with pytest.raises(Unavailable) as raised:
            await Inbox(engine, Answers()).handle(message("m1"))
        assert raised.value.retry_after > 0
    finally:
        await engine.dispose()


def test_replies_and_messages_survive_the_round_trip() -> None:
    citation = Citation("d1", "faq.csv", "常见问题", 2, "c1")
    for reply in (
        TextReply("会员日是每月8号", (citation,), quote="小明", answered_by="extractive"),
        HandoffReply("已为您转人工", "会员问退款", complaint=True),
        NoReply("not addressed"),
    ):
        assert reply_from_fields(reply_fields(reply)) == reply
    msg = message("m1")
    assert stored_message(message_fields(msg)) == msg
