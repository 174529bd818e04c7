"""The WeCom self-built app channel over real HTTP: the official URL-check vector, encrypted
callbacks acknowledged at once and answered through the fake's message/send, retries answered
once, hostile callbacks refused with 4xx while the server stays up."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr
from sqlalchemy.ext.asyncio import AsyncEngine

from adapters.wecom.app_channel import APP_CHANNEL, WeComAppChannel, create_wecom_app_channel
from adapters.wecom.config import WeComAppAccount
from adapters.wecom.crypto import CallbackCrypto
from adapters.wecom.quota import RecipientQuota
from adapters.wecom.xmlwire import build_xml
from bot.inbox import Inbox
from bot.text import utf8_len
from bot.types import MessageHandler
from tests.adapters.wecom.wire import (
    AES_KEY,
    NONCE,
    VECTOR_CORP_ID,
    VECTOR_TOKEN,
    XML_BOMB,
    SlowBot,
    encrypted,
    get,
    now_timestamp,
    post,
    real_core,
    serve,
    text_fields,
)
from tests.fakes.wecom_server import FakePlatform
from tests.sql import sql_engine

STAFF_TOKEN = "staff-callback-token"
AGENT_ID = 1000002
QUESTION = "积分会过期吗？"
ANSWER_PART = "次年 12 月 31 日"


def accounts(fake: FakePlatform) -> list[WeComAppAccount]:
    vector = WeComAppAccount(
        name="vector", token=SecretStr(VECTOR_TOKEN), encoding_aes_key=SecretStr(AES_KEY),
        corp_id=VECTOR_CORP_ID, agent_id=1, secret=SecretStr("unused"),
    )  # fmt: skip
    staff = WeComAppAccount(
        name="staff", token=SecretStr(STAFF_TOKEN), encoding_aes_key=SecretStr(AES_KEY),
        corp_id=fake.corp_id, agent_id=AGENT_ID, secret=SecretStr(fake.corp_secret),
        store_id="sh-xuhui",
    )  # fmt: skip
    return [vector, staff]


@dataclass
class Running:
    url: str
    channel: WeComAppChannel
    crypto: CallbackCrypto

    async def send(self, content: str, msg_id: str, user: str = "zhangsan") -> tuple[int, str]:
        inner = build_xml(text_fields(user, self.crypto.receive_id, content, msg_id))
        query, body = encrypted(self.crypto, inner)
        return await post(self.url + "staff", body, query)


StartChannel = Callable[..., Awaitable[Running]]


@pytest.fixture
async def engine(data_dir: Path) -> AsyncIterator[AsyncEngine]:
    """A real SQLite database for the inbox."""
    async with sql_engine("sqlite", data_dir) as engine:
        yield engine


@pytest.fixture
async def start(wecom_server: FakePlatform, engine: AsyncEngine) -> AsyncIterator[StartChannel]:
    """Start the channel around a handler (behind a real inbox) or an inbox (``options``: the
    channel's); everything is closed after the test."""
    async with AsyncExitStack() as stack:

        async def run(handle: MessageHandler | Inbox, **options: Any) -> Running:
            inbox = handle if isinstance(handle, Inbox) else Inbox(engine, handle)
            sub = create_wecom_app_channel(
                inbox, accounts(wecom_server), api_base=wecom_server.url, **options
            )
            url = await stack.enter_async_context(serve("/wecom/app/", sub))
            crypto = CallbackCrypto(STAFF_TOKEN, AES_KEY, wecom_server.corp_id)
            return Running(url, sub[APP_CHANNEL], crypto)

        yield run


VECTOR_GET = {
    "msg_signature": "5c45ff5e21c57e6ad56bac8758b79b1d9ac89fd3",
    "timestamp": "1409659589",
    "nonce": "263014780",
    "echostr": (
        "P9nAzCzyDtyTWESHep1vC5X9xho/qYX3Zpb4yKa9SKld1DsH3Iyt3tP3zNdtp+4RPcs8TgAE7OaBO+FZXvnaqQ=="
    ),
}


async def test_url_check_answers_the_official_vector(start: StartChannel) -> None:
    # The vector was signed in 2014: the channel's clock is set to then.
    running = await start(SlowBot(), wall=lambda: 1409659589.0 + 299)
    params = VECTOR_GET
    assert await get(running.url + "vector", params) == (200, "1616140317555161061")
    assert (await get(running.url + "vector", {**params, "nonce": "1"}))[0] == 401
    assert (await get(running.url + "vector", {**params, "echostr": ""}))[0] == 400
    assert (await get(running.url + "nobody", params))[0] == 404


async def test_a_stale_url_check_is_refused(start: StartChannel) -> None:
    running = await start(SlowBot())  # the wall clock: the vector is years old
    status, text = await get(running.url + "vector", VECTOR_GET)
    assert (status, text.split(":")[0]) == (401, "StaleCallback")
    assert "old" in text
    crypto = CallbackCrypto(VECTOR_TOKEN, AES_KEY, VECTOR_CORP_ID)
    echostr = crypto.encrypt("1616140317555161061")
    for timestamp, status in ((now_timestamp(), 200), ("²", 400), ("9" * 5000, 400)):
        signed = {"timestamp": timestamp, "nonce": "263014780", "echostr": echostr}
        signed["msg_signature"] = crypto.signature(timestamp, "263014780", echostr)
        assert (await get(running.url + "vector", signed))[0] == status, timestamp


async def test_a_stale_callback_is_refused_and_not_answered(
    start: StartChannel, wecom_server: FakePlatform
) -> None:
    bot = SlowBot()
    bot.release.set()
    running = await start(bot)
    inner = build_xml(text_fields("zhangsan", running.crypto.receive_id, "旧的", "9301"))
    old = str(int(time.time()) - 360)
    for timestamp, status in ((old, 401), ("1", 401), (str(int(time.time()) + 600), 401)):
        query, body = encrypted(running.crypto, inner, timestamp=timestamp)
        got, text = await post(running.url + "staff", body, query)
        assert (got, text.split(":")[0]) == (status, "StaleCallback"), timestamp
    await running.channel.tasks.drain()
    assert bot.seen == []
    assert wecom_server.app_sent == []
    query, body = encrypted(running.crypto, inner, timestamp=str(int(time.time()) - 240))
    assert await post(running.url + "staff", body, query) == (200, "")  # 4 minutes: in time
    await running.channel.tasks.drain()
    assert [m.text for m in bot.seen] == ["旧的"]


async def test_callback_is_acknowledged_before_the_answer_is_sent(
    start: StartChannel, wecom_server: FakePlatform
) -> None:
    bot = SlowBot()
    running = await start(bot)
    assert await running.send("门店几点关门？", "7001") == (200, "")
    assert wecom_server.app_sent == []  # acknowledged while the pipeline is still working
    bot.release.set()
    await running.channel.tasks.drain()
    assert wecom_server.app_sent == [
        {"touser": "zhangsan", "msgtype": "text", "agentid": AGENT_ID,
         "text": {"content": "answer:门店几点关门？"}},
    ]  # fmt: skip
    (msg,) = bot.seen
    assert (msg.id, msg.channel, msg.conversation) == ("7001", "wecom_app.staff", "zhangsan")
    assert (msg.sender.external_id, msg.store_id) == ("zhangsan", "sh-xuhui")


async def test_long_answer_is_split_to_the_byte_limit(
    start: StartChannel, wecom_server: FakePlatform
) -> None:
    bot = SlowBot(answer=lambda msg: "长" * 1000)  # 3000 bytes
    bot.release.set()
    running = await start(bot)
    await running.send("说长一点", "7002")
    await running.channel.tasks.drain()
    parts = [sent["text"]["content"] for sent in wecom_server.app_sent]
    assert len(parts) == 2
    assert all(utf8_len(part) <= 2048 for part in parts)
    assert "".join(parts) == "长" * 1000


async def test_faq_answer_end_to_end_and_retries_answer_once(
    start: StartChannel, wecom_server: FakePlatform, tmp_path: Path
) -> None:
    async with real_core(tmp_path) as core:
        running = await start(core.inbox)
        assert await running.send(QUESTION, "8001") == (200, "")
        for _ in range(2):  # WeCom's sequential retries of the same MsgId
            assert await running.send(QUESTION, "8001") == (200, "")
        await running.channel.tasks.drain()
        concurrent = await asyncio.gather(*(running.send(QUESTION, "8002") for _ in range(3)))
        assert concurrent == [(200, "")] * 3
        await running.channel.tasks.drain()
    contents = [sent["text"]["content"] for sent in wecom_server.app_sent]
    assert len(contents) == 2  # one answer per MsgId
    assert all(ANSWER_PART in content for content in contents)


def _hostile(crypto: CallbackCrypto) -> list[tuple[str, dict[str, str], bytes, int]]:
    inner = build_xml(text_fields("zhangsan", crypto.receive_id, "hi", "9001"))
    query, body = encrypted(crypto, inner)
    other_corp = CallbackCrypto(STAFF_TOKEN, AES_KEY, "wwsomebodyelse")
    wrong_query, wrong_body = encrypted(other_corp, inner)
    huge = build_xml(text_fields("zhangsan", crypto.receive_id, "hi", "9" * 500))
    huge_query, huge_body = encrypted(crypto, huge)
    garbage = "not*base64"
    signature = crypto.signature(query["timestamp"], NONCE, garbage)
    bad_b64_query = {**query, "msg_signature": signature}
    bad_b64_body = build_xml({"Encrypt": garbage}).encode()
    return [
        ("bad signature", {**query, "msg_signature": "0" * 40}, body, 401),
        ("missing nonce", {k: v for k, v in query.items() if k != "nonce"}, body, 400),
        ("wrong receive id", wrong_query, wrong_body, 403),
        ("bad base64", bad_b64_query, bad_b64_body, 400),
        ("xml bomb", query, XML_BOMB, 400),
        ("huge MsgId", huge_query, huge_body, 400),
        ("malformed xml", query, b"<xml><Encrypt>abc</xml>", 400),
        ("no encrypt", query, b"<xml><ToUserName>x</ToUserName></xml>", 400),
        ("10 MB body", query, b"<xml>" + b"x" * (10 * 1024 * 1024) + b"</xml>", 413),
    ]


async def test_hostile_callbacks_get_4xx_and_the_server_stays_up(
    start: StartChannel, wecom_server: FakePlatform
) -> None:
    bot = SlowBot()
    bot.release.set()
    running = await start(bot)
    for name, query, body, status in _hostile(running.crypto):
        assert (await post(running.url + "staff", body, query))[0] == status, name
    assert bot.seen == []
    assert await running.send("还在吗", "9002") == (200, "")
    await running.channel.tasks.drain()
    assert [sent["text"]["content"] for sent in wecom_server.app_sent] == ["answer:还在吗"]


async def test_events_and_other_types_are_acknowledged_and_ignored(
    start: StartChannel, wecom_server: FakePlatform
) -> None:
    bot = SlowBot()
    bot.release.set()
    running = await start(bot)
    for fields in (
        {"FromUserName": "zhangsan", "MsgType": "event", "Event": "enter_agent"},
        {"FromUserName": "zhangsan", "MsgType": "image", "MsgId": "9101", "PicUrl": "http://x"},
    ):
        query, body = encrypted(running.crypto, build_xml(fields))
        assert await post(running.url + "staff", body, query) == (200, "")
    query, body = encrypted(running.crypto, build_xml({"MsgType": "text", "Content": "无 id"}))
    assert (await post(running.url + "staff", body, query))[0] == 400
    await running.channel.tasks.drain()
    assert bot.seen == []
    assert wecom_server.app_sent == []


def test_an_account_without_aes_key_is_refused(engine: AsyncEngine) -> None:
    account = WeComAppAccount(
        name="nokey", token=SecretStr("t"), corp_id="ww1", agent_id=1, secret=SecretStr("s")
    )
    with pytest.raises(ValueError, match="encoding_aes_key"):
        create_wecom_app_channel(Inbox(engine, SlowBot()), [account], api_base="http://127.0.0.1:9")


async def test_replies_over_the_per_member_limit_are_dropped_not_sent(
    start: StartChannel, wecom_server: FakePlatform, caplog: pytest.LogCaptureFixture
) -> None:
    bot = SlowBot()
    bot.release.set()
    running = await start(bot)
    for n in range(31):  # message/send allows 30 a minute to one member
        assert await running.send(f"问题{n}", f"q{n}") == (200, "")
    assert await running.send("我是另一位店员", "other-1", user="lisi") == (200, "")
    await running.channel.tasks.drain()
    to_zhangsan = [s for s in wecom_server.app_sent if s["touser"] == "zhangsan"]
    assert len(to_zhangsan) == 30
    assert [s["touser"] for s in wecom_server.app_sent].count("lisi") == 1
    assert "over message/send's per-member limit" in caplog.text


def test_the_quota_counts_each_window() -> None:
    now = [0.0]
    quota = RecipientQuota([(2, 60.0), (3, 3600.0)], clock=lambda: now[0])
    assert [quota.take("a") for _ in range(3)] == [True, True, False]
    assert quota.take("b")  # per recipient
    now[0] = 61.0
    assert quota.take("a")  # the minute has passed...
    now[0] = 122.0
    assert not quota.take("a")  # ...but 3 in the hour
    now[0] = 3601.0  # the first two have left the hour; 61.0 is still in it
    assert [quota.take("a") for _ in range(3)] == [True, True, False]  # 2 a minute again...
    now[0] = 3662.0
    assert quota.take("a")  # ...until the minute passes
    assert len(quota) == 2
