"""A ``siyu serve`` killed with SIGKILL while platform messages are pending, then restarted: every
acknowledged message is answered exactly once, counted at the fake platform.

One real serve process (demo FAQ, hash embeddings, the fake LLM, the fake WeChat / WeCom API)
on SQLite or PostgreSQL:

- a kf message whose answer was handed out but whose ``send_msg`` never completed (the fake holds
  the request when the process dies): sent again after the restart with the same msgid, so the
  member receives it once;
- a burst of Official Account messages acknowledged with ``success`` under overload while the LLM
  hangs (all pending or mid-answer when the process dies): each answered once through
  ``custom/send`` after the restart;
- one of those, cut mid-answer, retried three times by "WeChat" after the restart: one answer in
  all (passive reply or ``custom/send``).

The lease is shortened to 6 s (``SIYU_INBOX_LEASE_SECONDS``, with a 3 s answer deadline) so the
dead process's leases run out within the test.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from adapters.wecom.crypto import CallbackCrypto
from adapters.wecom.xmlwire import build_xml
from bot.db import create_engine
from bot.demo import DEMO_DIR
from bot.models import InboxMessage
from tests.adapters.wecom.wire import AES_KEY, now_timestamp, plain_query, post, text_fields
from tests.campaigns.conftest import fresh_database
from tests.fakes.openai_server import FakeOpenAI, openai_server
from tests.fakes.wecom_server import FakePlatform

__all__ = ["fresh_database", "openai_server"]

SIYU = str(Path(sys.executable).with_name("siyu"))
OA_TOKEN, KF_TOKEN, OURS, KFID = "oa-token", "kf-token", "gh_ours", "wkfake"
SEND_MSG = "/cgi-bin/kf/send_msg"
BURST = 40
QUESTION = "积分会过期吗？"
GUARD_S = 120.0
TABLE: sa.Table = InboxMessage.__table__  # type: ignore[attr-defined]


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'siyu.db'}"
    else:
        yield request.getfixturevalue("fresh_database")


def environment(
    tmp_path: Path, database: str, fake: FakePlatform, llm: FakeOpenAI
) -> dict[str, str]:
    oa = {"name": "brand", "app_id": fake.oa_app_id, "secret": fake.oa_secret, "token": OA_TOKEN,
          "mode": "plain"}  # fmt: skip
    kf = {"name": "shop", "corp_id": fake.corp_id, "secret": fake.corp_secret, "token": KF_TOKEN,
          "encoding_aes_key": AES_KEY}  # fmt: skip
    return {
        **os.environ, "SIYU_DATA_DIR": str(tmp_path / "data"), "SIYU_DATABASE_URL": database,
        "SIYU_EMBEDDING": "hash", "SIYU_LLM_MODEL": "fake-chat", "SIYU_LLM_BASE_URL": llm.base_url,
        "SIYU_LLM_API_KEY": "test", "SIYU_ANSWER_DEADLINE": "3", "SIYU_INBOX_LEASE_SECONDS": "6",
        "SIYU_OFFICIAL_ACCOUNTS": json.dumps([oa]), "SIYU_WECOM_KF": json.dumps([kf]),
        "SIYU_WECOM_API_BASE": fake.url, "SIYU_WECHAT_API_BASE": fake.url, "SIYU_WEB_PORT": "0",
    }  # fmt: skip


@asynccontextmanager
async def serve(
    env: dict[str, str], cwd: Path
) -> AsyncIterator[tuple[asyncio.subprocess.Process, str]]:
    """A ``siyu serve`` process and its base URL; killed (if still alive) afterwards."""
    proc = await asyncio.create_subprocess_exec(
        SIYU, "serve", cwd=cwd, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    assert proc.stdout is not None
    output = ""
    try:
        async with asyncio.timeout(GUARD_S):
            while "Ctrl-C stops." not in output:
                line = await proc.stdout.readline()
                assert line, f"siyu serve exited early:\n{output}"
                output += line.decode()
        # Log lines (stderr, here in the same pipe) name other servers: the LLM's, say.
        match = re.search(r"web chat: (http://127\.0\.0\.1:\d+/)", output)
        assert match, output
        drain = asyncio.create_task(proc.stdout.read())  # keep the pipe from filling up
        yield proc, match.group(1)
    finally:
        if proc.returncode is None:
            proc.kill()
        await proc.wait()
        if "drain" in locals():
            await drain


async def oa_send(url: str, user: str, msg_id: str) -> tuple[int, str]:
    body = build_xml(text_fields(user, OURS, QUESTION, msg_id)).encode()
    return await post(url + "wechat/oa/brand", body, plain_query(OA_TOKEN))


async def kf_callback(url: str, fake: FakePlatform) -> int:
    crypto = CallbackCrypto(KF_TOKEN, AES_KEY, fake.corp_id)
    fields = {
        "ToUserName": fake.corp_id, "CreateTime": "1772000000", "MsgType": "event",
        "Event": "kf_msg_or_event", "Token": fake.kf_callback_token, "OpenKfId": KFID,
    }  # fmt: skip
    encrypt = crypto.encrypt(build_xml(fields))
    query = {"timestamp": now_timestamp(), "nonce": "n0nce"}
    query["msg_signature"] = crypto.signature(query["timestamp"], query["nonce"], encrypt)
    body = build_xml({"ToUserName": fake.corp_id, "Encrypt": encrypt}).encode()
    status, _ = await post(url + "wecom/kf/shop", body, query)
    return status


async def states(engine: AsyncEngine) -> dict[str, str]:
    async with engine.connect() as conn:
        rows = await conn.execute(sa.select(TABLE.c.message_id, TABLE.c.state))
        return {row.message_id: row.state for row in rows}


async def until(what: str, check: object) -> None:
    """Poll ``check`` (an async callable returning bool) until it holds, within the guard."""
    deadline = time.monotonic() + GUARD_S
    while not await check():  # type: ignore[operator]
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.2)


async def test_sigkill_with_pending_platform_messages_loses_and_repeats_nothing(
    tmp_path: Path, database: str, wecom_server: FakePlatform, openai_server: FakeOpenAI
) -> None:
    wecom_server.clock.now = time.time()  # the windows are checked against our real clock
    env = environment(tmp_path, database, wecom_server, openai_server)
    ingest = await asyncio.create_subprocess_exec(
        SIYU, "ingest", str(DEMO_DIR / "faq.csv"), cwd=tmp_path, env=env,
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    assert await ingest.wait() == 0
    engine = create_engine(database)
    users = [f"oUser-{n:02d}" for n in range(BURST)]
    try:
        async with serve(env, tmp_path) as (proc, url):
            # kf: the answer is handed out, and the platform holds its send_msg until the kill.
            wecom_server.add_kf_message("wm-1", QUESTION, open_kfid=KFID)
            wecom_server.delay(SEND_MSG, GUARD_S)
            assert await kf_callback(url, wecom_server) == 200
            await until("the kf send", lambda: _true(wecom_server.count(SEND_MSG) == 1))
            # OA: a burst while the LLM hangs, each acknowledged at once with "success".
            openai_server.outage("hang")
            for user in users:
                wecom_server.add_oa_message(user)
            acks = await asyncio.gather(
                *(oa_send(url, u, f"9{n:04d}") for n, u in enumerate(users))
            )
            assert acks == [(200, "success")] * BURST

            async def mid_answer() -> bool:
                return "answering" in (await states(engine)).values()

            await until("answers under way", mid_answer)  # the LLM holds them for 3 s
            proc.send_signal(signal.SIGKILL)
            await proc.wait()
        left = await states(engine)
        assert Counter(left.values())["delivered"] == 0, left  # nothing was done at the kill
        assert left.keys() == {f"9{n:04d}" for n in range(BURST)} | {_kf_msgid(wecom_server)}
        cut = sorted(m for m, state in left.items() if state == "answering")
        assert cut, left  # some were mid-answer
        assert wecom_server.custom_sent == []
        openai_server.up()

        async with serve(env, tmp_path) as (_, url):
            retry_of = users[int(cut[0][1:])]
            retries = [await oa_send(url, retry_of, cut[0]) for _ in range(3)]
            assert all(status == 200 for status, _ in retries)
            passive = sum(text != "success" for _, text in retries)

            async def all_done() -> bool:
                return set((await states(engine)).values()) == {"delivered"}

            await until("every message delivered", all_done)
            await asyncio.sleep(3)  # a recovery pass or two more: nothing is sent again
        sent = Counter(s["touser"] for s in wecom_server.custom_sent)
        sent[retry_of] += passive
        assert sent == dict.fromkeys(users, 1)
        assert [s["touser"] for s in wecom_server.kf_sent] == ["wm-1"]
        assert wecom_server.count(SEND_MSG) >= 2  # sent again with the same msgid: deduplicated
    finally:
        await engine.dispose()


async def _true(value: bool) -> bool:
    return value


def _kf_msgid(fake: FakePlatform) -> str:
    return str(fake.kf_messages[KFID][0]["msgid"])
