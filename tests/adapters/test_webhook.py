"""The generic JSON webhook on the real core (App: SQLite, Chroma, hash embedder) over real HTTP:
signed messages in, signed replies out, hostile requests refused with 4xx, pushes signed."""

from __future__ import annotations

import asyncio
import io
import json
import re
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import sqlalchemy as sa
from aiohttp import web

from adapters.freshness import MalformedTimestamp
from adapters.webhook import PushError, WebhookPusher, create_webhook_app
from adapters.webhook.config import Bridge
from adapters.webhook.contract import ContractError, parse_message, render_reply
from adapters.webhook.signing import (
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    SignatureMismatch,
    signed_headers,
    verify,
)
from bot.app import App
from bot.demo import DEMO_DIR
from bot.inbox import Inbox
from bot.settings import Settings
from bot.types import InboundMessage, Reply, TextReply
from knowledge.types import Citation
from tests.sql import sql_engine

SECRET = "a-shared-secret-of-bridge"
BRIDGE = Bridge(name="bridge", secret=SECRET, store_id="sh-xuhui")
MAX_BODY = 65_536


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[str]:
    settings = Settings(
        _env_file=None, data_dir=tmp_path / "data", llm={},
        knowledge={"embedding": "hash", "refresh_seconds": 0},
        bot={"name": "小域"},
    )  # fmt: skip
    app = await App.build(settings)
    await app.knowledge.ingest_path(DEMO_DIR / "faq.csv")
    root = web.Application(client_max_size=MAX_BODY)
    root.add_subapp(
        "/hooks/", create_webhook_app(app.inbox.handle, [BRIDGE], max_body_bytes=MAX_BODY)
    )
    runner = web.AppRunner(root)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield f"http://127.0.0.1:{port}/hooks/bridge"
    finally:
        await runner.cleanup()
        await app.close()


def message(**fields: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "id": "m-1", "conversation": "member-1", "sender": {"id": "wx-1", "name": "小明"},
        "text": "积分会过期吗？",
    }  # fmt: skip
    base.update(fields)
    return base


async def post(
    url: str, payload: Any, *, secret: str = SECRET, headers: dict[str, str] | None = None
) -> tuple[int, dict[str, Any], bytes, dict[str, str]]:
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    sent = {"Content-Type": "application/json", **signed_headers(secret, body), **(headers or {})}
    data = io.BytesIO(body)  # aiohttp warns about large raw-bytes bodies
    async with aiohttp.ClientSession() as http, http.post(url, data=data, headers=sent) as resp:
        raw = await resp.read()
        return resp.status, json.loads(raw), raw, dict(resp.headers)


async def test_member_question_gets_a_signed_answer(server: str) -> None:
    status, data, raw, headers = await post(server, message())
    assert status == 200
    verify(SECRET, headers, raw)  # the response is signed with the bridge's secret
    assert data["status"] == "replied"
    assert "次年 12 月 31 日" in data["reply"]["text"]
    assert data["reply"]["kind"] == "answer"
    text = data["reply"]["text"]
    assert text.count("（来源：") == 1
    assert text.endswith("（来源：常见问题）")  # faq.csv has no title: named by its kind
    assert data["reply"]["citations"] == [{"title": "常见问题"}]  # titles only, no file names
    assert "faq.csv" not in raw.decode()


async def test_retried_message_is_answered_once(server: str) -> None:
    first = await post(server, message(id="m-retry"))
    second = await post(server, message(id="m-retry"))
    assert first[1]["status"] == "replied"
    assert second[1] == {"status": "silent", "reason": "duplicate", "reply": None}


async def test_group_messages_need_an_address(server: str) -> None:
    group = {"conversation": "group-9", "is_group": True}
    _, quiet, _, _ = await post(server, message(id="g-1", **group))
    assert quiet["status"] == "silent"
    assert quiet["reason"] == "not addressed"
    _, mentioned, _, _ = await post(server, message(id="g-2", mentioned_bot=True, **group))
    assert mentioned["status"] == "replied"
    assert mentioned["reply"]["quote"] == "小明"
    _, named, _, _ = await post(server, message(id="g-3", text="小域，积分会过期吗？", **group))
    assert named["status"] == "replied"


