"""The Official Account channel over real HTTP against the fake platform: GET verification, plain /
compatible / safe round trips, the reply budget (passive reply or customer-service send), exactly
one answer across WeChat's retries (sequential and concurrent), hostile callbacks, a real core."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

import pytest
from pydantic import SecretStr
from sqlalchemy.ext.asyncio import AsyncEngine

from adapters.admission import Admission
from adapters.wecom.config import OfficialAccountConfig
from adapters.wecom.crypto import CallbackCrypto
from adapters.wecom.official import (
    DEFAULT_WELCOME,
    MEDIA_TEXT,
    OA_CHANNEL,
    OfficialAccountChannel,
    create_official_app,
)
from adapters.wecom.xmlwire import build_xml, parse_xml
from bot.contact import SENDS_PER_WINDOW, ContactLedger
from bot.inbox import Inbox
from bot.types import Address, MessageHandler
from tests.adapters.wecom.wire import (
    AES_KEY,
    CREATE_TIME,
    XML_BOMB,
    SlowBot,
    encrypted,
    get,
    plain_query,
    post,
    real_core,
    serve,
    text_fields,
    until,
)
from tests.fakes.wecom_server import FakePlatform
from tests.sql import sql_engine

TOKEN = "oa-callback-token"
OURS = "gh_1234567890ab"
USER = "oUser-openid-1"
ADDRESS = Address("oa", "brand", USER)
FAST = 4.5
SLOW = 0.2
Mode = Literal["plain", "compatible", "safe"]


@dataclass
class Running:
    url: str
    channel: OfficialAccountChannel
    crypto: CallbackCrypto
    mode: Mode

    async def send(
        self, content: str, msg_id: str, *, fields: dict[str, str] | None = None
    ) -> tuple[int, str]:
        """Post a message as WeChat does in this account's mode."""
        inner = fields or text_fields(USER, OURS, content, msg_id)
        if self.mode == "plain":
            return await post(self.url, build_xml(inner).encode(), plain_query(TOKEN))
        query, body = encrypted(self.crypto, build_xml(inner))
        if self.mode == "compatible":  # the plain fields travel next to <Encrypt>
            body = build_xml({**inner, "Encrypt": parse_xml(body)["Encrypt"]}).encode()
        return await post(self.url, body, {**plain_query(TOKEN), **query, "encrypt_type": "aes"})

    def open_reply(self, text: str) -> dict[str, str]:
        """The passive reply's fields, decrypted (and its signature checked) when encrypted."""
        outer = parse_xml(text)
        if "Encrypt" not in outer:
            return outer
        self.crypto.verify(outer["MsgSignature"], outer["TimeStamp"], outer["Nonce"],
                           outer["Encrypt"])  # fmt: skip
        return parse_xml(self.crypto.decrypt(outer["Encrypt"]))


StartChannel = Callable[..., Awaitable[Running]]


@pytest.fixture
async def engine(data_dir: Path) -> AsyncIterator[AsyncEngine]:
    """A real SQLite database for the inbox and the ledger."""
    async with sql_engine("sqlite", data_dir) as engine:
        yield engine


@pytest.fixture
def ledger(engine: AsyncEngine) -> ContactLedger:
    """The core's contact-window ledger on a real SQLite database."""
    return ContactLedger(engine)


async def member_wrote(server: FakePlatform, ledger: ContactLedger) -> None:
    """USER writes now: the platform and the ledger both open a window (the pipeline opens the
    ledger's when a message reaches it; these tests' handlers stand in for the pipeline)."""
    server.add_oa_message(USER)
    await ledger.open(ADDRESS, datetime.now(UTC))


@pytest.fixture
async def start(
    wecom_server: FakePlatform, ledger: ContactLedger, engine: AsyncEngine
) -> AsyncIterator[StartChannel]:
    """Start the channel with one account around a handler (behind a real inbox) or an inbox;
    closed after the test."""
    async with AsyncExitStack() as stack:

        async def run(
            handle: MessageHandler | Inbox, mode: Mode = "safe", budget: float = FAST,
            admission: Admission | None = None,
        ) -> Running:  # fmt: skip
            account = OfficialAccountConfig(
                name="brand", token=SecretStr(TOKEN), app_id=wecom_server.oa_app_id,
                secret=SecretStr(wecom_server.oa_secret), mode=mode,
                encoding_aes_key=None if mode == "plain" else SecretStr(AES_KEY),
                reply_budget_seconds=budget, store_id="sh-xuhui",
            )  # fmt: skip
            inbox = handle if isinstance(handle, Inbox) else Inbox(engine, handle)
            sub = create_official_app(
                inbox, [account], api_base=wecom_server.url, ledger=ledger, admission=admission
            )
            url = await stack.enter_async_context(serve("/wechat/oa/", sub))
            crypto = CallbackCrypto(TOKEN, AES_KEY, wecom_server.oa_app_id)
            return Running(url + "brand", sub[OA_CHANNEL], crypto, mode)

        yield run


