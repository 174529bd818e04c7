"""Two ``siyu serve`` processes on PostgreSQL and a Chroma server under a bridge's load; one is
killed (SIGKILL) and later another is stopped (SIGTERM), each restarted. Every message the bridge
sent is answered exactly once: the bridge's retries (on a reset, a timeout, a 503) reach the other
process or the restarted one, and none of them is told ``duplicate`` for an answer it never got.
In the inbox nothing is left waiting: every message is delivered, or ``sending`` when its process
died between writing the response and confirming it.
"""

from __future__ import annotations

import asyncio
import random
import signal
from collections import Counter
from pathlib import Path

import aiohttp
import pytest

from tests.scale.cluster import Cluster, Outcome, bridge_send, cluster, message
from tests.scale.test_duplicate_storm import QUESTIONS, inbox_states
from tests.sql import postgres_url

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

MESSAGES = 600
RATE = 40.0
"""Messages a second, offered whatever the answers do (an open loop, as a bridge's traffic)."""


async def load(running: Cluster, outcomes: dict[str, Outcome]) -> None:
    timeout = aiohttp.ClientTimeout(total=15)
    start = asyncio.get_running_loop().time()

    def urls() -> list[str]:
        return [running.hook(i) for i in range(len(running.serves))]

    async def one(http: aiohttp.ClientSession, n: int) -> None:
        await asyncio.sleep(max(0.0, start + n / RATE - asyncio.get_running_loop().time()))
        msg_id = f"load-{n}"
        body = message(msg_id, f"member-{n % 150}", QUESTIONS[n % len(QUESTIONS)])
        outcomes[msg_id] = await bridge_send(http, urls, body)

    async with aiohttp.ClientSession(timeout=timeout) as http:
        await asyncio.gather(*(one(http, n) for n in range(MESSAGES)))


async def faults(running: Cluster, rng: random.Random) -> list[tuple[str, int]]:
    """SIGKILL one process, restart it; then SIGTERM the other, restart it. Each at a random
    moment of the load. The exit codes, for the report."""
    codes = []
    for index, sig in ((0, signal.SIGKILL), (1, signal.SIGTERM)):
        await asyncio.sleep(rng.uniform(2.0, 5.0))
        codes.append((sig.name, await running.stop(index, sig)))
        await running.restart(index)
    return codes


@pytest.mark.parametrize("seed", [1, 2])
async def test_killed_and_stopped_processes_lose_no_message(tmp_path: Path, seed: int) -> None:
    async with cluster(tmp_path, postgres_url()) as running:
        outcomes: dict[str, Outcome] = {}
        _, codes = await asyncio.gather(
            load(running, outcomes), faults(running, random.Random(seed))
        )
        rows = await inbox_states(running.database_url)
    assert len(outcomes) == MESSAGES
    told = Counter("duplicate" if o.reason == "duplicate" else o.status for o in outcomes.values())
    assert told == {"replied": MESSAGES}, "every message's answer reached the bridge"
    # A process killed after writing a response but before confirming it leaves that message
    # "sending" (its bridge has the answer; a retry would get it again): nothing is waiting.
    assert set(rows) <= {"delivered", "sending"}, rows
    assert sum(rows.values()) == MESSAGES
    assert max(o.tries for o in outcomes.values()) > 1, "the faults hit some messages in flight"
    assert codes[0] == ("SIGKILL", -signal.SIGKILL)
    assert codes[1] == ("SIGTERM", 0), "SIGTERM drains and exits cleanly"
