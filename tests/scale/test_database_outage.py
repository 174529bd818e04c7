"""PostgreSQL cut off for 10 s under a bridge's load on two ``siyu serve`` processes (the database
reached through a TCP proxy the test cuts; Chroma stays up): the processes stay up and say they
are not ready, the bridge is told to retry (503) instead of being sent an apology as an answer,
and once the database is back every message is answered exactly once.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from pathlib import Path

import aiohttp
import pytest
from sqlalchemy.engine.url import make_url

from bot.answer import NOT_FOUND_TEXT
from bot.guard import FALLBACK_TEXT
from tests.fakes.tcp_proxy import TcpProxy
from tests.scale.cluster import Cluster, Outcome, bridge_send, cluster, message
from tests.scale.test_duplicate_storm import QUESTIONS, inbox_states
from tests.sql import postgres_url

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

MESSAGES = 450
RATE = 30.0
CUT_AT_S = 3.0
CUT_FOR_S = 10.0


async def readyz(running: Cluster) -> list[int]:
    timeout = aiohttp.ClientTimeout(total=10)
    statuses = []
    async with aiohttp.ClientSession(timeout=timeout) as http:
        for serve in running.serves:
            async with http.get(serve.url + "readyz") as resp:
                statuses.append(resp.status)
    return statuses


async def load(running: Cluster, outcomes: dict[str, Outcome]) -> None:
    urls = [running.hook(i) for i in range(len(running.serves))]
    start = asyncio.get_running_loop().time()

    async def one(http: aiohttp.ClientSession, n: int) -> None:
        await asyncio.sleep(max(0.0, start + n / RATE - asyncio.get_running_loop().time()))
        body = message(f"cut-{n}", f"member-{n % 120}", QUESTIONS[n % len(QUESTIONS)])
        outcomes[f"cut-{n}"] = await bridge_send(http, urls[n % 2 :] + urls[: n % 2], body)

    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=15)) as http:
        await asyncio.gather(*(one(http, n) for n in range(MESSAGES)))


async def outage(running: Cluster, proxy: TcpProxy) -> list[int]:
    """Cut the database for :data:`CUT_FOR_S`; /readyz of each process during the cut."""
    await asyncio.sleep(CUT_AT_S)
    await proxy.cut()
    await asyncio.sleep(CUT_FOR_S / 2)
    during = await readyz(running)
    await asyncio.sleep(CUT_FOR_S / 2)
    await proxy.restore()
    return during


async def test_a_database_outage_under_load_loses_nothing_and_answers_nothing_twice(
    tmp_path: Path,
) -> None:
    upstream = make_url(postgres_url()).port or 5432
    async with (
        TcpProxy(upstream) as proxy,
        cluster(tmp_path, postgres_url(), proxy=proxy) as running,
    ):
        outcomes: dict[str, Outcome] = {}
        _, during = await asyncio.gather(load(running, outcomes), outage(running, proxy))
        alive = [serve.proc.returncode for serve in running.serves]
        after = await readyz(running)
        rows = await inbox_states(running.database_url)
    assert during == [503, 503], "not ready while the database is away"
    assert alive == [None, None], "both processes lived through it"
    assert after == [200, 200]
    told = Counter("duplicate" if o.reason == "duplicate" else o.status for o in outcomes.values())
    assert told == {"replied": MESSAGES}
    assert max(o.tries for o in outcomes.values()) > 1, "the outage was met and retried"
    apologies = [o for o in outcomes.values() if o.text in (NOT_FOUND_TEXT, FALLBACK_TEXT)]
    assert not apologies, "an outage is not dressed up as an answer"
    # A response written while the database was away could not be confirmed: "sending".
    assert set(rows) <= {"delivered", "sending"}, rows
    assert sum(rows.values()) == MESSAGES