def fast_bot() -> SlowBot:
    bot = SlowBot()
    bot.release.set()
    return bot


async def test_get_verification_echoes_echostr(start: StartChannel) -> None:
    running = await start(fast_bot(), mode="plain")
    params = {**plain_query(TOKEN), "echostr": "5837397520665436492"}
    assert await get(running.url, params) == (200, "5837397520665436492")
    assert (await get(running.url, {**params, "signature": "f" * 40}))[0] == 401
    assert (await get(running.url, {**params, "echostr": ""}))[0] == 400
    assert (await get(running.url.replace("brand", "nobody"), params))[0] == 404


@pytest.mark.parametrize("mode", ["plain", "compatible", "safe"])
async def test_passive_reply_round_trip(start: StartChannel, mode: Mode) -> None:
    bot = fast_bot()
    running = await start(bot, mode=mode)
    status, text = await running.send("营业时间？", "100001")
    assert status == 200
    reply = running.open_reply(text)
    assert ("Encrypt" in parse_xml(text)) is (mode != "plain")
    assert (reply["ToUserName"], reply["FromUserName"]) == (USER, OURS)
    assert (reply["MsgType"], reply["Content"]) == ("text", "answer:营业时间？")
    (msg,) = bot.seen
    assert (msg.id, msg.channel, msg.conversation, msg.store_id) == (
        "100001", "oa.brand", USER, "sh-xuhui",
    )  # fmt: skip
    assert msg.sender.external_id == USER


async def test_compatible_mode_reads_the_encrypted_message(start: StartChannel) -> None:
    bot = fast_bot()
    running = await start(bot, mode="compatible")
    inner = text_fields(USER, OURS, "加密的问题", "100002")
    query, body = encrypted(running.crypto, build_xml(inner))
    forged = {**inner, "Content": "明文的问题", "Encrypt": parse_xml(body)["Encrypt"]}
    params = {**plain_query(TOKEN), **query, "encrypt_type": "aes"}
    status, text = await post(running.url, build_xml(forged).encode(), params)
    assert status == 200
    assert running.open_reply(text)["Content"] == "answer:加密的问题"


async def test_modes_refuse_the_other_kind_of_callback(start: StartChannel) -> None:
    safe = await start(fast_bot(), mode="safe")
    plain_body = build_xml(text_fields(USER, OURS, "hi", "100003")).encode()
    assert (await post(safe.url, plain_body, plain_query(TOKEN)))[0] == 400
    plain = await start(fast_bot(), mode="plain")
    query, body = encrypted(plain.crypto, build_xml(text_fields(USER, OURS, "hi", "100004")))
    assert (await post(plain.url, body, {**query, "encrypt_type": "aes"}))[0] == 400


async def test_slow_answer_goes_through_custom_send_once(
    start: StartChannel, wecom_server: FakePlatform, ledger: ContactLedger
) -> None:
    bot = SlowBot()
    running = await start(bot, budget=SLOW)
    await member_wrote(wecom_server, ledger)
    assert await running.send("慢问题", "200001") == (200, "success")
    assert await running.send("慢问题", "200001") == (200, "success")  # retry, still working
    bot.release.set()
    await running.channel.tasks.drain()
    assert await running.send("慢问题", "200001") == (200, "success")  # retry after delivery
    await running.channel.tasks.drain()
    assert wecom_server.custom_sent == [
        {"touser": USER, "msgtype": "text", "text": {"content": "answer:慢问题"}}
    ]
    assert len(bot.seen) == 1


async def test_concurrent_retries_of_a_slow_message_answer_once(
    start: StartChannel, wecom_server: FakePlatform, ledger: ContactLedger
) -> None:
    bot = SlowBot()
    running = await start(bot, budget=SLOW)
    await member_wrote(wecom_server, ledger)
    replies = await asyncio.gather(*(running.send("慢问题", "200002") for _ in range(3)))
    assert replies == [(200, "success")] * 3
    bot.release.set()
    await running.channel.tasks.drain()
    assert [sent["text"]["content"] for sent in wecom_server.custom_sent] == ["answer:慢问题"]
    assert len(bot.seen) == 1


