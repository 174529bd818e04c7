"""Platform messages in the durable inbox: recorded before acknowledged, done only when sent, and
answered by the recovery loop when their process died, on real SQLite and PostgreSQL.

A dead process is an :class:`Inbox` with an owner id of its own that stops mid-way (what SIGKILL
leaves in the table); "another process" is an inbox on a twin engine. The deliverer is the
test's (it counts sends, as the fake platform would); the channels' own deliverers are tested
end to end with ``siyu serve`` in tests/adapters/wecom/test_crash_recovery.py.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.inbox import LEASE, Inbox
from bot.inbox_recovery import GRACE, MAX_SEND_ATTEMPTS, Recovery
from bot.models import InboxMessage
from bot.types import Address, InboundMessage, MemberRef, Reply, TextReply
from tests.bot.test_inbox import T0, Answers, Clock
from tests.sql import BACKENDS, sql_engine, twin_engine

OA = "oa.brand"
TABLE: sa.Table = InboxMessage.__table__  # type: ignore[attr-defined]


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


def oa_message(msg_id: str, *, member: str = "o1", channel: str = OA) -> InboundMessage:
    return InboundMessage(
        id=msg_id, channel=channel, conversation=member, text=f"question {msg_id}",
        received_at=T0, sender=MemberRef(channel, member), address=Address("oa", "brand", member),
    )  # fmt: skip


@dataclass
class Platform:
    """The deliverer: what reached the member, in order; ``failures`` sends fail first."""

    sent: list[str] = field(default_factory=list)
    failures: int = 0
    arrived: asyncio.Event = field(default_factory=asyncio.Event)

    async def __call__(self, msg: InboundMessage, reply: Reply) -> str | None:
        if self.failures:
            self.failures -= 1
            return None  # not taken: try again later
        assert isinstance(reply, TextReply)
        self.sent.append(msg.id)
        self.arrived.set()
        return "sent"


async def states(engine: AsyncEngine) -> dict[str, tuple[str, str | None]]:
    query = sa.select(TABLE.c.message_id, TABLE.c.state, TABLE.c.outcome)
    async with engine.connect() as conn:
        return {row.message_id: (row.state, row.outcome) for row in await conn.execute(query)}


async def test_an_answer_to_send_is_done_only_when_sent(engine: AsyncEngine) -> None:
    answers, clock = Answers(), Clock()
    inbox = Inbox(engine, answers, clock=clock)
    await inbox.record(oa_message("m1"))
    assert await states(engine) == {"m1": ("pending", None)}  # recorded before any answer
    reply = await inbox.answer_to_send(oa_message("m1"))
    assert isinstance(reply, TextReply)
    assert await inbox.answer_to_send(oa_message("m1")) is None  # a retry: ours to send, not its
    assert await states(engine) == {"m1": ("sending", None)}
    assert await inbox.sent(oa_message("m1"), "sent")
    assert await states(engine) == {"m1": ("delivered", "sent")}
    assert await inbox.answer_to_send(oa_message("m1")) is None
    assert answers.answered == ["m1"]


async def test_a_dead_senders_message_is_sent_once_by_two_live_processes(
    engine: AsyncEngine, twin: AsyncEngine
) -> None:
    answers, clock, platform = Answers(), Clock(), Platform()
    dead = Inbox(engine, answers, clock=clock, owner="dead")
    assert await dead.answer_to_send(oa_message("m1")) is not None  # killed before its send
    one, two = Inbox(engine, answers, clock=clock), Inbox(twin, answers, clock=clock)
    loops = [Recovery(inbox, {OA: platform}) for inbox in (one, two)]
    assert await asyncio.gather(*(loop.run_once() for loop in loops)) == [0, 0]  # lease alive
    clock.now += LEASE + timedelta(seconds=1)
    assert sorted(await asyncio.gather(*(loop.run_once() for loop in loops))) == [0, 1]
    assert platform.sent == ["m1"]
    assert answers.answered == ["m1"]  # sent from the stored answer, not answered again
    assert await states(engine) == {"m1": ("delivered", "sent")}


async def test_messages_recorded_by_a_dead_process_are_answered_in_order(
    engine: AsyncEngine, twin: AsyncEngine
) -> None:
    answers, clock, platform = Answers(), Clock(), Platform()
    dead = Inbox(engine, answers, clock=clock, owner="dead")
    for n in range(3):  # acknowledged under overload, queued, then the process died
        await dead.record(oa_message(f"a{n}", member="o1"))
        await dead.record(oa_message(f"b{n}", member="o2"))
    live = Recovery(Inbox(twin, answers, clock=clock), {OA: platform})
    assert await live.run_once() == 0  # within the grace: its own process may still answer
    clock.now += GRACE + timedelta(seconds=1)
    assert await live.run_once() == 6
    assert [m for m in platform.sent if m.startswith("a")] == ["a0", "a1", "a2"]
    assert [m for m in platform.sent if m.startswith("b")] == ["b0", "b1", "b2"]
    assert await live.run_once() == 0


async def test_a_process_leaves_its_own_queued_messages_to_itself(
    engine: AsyncEngine, twin: AsyncEngine
) -> None:
    answers, clock, platform = Answers(), Clock(), Platform()
    busy = Inbox(engine, answers, clock=clock)
    await busy.record(oa_message("m1"))  # waits for an answer slot in this process
    clock.now += GRACE + timedelta(seconds=1)
    assert await Recovery(busy, {OA: platform}).run_once() == 0
    # Another process takes it over (it may be stuck); the queued task then finds it done.
    assert await Recovery(Inbox(twin, answers, clock=clock), {OA: platform}).run_once() == 1
    assert await busy.answer_to_send(oa_message("m1")) is None
    assert platform.sent == ["m1"]


async def test_a_failing_send_is_retried_after_its_lease_then_given_up(engine: AsyncEngine) -> None:
    answers, clock = Answers(), Clock()
    platform = Platform(failures=MAX_SEND_ATTEMPTS + 5)
    inbox = Inbox(engine, answers, clock=clock)
    await inbox.record(oa_message("m1"))
    inbox = Inbox(engine, answers, clock=clock)  # restarted: the message is not queued here
    clock.now += GRACE + timedelta(seconds=1)
    loop = Recovery(inbox, {OA: platform})
    for _ in range(MAX_SEND_ATTEMPTS + 1):
        assert await loop.run_once() == 0
        assert (await states(engine))["m1"][0] in ("sending", "delivered")
        clock.now += LEASE + timedelta(seconds=1)
    assert await states(engine) == {"m1": ("delivered", "gave_up")}
    assert platform.sent == []


async def test_a_bridges_messages_are_left_to_its_retries(engine: AsyncEngine) -> None:
    answers, clock, platform = Answers(), Clock(), Platform()
    dead = Inbox(engine, answers, clock=clock, owner="dead")
    await dead.record(oa_message("w1", channel="webhook.shop"))
    clock.now += LEASE + GRACE
    assert await Recovery(Inbox(engine, answers, clock=clock), {OA: platform}).run_once() == 0
    assert await states(engine) == {"w1": ("pending", None)}


async def test_the_loop_runs_until_stopped(engine: AsyncEngine) -> None:
    answers, platform = Answers(), Platform()
    dead = Inbox(engine, answers, owner="dead")
    await dead.record(oa_message("m1"))
    loop = Recovery(Inbox(engine, answers), {OA: platform}, interval=0.05, grace=timedelta(0))
    loop.start()
    await asyncio.wait_for(platform.arrived.wait(), 10)
    await loop.stop()
    assert platform.sent == ["m1"]
    assert await states(engine) == {"m1": ("delivered", "sent")}
