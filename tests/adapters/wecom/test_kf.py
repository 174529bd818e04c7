"""The kf channel end to end: encrypted callbacks over real HTTP into the sub-app, the real core
(SQLite, Chroma, hash embedder, demo FAQ), and the fake WeCom API on 127.0.0.1 as the platform."""

from __future__ import annotations

import asyncio
import io
import logging
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import sqlalchemy as sa
from aiohttp import web
from pydantic import SecretStr

from adapters.wecom.config import KfAccount
from adapters.wecom.crypto import CallbackCrypto
from adapters.wecom.kf import KF_RUNTIME, create_kf_app
from adapters.wecom.kf_channel import NON_TEXT_TEXT
from adapters.wecom.kf_state import KfState
from adapters.wecom.xmlwire import build_xml
from bot.app import App
from bot.commands import HANDOFF_TEXT
from bot.contact import SENDS_PER_WINDOW
from bot.demo import DEMO_DIR
from bot.inbox import Inbox
from bot.settings import Settings
from bot.types import Address, InboundMessage, MessageHandler, Reply, TextReply
from tests.adapters.wecom.wire import now_timestamp
from tests.fakes.wecom_server import FakePlatform

AES_KEY = "jWmYm7qr5nMoAUwZRjGtBxmz3KA1tkAj3ykkR6q2B2C"
CALLBACK_TOKEN = "kf-callback-sign-token"
KFID = "wkfake"
SEND = "/cgi-bin/kf/send_msg"
SYNC = "/cgi-bin/kf/sync_msg"
STATE_GET = "/cgi-bin/kf/service_state/get"
TRANS = "/cgi-bin/kf/service_state/trans"
EXPIRY_ANSWER = "次年 12 月 31 日"
WM1 = Address("kf", "shop", "wm-1", chat=KFID)


def now(server: FakePlatform) -> datetime:
    """The fake platform's time, which the channel under test uses as its clock."""
    return datetime.fromtimestamp(server.clock(), UTC)


@pytest.fixture
async def core(tmp_path: Path) -> AsyncIterator[App]:
    settings = Settings(
        _env_file=None, data_dir=tmp_path / "data", llm={},
        knowledge={"embedding": "hash", "refresh_seconds": 0},
        bot={"handoff_hours": "00:00-00:00"},
    )  # fmt: skip
    app = await App.build(settings)
    await app.knowledge.ingest_path(DEMO_DIR / "faq.csv")
    try:
        yield app
    finally:
        await app.close()


def account(server: FakePlatform, **fields: Any) -> KfAccount:
    base: dict[str, Any] = {
        "name": "shop", "token": SecretStr(CALLBACK_TOKEN), "encoding_aes_key": SecretStr(AES_KEY),
        "corp_id": server.corp_id, "secret": SecretStr(server.corp_secret), "store_id": "sh-xuhui",
    }  # fmt: skip
    return KfAccount(**{**base, **fields})


@dataclass
class Kf:
    """One running kf sub-app: its callback URL and a way to wait for its sync loops."""

    url: str
    runner: web.AppRunner
    app: web.Application

    async def settle(self) -> None:
        await self.app[KF_RUNTIME].channel.drain()

    async def stop(self) -> None:
        await self.runner.cleanup()


StartKf = Callable[..., Awaitable[Kf]]


@pytest.fixture
async def start_kf(wecom_server: FakePlatform, core: App) -> AsyncIterator[StartKf]:
    runners: list[web.AppRunner] = []

    async def start(handle: MessageHandler | None = None, **options: Any) -> Kf:
        """A handler given stands behind an inbox of its own on the core's database."""
        accounts = options.pop("accounts", None) or [account(wecom_server)]
        inbox = core.inbox if handle is None else Inbox(core.engine, handle)
        sub = create_kf_app(
            inbox, accounts, api_base=wecom_server.url,
            engine=core.engine, clock=lambda: now(wecom_server),
            backoff=0.0, **options,
        )  # fmt: skip
        root = web.Application()
        root.add_subapp("/wecom/kf/", sub)
        runner = web.AppRunner(root)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        runners.append(runner)
        return Kf(f"http://127.0.0.1:{runner.addresses[0][1]}/wecom/kf/shop", runner, sub)

    yield start
    for runner in runners:
        await runner.cleanup()