async def test_a_retry_still_open_when_the_answer_lands_replies_passively(
    start: StartChannel, wecom_server: FakePlatform, ledger: ContactLedger
) -> None:
    bot = SlowBot()
    running = await start(bot, budget=1.0)
    await member_wrote(wecom_server, ledger)
    assert await running.send("慢问题", "200003") == (200, "success")
    retry = asyncio.create_task(running.send("慢问题", "200003"))
    await until(
        lambda: running.channel.inflight.waiting("brand:200003") == 1, lambda: asyncio.sleep(0)
    )
    bot.release.set()
    status, text = await retry
    assert status == 200
    assert running.open_reply(text)["Content"] == "answer:慢问题"
    await running.channel.tasks.drain()
    assert wecom_server.custom_sent == []  # delivered once, passively
    assert len(bot.seen) == 1


async def test_fast_retries_get_success_after_the_passive_reply(start: StartChannel) -> None:
    bot = fast_bot()
    running = await start(bot, mode="plain")
    first = await running.send("快问题", "300001")
    assert running.open_reply(first[1])["Content"] == "answer:快问题"
    for _ in range(2):
        assert await running.send("快问题", "300001") == (200, "success")
    assert len(bot.seen) == 1


async def test_no_custom_send_without_an_open_window(
    start: StartChannel, wecom_server: FakePlatform, caplog: pytest.LogCaptureFixture
) -> None:
    bot = SlowBot()  # stands in for the pipeline and opens no window: the member never wrote
    running = await start(bot, budget=SLOW)
    assert await running.send("慢问题", "400001") == (200, "success")
    bot.release.set()
    with caplog.at_level(logging.INFO, logger="adapters.wecom.official"):
        await running.channel.tasks.drain()
    assert wecom_server.count("/cgi-bin/message/custom/send") == 0  # refused by us
    assert "window of oUser-openid-1 closed" in caplog.text


async def test_a_window_the_platform_closed_is_closed_in_the_ledger(
    start: StartChannel, wecom_server: FakePlatform, ledger: ContactLedger,
    caplog: pytest.LogCaptureFixture,
) -> None:  # fmt: skip
    bot = SlowBot()
    running = await start(bot, budget=SLOW)
    await ledger.open(ADDRESS, datetime.now(UTC))  # the fake has seen no message from USER: 45015
    assert await running.send("慢问题", "400001") == (200, "success")
    bot.release.set()
    with caplog.at_level(logging.INFO, logger="adapters.wecom.official"):
        await running.channel.tasks.drain()
    assert wecom_server.custom_sent == []
    assert wecom_server.count("/cgi-bin/message/custom/send") == 1  # never retried
    assert "45015" in caplog.text
    assert await ledger.remaining(ADDRESS, datetime.now(UTC)) == 0


async def test_long_passive_answer_sends_the_rest_through_the_api(
    start: StartChannel, wecom_server: FakePlatform, ledger: ContactLedger
) -> None:
    bot = SlowBot(answer=lambda msg: "长" * 1000)  # 3000 bytes: two messages
    bot.release.set()
    running = await start(bot, mode="plain")
    await member_wrote(wecom_server, ledger)
    _, text = await running.send("说长一点", "400002")
    await running.channel.tasks.drain()
    first = running.open_reply(text)["Content"]
    rest = [sent["text"]["content"] for sent in wecom_server.custom_sent]
    assert len(rest) == 1
    assert first + rest[0] == "长" * 1000
    # The passive reply is not a customer-service message; the rest is one.
    assert await ledger.remaining(ADDRESS, datetime.now(UTC)) == SENDS_PER_WINDOW - 1


def event(kind: str, **extra: str) -> dict[str, str]:
    return {"ToUserName": OURS, "FromUserName": USER, "CreateTime": CREATE_TIME, "MsgType": kind,
            **extra}  # fmt: skip


async def test_events_media_and_unknown_types(start: StartChannel) -> None:
    bot = fast_bot()
    running = await start(bot, mode="safe")
    _, welcome = await running.send("", "", fields=event("event", Event="subscribe"))
    assert running.open_reply(welcome)["Content"] == DEFAULT_WELCOME
    assert await running.send("", "", fields=event("event", Event="subscribe")) == (
        200,
        "success",
    )  # fmt: skip  (WeChat's retry of the same event)
    _, media = await running.send("", "", fields=event("image", MsgId="500001", PicUrl="x"))
    assert running.open_reply(media)["Content"] == MEDIA_TEXT
    for fields in (event("location", MsgId="500002"), event("event", Event="unsubscribe")):
        assert await running.send("", "", fields=fields) == (200, "success")
    _, spoken = await running.send(
        "", "", fields=event("voice", MsgId="500003", Recognition="几点开门")
    )
    assert running.open_reply(spoken)["Content"] == "answer:几点开门"
    assert [msg.text for msg in bot.seen] == ["几点开门"]


