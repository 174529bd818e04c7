"""A WeCom customer service (kf) burst on two ``siyu serve`` processes (PostgreSQL, a Chroma
server, the fake WeCom API): one process is SIGKILLed and the other SIGTERMed at random moments
during the burst, both restarted. Every customer's message is answered exactly once, counted at
the fake platform (``kf_sent``: msgid-deduplicated deliveries, per external_userid), and every
inbox row is delivered.

"WeCom" here does what WeCom does: the customers' messages wait on the platform, and after each
batch it posts a ``kf_msg_or_event`` callback to the account's URL, here to each of the two
processes, again up to three times two seconds apart when a try gets no answer. Process 0 dies
during the burst, process 1 while it handles the last batch's page, and both come back only once
WeCom gave up its retries, so no callback is left to make them sync: the page's later messages,
never recorded, are read only because a starting process syncs every saved open_kfid once without
a token (:meth:`adapters.wecom.kf_channel.KfChannel.resume`); the recovery loop sends what was
answered but not sent.
"""

from __future__ import annotations

import asyncio
import json
import random
import signal
import time
from collections import Counter
from pathlib import Path

import aiohttp
import pytest

from tests.adapters.wecom.test_crash_recovery import KF_TOKEN, KFID, kf_callback
from tests.adapters.wecom.wire import AES_KEY
from tests.fakes.wecom_server import FakePlatform, wecom_server
from tests.scale.cluster import Cluster, cluster
from tests.scale.test_duplicate_storm import QUESTIONS, inbox_states
from tests.scale.test_platform_kill import RETRIES, RETRY_EVERY_S, until_all_delivered
from tests.sql import postgres_url

__all__ = ["wecom_server"]

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

CUSTOMERS = 150
BATCHES = 5


def kf_env(fake: FakePlatform) -> dict[str, str]:
    kf = {"name": "shop", "corp_id": fake.corp_id, "secret": fake.corp_secret, "token": KF_TOKEN,
          "encoding_aes_key": AES_KEY}  # fmt: skip
    return {
        "SIYU_WECOM_KF": json.dumps([kf]), "SIYU_WECOM_API_BASE": fake.url,
        "SIYU_ANSWER_DEADLINE": "3", "SIYU_INBOX_LEASE_SECONDS": "6",
    }  # fmt: skip


async def notify(running: Cluster, index: int, fake: FakePlatform) -> bool:
    """One callback to process ``index`` as WeCom sends it; False when no try was acknowledged."""
    for _ in range(1 + RETRIES):
        try:
            if await kf_callback(running.serves[index].url, fake) == 200:
                return True
        except (aiohttp.ClientError, TimeoutError):
            pass
        await asyncio.sleep(RETRY_EVERY_S)
    return False


async def burst(
    running: Cluster, fake: FakePlatform, rng: random.Random, last: asyncio.Event,
    settled: asyncio.Event,
) -> list[bool]:  # fmt: skip
    """The customers write in batches; each batch is followed by a callback to both processes
    (retried on their own, as WeCom does); ``last`` is set once the last batch is out,
    ``settled`` once every callback was acknowledged or given up."""
    callbacks: list[asyncio.Task[bool]] = []
    for batch in range(BATCHES):
        await asyncio.sleep(rng.uniform(0.2, 0.6))
        for n in range(batch, CUSTOMERS, BATCHES):
            fake.add_kf_message(f"wm-{n:03d}", QUESTIONS[n % len(QUESTIONS)], open_kfid=KFID)
        for index in range(len(running.serves)):
            callbacks.append(asyncio.create_task(notify(running, index, fake)))
    last.set()
    try:
        return list(await asyncio.gather(*callbacks))
    finally:
        settled.set()


async def faults(
    running: Cluster, rng: random.Random, last: asyncio.Event, settled: asyncio.Event
) -> tuple[list[tuple[str, int]], int]:
    """SIGKILL process 0 during the burst, SIGTERM process 1 while the last batch is being
    handled, and restart both once WeCom gave up its callbacks' retries (no callback is left
    to make them sync): the exit codes, and how many messages the inbox had recorded then (the
    rest only a sync started by the restart itself can read)."""
    await asyncio.sleep(rng.uniform(0.2, 1.5))
    codes = [("SIGKILL", await running.stop(0, signal.SIGKILL))]
    await last.wait()
    await asyncio.sleep(rng.uniform(0.0, 0.5))
    codes.append(("SIGTERM", await running.stop(1, signal.SIGTERM)))
    await settled.wait()
    recorded = sum((await inbox_states(running.database_url)).values())
    await running.restart(0)
    await running.restart(1)
    return codes, recorded


@pytest.mark.parametrize("seed", [5])
async def test_a_kf_burst_through_kills_is_answered_once_each(
    tmp_path: Path, wecom_server: FakePlatform, seed: int
) -> None:
    wecom_server.clock.now = time.time()  # the contact windows are checked against our clock
    rng, last, settled = random.Random(seed), asyncio.Event(), asyncio.Event()
    async with cluster(tmp_path, postgres_url(), settings=kf_env(wecom_server)) as running:
        acks, (codes, recorded) = await asyncio.gather(
            burst(running, wecom_server, rng, last, settled),
            faults(running, rng, last, settled),
        )
        rows = await until_all_delivered(running, CUSTOMERS)
        await asyncio.sleep(4)  # a recovery pass or two more: nothing is sent again
    assert any(acks), "WeCom's callbacks reach a live process"
    assert recorded < CUSTOMERS, "some messages were unread when both processes were down"
    assert rows == {"delivered": CUSTOMERS}
    answers = Counter(s["touser"] for s in wecom_server.kf_sent)
    assert answers == {f"wm-{n:03d}": 1 for n in range(CUSTOMERS)}, "each customer answered once"
    assert wecom_server.kf_tokenless_syncs == {KFID: 2}, "each restart resumed the cursor once"
    assert codes == [("SIGKILL", -signal.SIGKILL), ("SIGTERM", 0)]