def _body(**fields: str) -> bytes:
    """A message body with some fields replaced by raw JSON text (numbers, escapes, nulls)."""
    raw = json.dumps(message())
    for name, value in fields.items():
        raw = raw.replace(f'"{name}": {json.dumps(message()[name])}', f'"{name}": {value}')
    return raw.encode()


def _stamp(value: str) -> dict[str, str]:
    return {TIMESTAMP_HEADER: value}


# What an attacker or a broken bridge sends, and the 4xx (with a word of its error) it gets.
# fmt: off
HOSTILE = [
    pytest.param(message(), "the-wrong-secret-entirely", None, 401, "signature", id="secret"),
    pytest.param(message(), SECRET, _stamp("1000000000"), 401, "old", id="stale"),
    pytest.param(message(), SECRET, _stamp(str(int(time.time()) + 3600)), 401, "future",
                 id="future"),
    pytest.param(message(), SECRET, {SIGNATURE_HEADER: "sha256=" + "0" * 64}, 401, "signature",
                 id="signature"),
    pytest.param(message(), SECRET, _stamp(""), 401, "missing", id="no-timestamp"),
    pytest.param(message(), SECRET, _stamp("²"), 400, TIMESTAMP_HEADER, id="superscript-two"),
    pytest.param(message(), SECRET, _stamp("１７７２０００００００"), 400, TIMESTAMP_HEADER,
                 id="full-width-digits"),
    pytest.param(message(), SECRET, _stamp("9" * 5000), 400, TIMESTAMP_HEADER, id="huge-stamp"),
    pytest.param(message(), SECRET, _stamp("-1"), 400, TIMESTAMP_HEADER, id="negative-stamp"),
    pytest.param(message(), SECRET, _stamp("1e9"), 400, TIMESTAMP_HEADER, id="float-stamp"),
    pytest.param(b"{not json", SECRET, None, 400, "not valid JSON", id="not-json"),
    pytest.param(b"[1, 2, 3]", SECRET, None, 400, "object", id="array"),
    pytest.param(b"\xff\xfe\x00garbage", SECRET, None, 400, "JSON", id="not-utf8"),
    pytest.param(b"[" * 100_00 + b"]" * 100_00, SECRET, None, 400, "JSON", id="deep"),
    pytest.param(b'{"id": ' + b"9" * 5000 + b"}", SECRET, None, 400, "number", id="huge-id"),
    pytest.param(_body(text="9" * 5000), SECRET, None, 400, "number", id="huge-text-number"),
    pytest.param(_body(conversation="-" + "9" * 5000), SECRET, None, 400, "number",
                 id="huge-negative"),
    pytest.param(message(is_group=int("9" * 40)), SECRET, None, 400, "is_group",
                 id="big-int-flag"),
    pytest.param(_body(text="1e999"), SECRET, None, 400, "text", id="float-overflow"),
    pytest.param(_body(text="NaN"), SECRET, None, 400, "text", id="nan"),
    pytest.param(message(sender="小明"), SECRET, None, 400, "sender", id="sender-str"),
    pytest.param(message(sender=[]), SECRET, None, 400, "sender", id="sender-list"),
    pytest.param(message(text=""), SECRET, None, 400, "text", id="empty-text"),
    pytest.param(message(text=42), SECRET, None, 400, "text", id="text-int"),
    pytest.param(message(text=None), SECRET, None, 400, "text", id="text-null"),
    pytest.param(message(text="长" * 2001), SECRET, None, 400, "text", id="text-long"),
    pytest.param(message(id=7), SECRET, None, 400, "id", id="id-int"),
    pytest.param(message(is_group="yes"), SECRET, None, 400, "is_group", id="flag-str"),
    pytest.param(message(mentioned_bot=1), SECRET, None, 400, "mentioned_bot", id="flag-int"),
    pytest.param(message(store_id=3), SECRET, None, 400, "store_id", id="store-int"),
    pytest.param(_body(text='"a\\ud800b"'), SECRET, None, 400, "text: lone surrogate U+D800",
                 id="lone-surrogate"),
    pytest.param(_body(text='"\\udc00"'), SECRET, None, 400, "U+DC00", id="lone-low"),
    pytest.param(message(sender={"id": "wx-1", "name": "\ud83d"}), SECRET, None, 400,
                 "sender.name: lone surrogate", id="surrogate-name"),
    pytest.param('{"id": "m", "text": "\udfff"}'.encode("utf-8", "surrogatepass"), SECRET, None,
                 400, "U+DFFF", id="surrogate-bytes"),
]
# fmt: on


