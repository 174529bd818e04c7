"""A duplicate storm on two ``siyu serve`` processes sharing PostgreSQL and a Chroma server:
1,000 bridge messages, each delivered 3 times — two copies at once to the two processes, the third
afterwards — are answered exactly 1,000 times, each copy after the first told ``duplicate``.

Counted where the bridge sees it (the responses), and in the shared inbox (every message
recorded once, delivered once)."""

from __future__ import annotations

import asyncio
from collections import Counter
from pathlib import Path

import aiohttp
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from tests.scale.cluster import Cluster, Outcome, bridge_send, cluster, message
from tests.sql import postgres_url

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

MESSAGES = 1_000
IN_FLIGHT = 48
QUESTIONS = ("会员积分怎么用", "可以退货吗", "营业时间是几点", "怎么开发票", "配送要多久")


async def deliver_three_times(
    http: aiohttp.ClientSession, running: Cluster, n: int
) -> list[Outcome]:
    body = message(f"storm-{n}", f"member-{n}", QUESTIONS[n % len(QUESTIONS)])
    one, two = running.hook(n % 2), running.hook((n + 1) % 2)
    together = await asyncio.gather(bridge_send(http, [one], body), bridge_send(http, [two], body))
    return [*together, await bridge_send(http, [one, two], body)]


async def test_a_thousand_messages_sent_three_times_to_two_processes_are_answered_once(
    tmp_path: Path,
) -> None:
    async with cluster(tmp_path, postgres_url()) as running:
        slots = asyncio.Semaphore(IN_FLIGHT)
        timeout = aiohttp.ClientTimeout(total=30)

        async def one(http: aiohttp.ClientSession, n: int) -> list[Outcome]:
            async with slots:
                return await deliver_three_times(http, running, n)

        async with aiohttp.ClientSession(timeout=timeout) as http:
            outcomes = await asyncio.gather(*(one(http, n) for n in range(MESSAGES)))
        rows = await inbox_states(running.database_url)
    firsts = Counter(sum(o.reason != "duplicate" for o in copies) for copies in outcomes)
    assert firsts == {1: MESSAGES}, "each message answered by exactly one of its copies"
    statuses = Counter(o.status for copies in outcomes for o in copies if o.reason != "duplicate")
    assert statuses == {"replied": MESSAGES}
    assert rows == {"delivered": MESSAGES}


async def inbox_states(url: str) -> dict[str, int]:
    engine = create_async_engine(url)
    try:
        async with engine.connect() as conn:
            query = text("SELECT state, count(*) FROM inbox_message GROUP BY state")
            return {state: count for state, count in (await conn.execute(query)).all()}
    finally:
        await engine.dispose()