def crypto_for(server: FakePlatform, receive_id: str | None = None) -> CallbackCrypto:
    return CallbackCrypto(CALLBACK_TOKEN, AES_KEY, receive_id or server.corp_id)


def callback_body(
    server: FakePlatform,
    *,
    crypto: CallbackCrypto | None = None,
    timestamp: str | None = None,
    **inner: str,
) -> tuple[bytes, dict[str, str]]:
    """An encrypted, signed kf callback: (body, query), signed now unless ``timestamp`` says
    when."""
    crypto = crypto or crypto_for(server)
    fields: dict[str, str | int] = {
        "ToUserName": server.corp_id, "CreateTime": 1772000000, "MsgType": "event",
        "Event": "kf_msg_or_event", "Token": server.kf_callback_token, "OpenKfId": KFID,
    }  # fmt: skip
    fields.update(inner)
    encrypt = crypto.encrypt(build_xml(fields))
    body = build_xml({"ToUserName": server.corp_id, "Encrypt": encrypt, "AgentID": ""})
    query = {"timestamp": timestamp or now_timestamp(), "nonce": "n0nce"}
    query["msg_signature"] = crypto.signature(query["timestamp"], query["nonce"], encrypt)
    return body.encode(), query


async def post(url: str, body: bytes, query: dict[str, str]) -> tuple[int, bytes]:
    data = io.BytesIO(body)  # aiohttp warns about large raw-bytes bodies
    async with aiohttp.ClientSession() as http, http.post(url, data=data, params=query) as resp:
        return resp.status, await resp.read()


async def callback(kf: Kf, server: FakePlatform) -> None:
    """Deliver one valid callback, expect the empty 200, and wait for the loop to finish."""
    status, raw = await post(kf.url, *callback_body(server))
    assert (status, raw) == (200, b"")
    await kf.settle()


def sent_to(server: FakePlatform, user: str) -> list[str]:
    return [s["text"]["content"] for s in server.kf_sent if s["touser"] == user]


async def test_callback_pulls_and_answers_from_the_faq(
    wecom_server: FakePlatform, start_kf: StartKf, core: App
) -> None:
    wecom_server.add_kf_message("wm-1", "积分会过期吗？")
    kf = await start_kf()
    await callback(kf, wecom_server)
    [sent] = wecom_server.kf_sent
    assert sent["touser"] == "wm-1"
    assert sent["open_kfid"] == KFID
    assert EXPIRY_ANSWER in sent["text"]["content"]
    assert sent["msgid"].startswith("r")
    assert len(sent["msgid"]) <= 32
    sync = next(r for r in wecom_server.requests if r.api == SYNC)
    assert sync.json["token"] == wecom_server.kf_callback_token
    assert await KfState(core.engine).cursor("shop", KFID) == "cur1"
    # The pipeline recorded where the member wrote from; the answer used one send of the window.
    member = await core.store.get_member("kf.shop", "wm-1")
    assert member is not None
    assert member.id is not None
    reach = (await core.store.contacts.reach([member.id], now(wecom_server)))[member.id]
    assert (reach.address, reach.remaining) == (WM1, SENDS_PER_WINDOW - 1)


async def test_get_verifies_the_url(wecom_server: FakePlatform, start_kf: StartKf) -> None:
    kf = await start_kf()
    crypto = crypto_for(wecom_server)
    echostr = crypto.encrypt("1616140317555161061")
    query = {"timestamp": now_timestamp(), "nonce": "263014780", "echostr": echostr}
    query["msg_signature"] = crypto.signature(query["timestamp"], query["nonce"], echostr)
    async with aiohttp.ClientSession() as http:
        async with http.get(kf.url, params=query) as resp:
            assert (resp.status, await resp.text()) == (200, "1616140317555161061")
        async with http.get(kf.url, params={**query, "msg_signature": "0" * 40}) as resp:
            assert resp.status == 401
        async with http.get(kf.url, params={**query, "echostr": ""}) as resp:
            assert resp.status == 400
        async with http.get(kf.url, params={**query, "nonce": "n" * 2000}) as resp:
            assert resp.status == 400