@pytest.mark.parametrize(("payload", "secret", "headers", "status", "says"), HOSTILE)
async def test_hostile_requests_get_a_clear_4xx(
    server: str,
    payload: Any,
    secret: str,
    headers: dict[str, str] | None,
    status: int,
    says: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    got, data, _, _ = await post(server, payload, secret=secret, headers=headers)
    assert (got, says in data["error"]) == (status, True), data
    assert "Traceback" not in caplog.text
    ok, answer, _, _ = await post(server, message(id=f"after-{status}-{len(str(payload))}"))
    assert ok == 200  # the server is still up and answering
    assert answer["status"] == "replied"


async def test_emoji_are_text_not_refused(server: str) -> None:
    england = "🏴\U000e0067\U000e0062\U000e0065\U000e006e\U000e0067\U000e007f"
    text = f"积分会过期吗？👨\u200d👩\u200d👧 🇨🇳 {england} ❤\ufe0f"
    status, data, _, _ = await post(server, message(id="emoji", text=text))
    assert (status, data["status"]) == (200, "replied")
    assert "次年 12 月 31 日" in data["reply"]["text"]


async def test_unknown_bridge_and_huge_body(server: str) -> None:
    status, _, _, _ = await post(server.replace("/bridge", "/nobody"), message())
    assert status == 404
    status, _, _, _ = await post(server, b"x" * (10 * 1024 * 1024))
    assert status == 413


def test_signature_helpers_refuse_tampering() -> None:
    body = b'{"a": 1}'
    headers = signed_headers(SECRET, body, clock=lambda: 1_700_000_000)
    verify(SECRET, headers, body, clock=lambda: 1_700_000_100)
    with pytest.raises(SignatureMismatch):
        verify(SECRET, headers, body + b" ", clock=lambda: 1_700_000_100)
    with pytest.raises(SignatureMismatch):
        verify(SECRET, headers, body, clock=lambda: 1_700_001_000)
    with pytest.raises(MalformedTimestamp):
        verify(SECRET, {TIMESTAMP_HEADER: "9" * 40, SIGNATURE_HEADER: "x"}, body)
    with pytest.raises(MalformedTimestamp):
        verify(SECRET, {TIMESTAMP_HEADER: "²", SIGNATURE_HEADER: "x"}, body)


async def test_push_is_signed_and_failures_are_typed() -> None:
    received: list[tuple[dict[str, str], bytes]] = []

    async def bridge(request: web.Request) -> web.Response:
        received.append((dict(request.headers), await request.read()))
        return web.Response(status=204 if len(received) == 1 else 500)

    app = web.Application()
    app.router.add_post("/push", bridge)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    url = f"http://127.0.0.1:{runner.addresses[0][1]}/push"
    try:
        async with aiohttp.ClientSession() as http:
            pusher = WebhookPusher(http, Bridge(name="bridge", secret=SECRET, push_url=url))
            push_id = await pusher.push("group-9", "今日特价：鲜奶 9.9 元", mention=["wx-1"])
            headers, body = received[0]
            verify(SECRET, headers, body)
            assert json.loads(body) == {
                "type": "push", "id": push_id, "conversation": "group-9",
                "text": "今日特价：鲜奶 9.9 元", "mention": ["wx-1"],
            }  # fmt: skip
            with pytest.raises(PushError, match="HTTP 500") as failed:
                await pusher.push("group-9", "again")
            assert (failed.value.reason, failed.value.retryable) == ("transport", True)
    finally:
        await runner.cleanup()
    async with aiohttp.ClientSession() as http:
        with pytest.raises(ValueError, match="push_url"):
            WebhookPusher(http, BRIDGE)


def test_reply_citations_are_titles_once_never_file_names() -> None:
    cites = (
        Citation("d1", "faq.csv", "常见问题", 1, "c1"),
        Citation("d1", "faq.csv", "常见问题", 1, "c2"),
        Citation("d2", "winter.md", "冬季常见问题", 1, "c3"),
    )
    text = "下雪天照常送货。\n（来源：常见问题、冬季常见问题）"
    reply = TextReply(text, cites, answered_by="llm")
    body = render_reply(reply)
    assert body["reply"]["citations"] == [{"title": "常见问题"}, {"title": "冬季常见问题"}]
    assert body["reply"]["text"] == reply.text
    assert ".csv" not in json.dumps(body)
    assert ".md" not in json.dumps(body)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (b'{"id": "1", "conversation": "c", "sender": "x", "text": "hi"}', "sender"),
        (b'{"id": "1", "conversation": "c", "sender": {"id": " "}, "text": "hi"}', "sender.id"),
        (b'{"id": "1", "conversation": "c", "sender": {"id": "a"}, "text": " "}', "text"),
        (b'{"id": "1", "sender": {"id": "a"}, "text": "hi"}', "conversation"),
        (b'{"id": ' + b"9" * 40 + b', "conversation": "c", "sender": {"id": "a"}}', "id"),
        (
            b'{"id": "1", "conversation": "c", "sender": {"id": "a"}, "text": "h", "is_group": 1}',
            "is_group",
        ),
    ],
)
def test_contract_errors_name_the_field(body: bytes, field: str) -> None:
    with pytest.raises(ContractError, match=rf"^{re.escape(field)}: "):
        parse_message(body, channel="webhook.t", received_at=datetime.now(UTC), store_id=None)


