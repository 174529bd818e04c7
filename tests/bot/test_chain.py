"""The pipeline's building blocks: the ordered chain and the per-session locks."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

from bot.pipeline import Context, KeyedLocks, Next, Step, build_chain
from bot.types import InboundMessage, MemberRef, NoReply, Reply, TextReply

MSG = InboundMessage("m", "web", "c", MemberRef("web", "u"), "hi", datetime(2026, 6, 1, tzinfo=UTC))


async def test_chain_runs_steps_outermost_first_and_back() -> None:
    trace: list[str] = []

    def step(name: str) -> Step:
        async def run(ctx: Context, call_next: Next) -> Reply:
            trace.append(f"{name} in")
            reply = await call_next(ctx)
            trace.append(f"{name} out")
            return reply

        return run

    async def terminal(ctx: Context) -> Reply:
        trace.append("answer")
        return TextReply("ok")

    handler = build_chain([step("a"), step("b")], terminal)
    assert await handler(Context(MSG, MSG.received_at)) == TextReply("ok")
    assert trace == ["a in", "b in", "answer", "b out", "a out"]


async def test_a_step_can_stop_the_chain() -> None:
    async def stop(ctx: Context, call_next: Next) -> Reply:
        return NoReply("stopped")

    async def terminal(ctx: Context) -> Reply:
        raise AssertionError("not reached")

    handler = build_chain([stop], terminal)
    assert await handler(Context(MSG, MSG.received_at)) == NoReply("stopped")


async def test_keyed_locks_serialise_one_key_in_arrival_order_and_clean_up() -> None:
    locks = KeyedLocks()
    order: list[str] = []
    first_inside = asyncio.Event()
    release_first = asyncio.Event()

    async def first() -> None:
        async with locks.hold("s1"):
            order.append("first in")
            first_inside.set()
            await release_first.wait()
            order.append("first out")

    async def second() -> None:
        async with locks.hold("s1"):
            order.append("second in")

    async def other_key() -> None:
        async with locks.hold("s2"):
            order.append("other")

    task1 = asyncio.create_task(first())
    await first_inside.wait()
    task2 = asyncio.create_task(second())
    await other_key()  # another session is not blocked by s1
    await asyncio.sleep(0)
    assert order == ["first in", "other"]
    assert len(locks) == 1
    release_first.set()
    await asyncio.gather(task1, task2)
    assert order == ["first in", "other", "first out", "second in"]
    assert len(locks) == 0  # no lock kept for idle sessions