async def test_enter_session_gets_the_welcome(
    wecom_server: FakePlatform, start_kf: StartKf
) -> None:
    code = wecom_server.issue_event_code()
    event = {"event_type": "enter_session", "open_kfid": KFID, "external_userid": "wm-2",
             "scene": "shop", "welcome_code": code}  # fmt: skip
    wecom_server.kf_messages[KFID].append(
        {"msgid": "ev1", "send_time": 1772000000, "origin": 4, "msgtype": "event", "event": event}
    )
    kf = await start_kf(accounts=[account(wecom_server, welcome="欢迎光临禾町！")])
    await callback(kf, wecom_server)
    assert wecom_server.event_sent == [
        {"code": code, "msgtype": "text", "text": {"content": "欢迎光临禾町！"}}
    ]
    assert wecom_server.kf_sent == []


async def test_pages_with_has_more_are_all_answered_and_the_cursor_saved(
    wecom_server: FakePlatform, start_kf: StartKf, core: App
) -> None:
    for user in ("wm-1", "wm-2", "wm-3"):
        wecom_server.add_kf_message(user, "积分会过期吗？")
    kf = await start_kf(page_size=2)
    await callback(kf, wecom_server)
    assert wecom_server.count(SYNC) == 2
    assert sorted(s["touser"] for s in wecom_server.kf_sent) == ["wm-1", "wm-2", "wm-3"]
    assert await KfState(core.engine).cursor("shop", KFID) == "cur3"


async def test_servicer_and_system_messages_are_not_answered(
    wecom_server: FakePlatform, start_kf: StartKf
) -> None:
    wecom_server.add_kf_message("wm-1", "我是店员，帮您查一下", origin=5)
    wecom_server.add_kf_message("wm-1", "系统消息", origin=4)
    kf = await start_kf()
    await callback(kf, wecom_server)
    assert wecom_server.count(SEND) == 0


async def test_non_text_messages_get_a_short_notice(
    wecom_server: FakePlatform, start_kf: StartKf
) -> None:
    msg = wecom_server.add_kf_message("wm-1", "")
    msg.pop("text")
    msg.update(msgtype="image", image={"media_id": "MEDIA"})
    kf = await start_kf()
    await callback(kf, wecom_server)
    assert sent_to(wecom_server, "wm-1") == [NON_TEXT_TEXT]


async def test_unusable_messages_are_skipped_counted_and_logged_not_answered(
    wecom_server: FakePlatform, start_kf: StartKf, core: App, caplog: pytest.LogCaptureFixture
) -> None:
    # sync_msg is JSON: a "\ud800" escape decodes to a lone surrogate no reply, row or log line
    # can carry. It and a send_time no date can hold are skipped; the rest of the page is not.
    wecom_server.add_kf_message("wm-1", "坏的\ud800消息")
    wecom_server.add_kf_message("wm-2", "积分会过期吗？")["send_time"] = 10**15
    wecom_server.add_kf_message("wm-3", "积分会过期吗？")["external_userid"] = "wm-\udc00"
    wecom_server.add_kf_message("wm-4", "积分会过期吗？👨\u200d👩\u200d👧🇨🇳")
    kf = await start_kf()
    with caplog.at_level(logging.WARNING, logger="adapters.wecom.kf_channel"):
        await callback(kf, wecom_server)
    assert kf.app[KF_RUNTIME].channel.skipped == 3
    skipped = [r.getMessage() for r in caplog.records if "skipped message" in r.getMessage()]
    assert len(skipped) == 3
    assert "text is not Unicode text: lone surrogate U+D800 at character 3" in skipped[0]
    assert "坏的" not in caplog.text, "a member's text stays out of the log"
    assert [s["touser"] for s in wecom_server.kf_sent] == ["wm-4"]  # emoji are text
    assert EXPIRY_ANSWER in wecom_server.kf_sent[0]["text"]["content"]
    assert await KfState(core.engine).cursor("shop", KFID) == "cur4"  # moved past them
    await callback(kf, wecom_server)
    assert kf.app[KF_RUNTIME].channel.skipped == 3, "not read again"


async def test_a_message_delivered_twice_is_answered_once(
    wecom_server: FakePlatform, start_kf: StartKf
) -> None:
    msg = wecom_server.add_kf_message("wm-1", "积分会过期吗？")
    wecom_server.kf_messages[KFID].append(dict(msg))
    kf = await start_kf()
    await callback(kf, wecom_server)
    await callback(kf, wecom_server)  # the platform's callback retry: resumes at the cursor
    assert wecom_server.count(SEND) == 1