def test_contract_trims_and_defaults() -> None:
    body = (
        b'{"id": " m-1 ", "conversation": "c", "sender": {"id": "a", "name": null}, "text": " hi "}'
    )
    msg = parse_message(body, channel="webhook.t", received_at=datetime.now(UTC), store_id="sh-1")
    assert (msg.id, msg.text, msg.sender.display_name, msg.store_id) == ("m-1", "hi", "", "sh-1")
    assert not msg.is_group
    assert not msg.mentioned_bot


@pytest.fixture
async def served(tmp_path: Path) -> AsyncIterator[tuple[str, App]]:
    """The webhook wired as ``siyu serve`` wires it: through the inbox, with its handback."""
    settings = Settings(
        _env_file=None, data_dir=tmp_path / "data", llm={},
        knowledge={"embedding": "hash", "refresh_seconds": 0},
    )  # fmt: skip
    app = await App.build(settings)
    await app.knowledge.ingest_path(DEMO_DIR / "faq.csv")
    hooks = create_webhook_app(
        app.inbox.respond, [BRIDGE], max_body_bytes=MAX_BODY, responded=app.inbox.responded
    )
    root = web.Application(client_max_size=MAX_BODY)
    root.add_subapp("/hooks/", hooks)
    runner = web.AppRunner(root)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}/hooks/bridge", app
    finally:
        await runner.cleanup()
        await app.close()


async def _rename(app: App, old: str, new: str) -> None:
    async with app.engine.begin() as conn:
        await conn.execute(sa.text(f"ALTER TABLE {old} RENAME TO {new}"))