async def test_hostile_callbacks_get_4xx_and_the_server_stays_up(start: StartChannel) -> None:
    bot = fast_bot()
    running = await start(bot, mode="compatible")
    signed = plain_query(TOKEN)
    query, body = encrypted(running.crypto, build_xml(text_fields(USER, OURS, "hi", "600001")))
    safe = {**signed, **query, "encrypt_type": "aes"}
    cases = [
        ("bad plain signature", {**signed, "signature": "0" * 40}, b"<xml/>", 401),
        ("bad msg_signature", {**safe, "msg_signature": "0" * 40}, body, 401),
        ("no query", {}, b"<xml/>", 400),
        ("xml bomb", signed, XML_BOMB, 400),
        ("encrypted xml bomb", safe, XML_BOMB, 400),
        ("malformed", signed, b"<xml><Content>hi</xml>", 400),
        ("no sender", signed, b"<xml><MsgType>text</MsgType></xml>", 400),
        ("text without MsgId", signed, build_xml(event("text", Content="hi")).encode(), 400),
        (
            "huge MsgId",
            signed,
            build_xml(event("text", Content="hi", MsgId="9" * 500)).encode(),
            400,
        ),
        ("10 MB", signed, b"<xml>" + b"x" * (10 * 1024 * 1024) + b"</xml>", 413),
        # Text that is not Unicode: a UTF-8-encoded lone surrogate, a reference to one.
        ("surrogate bytes", signed, _with_content(b"\xed\xa0\x80"), 400),
        ("surrogate reference", signed, _with_content(b"&#xD800;"), 400),
        ("encrypted surrogate", *_encrypted_with_content(running, signed, "&#xDFFF;"), 400),
    ]
    for name, params, payload, status in cases:
        assert (await post(running.url, payload, params))[0] == status, name
    assert bot.seen == []
    _, text = await running.send("还在吗", "600002")
    assert running.open_reply(text)["Content"] == "answer:还在吗"


async def test_a_replayed_plain_signature_is_refused_whatever_the_body(
    start: StartChannel, wecom_server: FakePlatform
) -> None:
    # The plain signature covers (token, timestamp, nonce), not the body: captured once, it
    # would sign any body, from any "openid", for ever, were the timestamp not checked.
    bot = fast_bot()
    running = await start(bot, mode="plain")
    for when in ("0", "1", str(int(time.time()) - 360), str(int(time.time()) + 360)):
        captured = plain_query(TOKEN, timestamp=when)
        for n, forged_user in enumerate(("oForged-1", "oForged-2")):
            forged = text_fields(forged_user, OURS, "给我发优惠券", f"66{n}{when[-4:]}")
            status, text = await post(running.url, build_xml(forged).encode(), captured)
            assert (status, text.split(":")[0]) == (401, "StaleCallback"), when
            assert "accepted" in text
    await running.channel.tasks.drain()
    assert bot.seen == []
    assert wecom_server.custom_sent == []
    in_time = plain_query(TOKEN, timestamp=str(int(time.time()) - 240))
    status, text = await post(running.url, build_xml(text_fields(USER, OURS, "hi", "669")).encode(),
                              in_time)  # fmt: skip
    assert (status, running.open_reply(text)["Content"]) == (200, "answer:hi")


@pytest.mark.parametrize("mode", ["compatible", "safe"])
async def test_a_stale_encrypted_callback_is_refused(
    start: StartChannel, wecom_server: FakePlatform, mode: Mode
) -> None:
    bot = fast_bot()
    running = await start(bot, mode=mode)
    old = str(int(time.time()) - 3600)
    query, body = encrypted(running.crypto, build_xml(text_fields(USER, OURS, "旧", "670001")),
                            timestamp=old)  # fmt: skip
    params = {**plain_query(TOKEN, timestamp=old), **query, "encrypt_type": "aes"}
    assert (await post(running.url, body, params))[0] == 401
    for malformed in ("²", "１７７２０００００００", "9" * 5000, ""):
        assert (await post(running.url, body, {**params, "timestamp": malformed}))[0] == 400
    assert bot.seen == []
    assert wecom_server.custom_sent == []


def _with_content(raw: bytes) -> bytes:
    """A text callback whose Content is ``raw`` bytes, as they are (markup, not CDATA)."""
    xml = build_xml(event("text", MsgId="600009", Content="PLACEHOLDER")).encode()
    return xml.replace(b"<![CDATA[PLACEHOLDER]]>", raw)