async def test_restart_after_a_failed_page_loses_nothing_and_repeats_nothing(
    wecom_server: FakePlatform, start_kf: StartKf, core: App
) -> None:
    users = ["wm-1", "wm-2", "wm-3", "wm-4"]
    for user in users:
        wecom_server.add_kf_message(user, "积分会过期吗？")
    handled: list[str] = []

    async def crash_after_page_one(msg: InboundMessage) -> Reply:
        handled.append(msg.sender.external_id)
        if len(handled) == 2:  # page 1 is handled: the fetch of page 2 fails for good
            wecom_server.http_status(SYNC, 500, times=3)
        return await core.pipeline.handle(msg)

    first = await start_kf(crash_after_page_one, page_size=2)
    await callback(first, wecom_server)
    assert sorted(s["touser"] for s in wecom_server.kf_sent) == ["wm-1", "wm-2"]
    await first.stop()
    # The crash came after page 1 was answered but before its cursor was written.
    async with core.engine.begin() as conn:
        await conn.execute(sa.text("DELETE FROM wecom_kf_cursor"))

    second = await start_kf(page_size=2)
    await callback(second, wecom_server)
    assert sorted(s["touser"] for s in wecom_server.kf_sent) == users
    assert wecom_server.count(SEND) == len(users)  # page 1 re-read: no second send attempted
    assert await KfState(core.engine).cursor("shop", KFID) == "cur4"


async def test_a_restart_syncs_once_without_a_token_and_answers_what_was_left_unread(
    wecom_server: FakePlatform, start_kf: StartKf, core: App
) -> None:
    users = [f"wm-{n}" for n in range(1, 7)]
    for user in users:
        wecom_server.add_kf_message(user, "积分会过期吗？")
    stuck = asyncio.Event()

    async def stuck_on_page_two(msg: InboundMessage) -> Reply:
        if msg.sender.external_id == "wm-3":
            stuck.set()
            await asyncio.Event().wait()  # until the shutdown cancels the loop mid-page
        return await core.pipeline.handle(msg)

    first = await start_kf(stuck_on_page_two, page_size=2)
    status, _ = await post(first.url, *callback_body(wecom_server))
    assert status == 200
    await asyncio.wait_for(stuck.wait(), 10)
    await first.stop()  # as SIGTERM does: wm-4..wm-6 were never reached
    assert sorted(s["touser"] for s in wecom_server.kf_sent) == ["wm-1", "wm-2"]
    assert await KfState(core.engine).cursor("shop", KFID) == "cur2"

    second = await start_kf(page_size=2)
    await second.settle()  # no callback: the start-up resume alone
    answered = Counter(s["touser"] for s in wecom_server.kf_sent)
    assert set(users) - answered.keys() <= {"wm-3"}  # wm-3 was cut mid-answer: recovery's
    assert set(answered.values()) == {1}
    tokenless = [r for r in wecom_server.requests if r.api == SYNC and "token" not in r.json]
    assert [r.json.get("cursor") for r in tokenless] == ["cur2", "cur4"]  # one sync, two pages
    assert wecom_server.kf_tokenless_syncs == {KFID: 2}
    assert await KfState(core.engine).cursor("shop", KFID) == "cur6"


async def test_a_callback_during_a_sync_makes_the_loop_sync_again(
    wecom_server: FakePlatform, start_kf: StartKf, core: App
) -> None:
    wecom_server.add_kf_message("wm-1", "积分会过期吗？")
    kf: Kf | None = None

    async def second_message_meanwhile(msg: InboundMessage) -> Reply:
        if msg.sender.external_id == "wm-1" and kf is not None:
            wecom_server.add_kf_message("wm-2", "积分会过期吗？")
            status, _ = await post(kf.url, *callback_body(wecom_server))
            assert status == 200
        return await core.pipeline.handle(msg)

    kf = await start_kf(second_message_meanwhile)
    await callback(kf, wecom_server)
    assert sorted(s["touser"] for s in wecom_server.kf_sent) == ["wm-1", "wm-2"]
    assert wecom_server.count(SYNC) == 2  # one loop, run twice; never two loops at once