async def test_a_database_failure_is_a_503_the_bridge_retries(
    served: tuple[str, App],
) -> None:
    url, app = served
    await _rename(app, "member", "member_away")  # every member query fails, as in an outage
    try:
        status, data, _, headers = await post(url, message(id="m-outage"))
    finally:
        await _rename(app, "member_away", "member")
    assert status == 503, "a failure is not dressed up as a reply"
    assert data["error"] == "unavailable"
    assert int(headers["Retry-After"]) >= 1
    status, data, _, _ = await post(url, message(id="m-outage"))  # the bridge's retry
    assert status == 200
    assert data["status"] == "replied"
    assert "次年 12 月 31 日" in data["reply"]["text"]
    again = await post(url, message(id="m-outage"))
    assert again[1] == {"status": "silent", "reason": "duplicate", "reply": None}


class Gated:
    """The answer function behind a real inbox: held until ``gate`` opens, then a fixed text."""

    def __init__(self) -> None:
        self.gate = asyncio.Event()
        self.started = asyncio.Event()
        self.answered = 0

    async def __call__(self, msg: InboundMessage) -> Reply:
        self.started.set()
        await self.gate.wait()
        self.answered += 1
        return TextReply(f"答：{msg.text}", answered_by="extractive")


@pytest.fixture
async def gated(tmp_path: Path) -> AsyncIterator[tuple[str, Gated]]:
    """The webhook over a real inbox (SQLite) whose answers wait for the test: a slow LLM."""
    answer = Gated()
    async with sql_engine("sqlite", tmp_path) as engine:
        inbox = Inbox(engine, answer, join_wait=30)
        hooks = create_webhook_app(
            inbox.respond, [BRIDGE], max_body_bytes=MAX_BODY, responded=inbox.responded
        )
        root = web.Application(client_max_size=MAX_BODY)
        root.add_subapp("/hooks/", hooks)
        runner = web.AppRunner(root)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        try:
            yield f"http://127.0.0.1:{runner.addresses[0][1]}/hooks/bridge", answer
        finally:
            answer.gate.set()
            await runner.cleanup()
            await inbox.settle()


async def impatient_post(url: str, payload: dict[str, Any]) -> None:
    """A bridge whose own timeout is shorter than the answer: it hangs up."""
    body = json.dumps(payload).encode()
    headers = {"Content-Type": "application/json", **signed_headers(SECRET, body)}
    timeout = aiohttp.ClientTimeout(total=0.3)
    async with aiohttp.ClientSession(timeout=timeout) as http:
        with pytest.raises(TimeoutError):
            async with http.post(url, data=body, headers=headers) as resp:
                await resp.read()


async def until_answered(answer: Gated, count: int) -> None:
    for _ in range(200):
        if answer.answered >= count:
            return
        await asyncio.sleep(0.05)
    raise AssertionError("the answer never finished")


async def test_a_bridge_that_timed_out_gets_the_answer_on_its_retry(
    gated: tuple[str, Gated],
) -> None:
    url, answer = gated
    await impatient_post(url, message(id="slow-1"))
    answer.gate.set()
    await until_answered(answer, 1)
    await asyncio.sleep(0.3)  # the handler finds its bridge gone and hands the answer back
    status, data, _, _ = await post(url, message(id="slow-1"))  # the bridge's retry
    assert (status, data["status"]) == (200, "replied")
    assert data["reply"]["text"] == "答：积分会过期吗？"
    again = await post(url, message(id="slow-1"))
    assert again[1] == {"status": "silent", "reason": "duplicate", "reply": None}
    assert answer.answered == 1, "answered once"


async def test_a_retry_that_joins_a_gone_bridges_answer_gets_it(
    gated: tuple[str, Gated],
) -> None:
    """The retry arrives while the first request is still answering; the first request's bridge
    has gone by the time the answer is ready: the retry (the latest request) gets it."""
    url, answer = gated
    await impatient_post(url, message(id="slow-2"))
    await answer.started.wait()
    retry = asyncio.create_task(post(url, message(id="slow-2")))
    await asyncio.sleep(0.3)
    assert not retry.done(), "the retry waits for the answer being made"
    answer.gate.set()
    status, data, _, _ = await retry
    assert (status, data["status"]) == (200, "replied")
    assert answer.answered == 1