def _encrypted_with_content(
    running: Running, signed: dict[str, str], raw: str
) -> tuple[dict[str, str], bytes]:
    """Query and body of an encrypted callback whose message's Content is ``raw`` markup."""
    inner = build_xml(event("text", MsgId="600010", Content="PLACEHOLDER"))
    query, body = encrypted(running.crypto, inner.replace("<![CDATA[PLACEHOLDER]]>", raw))
    return {**signed, **query, "encrypt_type": "aes"}, body


async def test_real_core_answers_from_the_demo_faq_and_survives_a_restart(
    start: StartChannel, tmp_path: Path
) -> None:
    async with real_core(tmp_path) as core:
        running = await start(core.inbox, mode="safe")
        status, text = await running.send("积分会过期吗？", "700001")
        assert status == 200
        assert "次年 12 月 31 日" in running.open_reply(text)["Content"]
        restarted = await start(core.inbox, mode="safe")  # no in-process memory
        assert await restarted.send("积分会过期吗？", "700001") == (200, "success")


def test_an_encrypted_mode_account_needs_a_key(ledger: ContactLedger, engine: AsyncEngine) -> None:
    account = OfficialAccountConfig(
        name="nokey", token=SecretStr("t"), app_id="wx1", secret=SecretStr("s"), mode="safe"
    )
    inbox = Inbox(engine, fast_bot())
    with pytest.raises(ValueError, match="needs a key"):
        create_official_app(inbox, [account], api_base="http://127.0.0.1:9", ledger=ledger)


async def test_overload_acknowledges_at_once_and_answers_through_the_api(
    start: StartChannel, wecom_server: FakePlatform, ledger: ContactLedger
) -> None:
    bot = SlowBot()
    running = await start(bot, budget=FAST, admission=Admission(2))
    await member_wrote(wecom_server, ledger)
    others = [f"oUser-busy-{i}" for i in range(2)]  # two conversations: answered side by side
    for user in others:
        wecom_server.add_oa_message(user)
        await ledger.open(Address("oa", "brand", user), datetime.now(UTC))
    busy = [
        asyncio.create_task(
            running.send("", "", fields=text_fields(user, OURS, f"问题{i}", f"3000{i:02d}"))
        )
        for i, user in enumerate(others)
    ]
    await until(lambda: len(bot.seen) == 2, lambda: asyncio.sleep(0.01))
    # Every slot is taken and each of those requests waits within its 4.5 s budget for a passive
    # reply. The next message is acknowledged without waiting for an answer, and, since work now
    # queues for a slot, so are the two that were waiting: nothing holds a request open in a burst.
    assert not any(task.done() for task in busy)
    assert await running.send("再问一个", "300099") == (200, "success")
    assert await asyncio.wait_for(asyncio.gather(*busy), FAST / 2) == [(200, "success")] * 2
    bot.release.set()
    await running.channel.tasks.drain()
    sent = sorted(sent["text"]["content"] for sent in wecom_server.custom_sent)
    assert sent == ["answer:再问一个", "answer:问题0", "answer:问题1"]
    # Once the burst is over, a message gets its passive reply again.
    status, text = await running.send("最后一个", "300100")
    assert status == 200
    assert running.open_reply(text)["Content"] == "answer:最后一个"


@pytest.mark.parametrize(
    ("mode", "query", "status"),
    [
        ("plain", {"signature": "f" * 40, "timestamp": "now", "nonce": "n"}, 401),
        ("safe", {"encrypt_type": "aes", "timestamp": "now", "nonce": "n"}, 400),
        ("safe", {"signature": "f" * 40, "timestamp": "now", "nonce": "n"}, 400),
    ],
)
async def test_a_bad_query_is_refused_before_the_body_is_read(
    start: StartChannel, mode: Mode, query: dict[str, str], status: int
) -> None:
    """A forged plain signature (it does not cover the body), a missing msg_signature, a plain
    callback to a safe account: refused while the announced body has not even been sent."""
    running = await start(fast_bot(), mode=mode)
    host, _, rest = running.url.removeprefix("http://").partition("/")
    hostname, port = host.split(":")
    query = {k: str(int(time.time())) if v == "now" else v for k, v in query.items()}
    target = "/" + rest + "?" + "&".join(f"{k}={v}" for k, v in query.items())
    reader, writer = await asyncio.open_connection(hostname, int(port))
    writer.write(f"POST {target} HTTP/1.1\r\nHost: t\r\nContent-Length: 20000\r\n\r\n".encode())
    await writer.drain()  # ... and the 20,000 bytes never come
    status_line = await asyncio.wait_for(reader.readline(), 10)
    writer.close()
    assert status_line.startswith(f"HTTP/1.1 {status}".encode())