async def test_no_send_outside_the_48_hour_window(
    wecom_server: FakePlatform, start_kf: StartKf, caplog: pytest.LogCaptureFixture
) -> None:
    wecom_server.add_kf_message("wm-1", "积分会过期吗？")
    wecom_server.clock.advance(48 * 3600 + 60)
    kf = await start_kf()
    with caplog.at_level(logging.INFO, logger="adapters.wecom.kf_channel"):
        await callback(kf, wecom_server)
    assert wecom_server.count(SEND) == 0  # refused by us, not by the platform
    assert any("window of wm-1 closed" in r.getMessage() for r in caplog.records)


async def test_a_long_answer_is_capped_at_five_messages(
    wecom_server: FakePlatform, start_kf: StartKf, core: App
) -> None:
    async def verbose(msg: InboundMessage) -> Reply:
        await core.pipeline.handle(msg)  # records the member and opens the window
        return TextReply("这是一个非常长的回答。" * 1000)

    wecom_server.add_kf_message("wm-1", "说说你们的一切")
    wecom_server.add_kf_message("wm-1", "店员补充", origin=5)  # not a customer: no new window
    kf = await start_kf(verbose)
    await callback(kf, wecom_server)
    parts = sent_to(wecom_server, "wm-1")
    assert len(parts) == SENDS_PER_WINDOW
    assert all(len(p.encode()) <= 2048 for p in parts)
    assert parts[-1].endswith("…")
    assert await core.store.contacts.remaining(WM1, now(wecom_server)) == 0


async def test_window_closed_by_the_platform_is_recorded(
    wecom_server: FakePlatform, start_kf: StartKf, core: App
) -> None:
    wecom_server.add_kf_message("wm-1", "积分会过期吗？")
    wecom_server.fail_next(SEND, 95002)
    kf = await start_kf()
    await callback(kf, wecom_server)
    assert wecom_server.kf_sent == []
    assert wecom_server.count(SEND) == 1
    assert await core.store.contacts.remaining(WM1, now(wecom_server)) == 0


@pytest.mark.parametrize("state", [2, 3])
async def test_silent_while_a_person_owns_the_session(
    wecom_server: FakePlatform, start_kf: StartKf, state: int
) -> None:
    wecom_server.service_states[(KFID, "wm-1")] = state
    wecom_server.add_kf_message("wm-1", "积分会过期吗？")
    kf = await start_kf()
    await callback(kf, wecom_server)
    assert wecom_server.count(STATE_GET) == 1
    assert wecom_server.count(SEND) == 0


async def test_handoff_tells_the_member_then_moves_to_the_human_queue(
    wecom_server: FakePlatform, start_kf: StartKf
) -> None:
    wecom_server.add_kf_message("wm-1", "转人工")
    kf = await start_kf()
    await callback(kf, wecom_server)
    assert sent_to(wecom_server, "wm-1") == [HANDOFF_TEXT]
    [trans] = [r.json for r in wecom_server.requests if r.api == TRANS]
    assert trans == {"open_kfid": KFID, "external_userid": "wm-1", "service_state": 2}
    assert wecom_server.service_states[(KFID, "wm-1")] == 2
    wecom_server.add_kf_message("wm-1", "积分会过期吗？")  # a person owns the chat now
    await callback(kf, wecom_server)
    assert sent_to(wecom_server, "wm-1") == [HANDOFF_TEXT]


async def test_handoff_to_a_named_servicer(wecom_server: FakePlatform, start_kf: StartKf) -> None:
    wecom_server.add_kf_message("wm-1", "人工客服")
    kf = await start_kf(accounts=[account(wecom_server, servicer_userid="zhangsan")])
    await callback(kf, wecom_server)
    [trans] = [r.json for r in wecom_server.requests if r.api == TRANS]
    assert trans["service_state"] == 3
    assert trans["servicer_userid"] == "zhangsan"
    assert sent_to(wecom_server, "wm-1") == [HANDOFF_TEXT]


def _bomb() -> bytes:
    return (
        b'<?xml version="1.0"?><!DOCTYPE xml [<!ENTITY a "aaaaaaaaaa">'
        b'<!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">]><xml><Encrypt>&b;</Encrypt></xml>'
    )


async def test_hostile_callbacks_get_4xx_and_the_server_stays_up(
    wecom_server: FakePlatform, start_kf: StartKf
) -> None:
    kf = await start_kf()
    body, query = callback_body(wecom_server)
    wrong_corp, wrong_query = callback_body(wecom_server, crypto=crypto_for(wecom_server, "wwx"))
    cases: list[tuple[str, bytes, dict[str, str], int]] = [
        (kf.url.replace("/shop", "/nobody"), body, query, 404),
        (kf.url, body, {**query, "msg_signature": "f" * 40}, 401),
        (kf.url, body, {**query, "msg_signature": "not-hex"}, 401),
        (kf.url, wrong_corp, wrong_query, 403),
        (kf.url, b"<xml><Encrypt>!!!</Encrypt></xml>", query, 401),
        (kf.url, b"<xml><Encrypt>", query, 400),
        (kf.url, b"<xml></xml>", query, 400),
        (kf.url, _bomb(), query, 400),
        (kf.url, b"<xml>" + b"a" * 10_000_000 + b"</xml>", query, 413),
        # The query checks every callback shares: missing or oversized parameters.
        (kf.url, body, {k: v for k, v in query.items() if k != "nonce"}, 400),
        (kf.url, body, {**query, "timestamp": "1" * 5000}, 400),
        (kf.url, body, {**query, "timestamp": "²"}, 400),
        # A replay: correctly signed, an hour ago.
        (kf.url, *callback_body(wecom_server, timestamp=str(int(time.time()) - 3600)), 401),
    ]
    for url, payload, params, expected in cases:
        status, _ = await post(url, payload, params)
        assert status == expected, (expected, payload[:40])
    # Bad base64, correctly signed: refused by the decryption.
    crypto = crypto_for(wecom_server)
    bad = "!!!notbase64"
    now = now_timestamp()
    signed = {"timestamp": now, "nonce": "n", "msg_signature": crypto.signature(now, "n", bad)}
    status, _ = await post(kf.url, build_xml({"Encrypt": bad}).encode(), signed)
    assert status == 400
    wecom_server.add_kf_message("wm-1", "积分会过期吗？")
    await callback(kf, wecom_server)
    assert len(wecom_server.kf_sent) == 1


async def test_other_events_are_acknowledged_and_ignored(
    wecom_server: FakePlatform, start_kf: StartKf
) -> None:
    kf = await start_kf()
    status, raw = await post(kf.url, *callback_body(wecom_server, Event="change_contact"))
    assert (status, raw) == (200, b"")
    status, _ = await post(kf.url, *callback_body(wecom_server, Token=""))
    assert status == 400
    await kf.settle()
    assert wecom_server.count(SYNC) == 0


async def test_concurrent_callbacks_answer_once(
    wecom_server: FakePlatform, start_kf: StartKf
) -> None:
    for user in ("wm-1", "wm-2"):
        wecom_server.add_kf_message(user, "积分会过期吗？")
    kf = await start_kf()
    results = await asyncio.gather(*(post(kf.url, *callback_body(wecom_server)) for _ in range(3)))
    assert all(status == 200 for status, _ in results)
    await kf.settle()
    assert sorted(s["touser"] for s in wecom_server.kf_sent) == ["wm-1", "wm-2"]
    assert wecom_server.count(SEND) == 2


async def test_the_bot_answers_again_when_the_agent_ends_the_session(
    wecom_server: FakePlatform, start_kf: StartKf, core: App
) -> None:
    wecom_server.add_kf_message("wm-1", "转人工")
    kf = await start_kf(session_ended=core.pipeline.human_session_ended)
    await callback(kf, wecom_server)
    member = await core.store.get_member("kf.shop", "wm-1")
    assert member is not None
    assert member.handoff
    # The agent closes the session on the platform; the platform puts the session back to 0.
    event = {"event_type": "session_status_change", "open_kfid": KFID, "external_userid": "wm-1",
             "change_type": 3, "old_servicer_userid": "zhangsan"}  # fmt: skip
    wecom_server.kf_messages[KFID].append(
        {
            "msgid": "ev-end",
            "send_time": 1772000000,
            "origin": 4,
            "msgtype": "event",
            "event": event,
        }
    )
    wecom_server.service_states[(KFID, "wm-1")] = 0
    wecom_server.add_kf_message("wm-1", "积分会过期吗？")
    await callback(kf, wecom_server)
    member = await core.store.get_member("kf.shop", "wm-1")
    assert member is not None
    assert not member.handoff
    answers = sent_to(wecom_server, "wm-1")
    assert answers[0] == HANDOFF_TEXT
    assert len(answers) == 2
    assert "积分" in answers[1]
