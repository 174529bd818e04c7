"""The server's limits over real sockets on 127.0.0.1, as ``siyu serve`` runs them (``start_web``
with the webhook mounted on the web chat): oversized and slow bodies, slow headers, idle
connections, the connection cap, and load shedding (webhook 503, web chat ``busy``).

Timeouts are set small here; the assertions on time are generous upper bounds that only prove
"does not hang" (speed is measured in ``bench/``)."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from adapters.admission import Admission
from adapters.limits import Throttled
from adapters.web import create_web_app, start_web
from adapters.web.config import WebSettings
from adapters.web.connections import ACCEPT_ERROR, AcceptErrorLog, connection_cap
from adapters.webhook import create_webhook_app
from adapters.webhook.config import Bridge
from adapters.webhook.signing import signed_headers
from bot.types import InboundMessage, Reply, TextReply
from tests.adapters.conftest import BOT_NAME, BRAND, join, receive

SECRET = "a-shared-secret-of-bridge"
BRIDGE = Bridge(name="bridge", secret=SECRET)
TIMEOUT_S = 0.5
GUARD_S = 10.0
"""Only stops a broken test from hanging."""


class GatedBot:
    """Answers once :attr:`gate` is set; remembers what it was asked."""

    def __init__(self) -> None:
        self.gate = asyncio.Event()
        self.gate.set()
        self.seen: list[str] = []
        self.started = asyncio.Event()

    async def __call__(self, msg: InboundMessage, /) -> Reply:
        self.seen.append(msg.text)
        self.started.set()
        await self.gate.wait()
        return TextReply(f"echo:{msg.text}")


@dataclass
class Server:
    url: str
    host: str
    port: int
    bot: GatedBot


Start = Callable[..., Awaitable[Server]]


@pytest.fixture
async def start() -> AsyncIterator[Start]:
    runners: list[web.AppRunner] = []

    async def run(admission: Admission | None = None, **limits: Any) -> Server:
        config = WebSettings(host="127.0.0.1", port=0, **{
            "idle_timeout": TIMEOUT_S, "body_timeout": TIMEOUT_S, **limits,
        })  # fmt: skip
        bot = GatedBot()
        admission = admission or Admission(
            queue=config.answer_queue, wait=config.answer_wait_seconds
        )
        app = create_web_app(bot, config, bot_name=BOT_NAME, brand=BRAND, admission=admission)
        hooks = create_webhook_app(
            bot, [BRIDGE], max_body_bytes=config.max_body_bytes, admission=admission
        )
        app.add_subapp("/hooks/", hooks)
        runner, url = await start_web(app, config)
        runners.append(runner)
        return Server(url, "127.0.0.1", runner.addresses[0][1], bot)

    yield run
    for runner in runners:
        await runner.cleanup()


async def raw(server: Server, data: bytes) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A plain TCP connection that has sent ``data``."""
    reader, writer = await asyncio.open_connection(server.host, server.port)
    writer.write(data)
    await writer.drain()
    return reader, writer


async def response(reader: asyncio.StreamReader) -> bytes:
    """Everything the server sends until it closes the connection."""
    return await asyncio.wait_for(reader.read(), GUARD_S)


def hook_headers(body: bytes, length: int | None = None) -> bytes:
    head = {**signed_headers(SECRET, body), "Content-Type": "application/json"}
    head["Content-Length"] = str(len(body) if length is None else length)
    lines = "".join(f"{k}: {v}\r\n" for k, v in head.items())
    return f"POST /hooks/bridge HTTP/1.1\r\nHost: t\r\n{lines}\r\n".encode()


def hook_message(text: str, msg_id: str) -> bytes:
    sender = {"id": "wx-1", "name": "小明"}
    return json.dumps({"id": msg_id, "conversation": "c", "sender": sender, "text": text}).encode()


async def post_hook(server: Server, text: str, msg_id: str) -> tuple[int, dict[str, Any], str]:
    body = hook_message(text, msg_id)
    headers = {**signed_headers(SECRET, body), "Content-Type": "application/json"}
    async with (
        aiohttp.ClientSession() as http,
        http.post(server.url + "hooks/bridge", data=body, headers=headers) as resp,
    ):
        return resp.status, await resp.json(), resp.headers.get("Retry-After", "")


# --- bodies ----------------------------------------------------------------------------------


async def test_an_oversized_body_is_refused_before_it_is_sent(start: Start) -> None:
    server = await start()
    body = b"x" * 20
    reader, writer = await raw(server, hook_headers(body, length=1024 * 1024))  # no body follows
    answer = await response(reader)
    writer.close()
    assert answer.startswith(b"HTTP/1.1 413")
    assert b"32768" in answer  # the default limit, adapters.MAX_REQUEST_BYTES
    assert server.bot.seen == []


async def test_a_chunked_body_is_cut_as_it_passes_the_limit(start: Start) -> None:
    server = await start(max_body_bytes=4096)
    head = hook_headers(b"{}").replace(b"Content-Length: 2\r\n", b"Transfer-Encoding: chunked\r\n")
    reader, writer = await raw(server, head)
    chunk = b"a" * 2048
    for _ in range(4):  # 8 KiB, chunk by chunk; the server answers past 4 KiB
        writer.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
    await writer.drain()
    answer = await response(reader)
    writer.close()
    assert answer.startswith(b"HTTP/1.1 413")
    assert server.bot.seen == []


async def test_a_webhook_without_signature_headers_is_refused_before_its_body(
    start: Start,
) -> None:
    server = await start()
    head = b"POST /hooks/bridge HTTP/1.1\r\nHost: t\r\nContent-Length: 20000\r\n\r\n"
    reader, writer = await raw(server, head)  # the 20,000 bytes never come: nothing waits on them
    status_line = await asyncio.wait_for(reader.readline(), GUARD_S)
    writer.close()
    assert status_line.startswith(b"HTTP/1.1 401")


async def test_a_slow_body_is_cut_with_408(start: Start, caplog: pytest.LogCaptureFixture) -> None:
    server = await start()
    body = hook_message("积分会过期吗？", "m-slow")
    reader, writer = await raw(server, hook_headers(body) + body[:10])  # ... and the rest never
    with caplog.at_level(logging.INFO, logger="adapters.limits"):
        answer = await response(reader)
    writer.close()
    assert answer.startswith(b"HTTP/1.1 408")
    assert server.bot.seen == []
    assert "cut a request body" in caplog.text
    assert "Traceback" not in caplog.text
    # The server is fine: the next message is answered.
    assert (await post_hook(server, "还在吗", "m-next"))[0] == 200


async def test_a_slow_answer_is_not_cut_by_the_body_timeout(start: Start) -> None:
    server = await start()
    server.bot.gate.clear()
    asking = asyncio.create_task(post_hook(server, "慢慢来", "m-1"))
    await asyncio.sleep(TIMEOUT_S * 3)  # well past the body timeout: the body was complete
    server.bot.gate.set()
    status, payload, _ = await asyncio.wait_for(asking, GUARD_S)
    assert (status, payload["reply"]["text"]) == (200, "echo:慢慢来")


# --- connections -----------------------------------------------------------------------------


async def test_headers_sent_a_byte_at_a_time_are_cut_by_the_idle_timeout(start: Start) -> None:
    server = await start()
    reader, writer = await raw(server, b"GET /healthz HTTP/1.1\r\nHost: t\r\n")
    for _ in range(int(GUARD_S / 0.1)):  # keep dripping header bytes; the server hangs up
        if reader.at_eof():
            break
        writer.write(b"X")
        await asyncio.sleep(0.1)
        with_data = await _read_if_any(reader)
        assert not with_data.startswith(b"HTTP/1.1 200")
    assert reader.at_eof()
    writer.close()


async def _read_if_any(reader: asyncio.StreamReader) -> bytes:
    try:
        return await asyncio.wait_for(reader.read(1024), 0.01)
    except TimeoutError:
        return b""


async def test_an_idle_keep_alive_connection_is_closed(start: Start) -> None:
    server = await start()
    reader, writer = await raw(server, b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n")
    answer = await response(reader)  # 200, then (idle) closed by the server
    writer.close()
    assert answer.startswith(b"HTTP/1.1 200")
    assert answer.endswith(b'{"status": "ok"}')


async def test_past_the_cap_the_longest_idle_connection_makes_room(start: Start) -> None:
    server = await start(max_connections=4, idle_timeout=GUARD_S * 3)
    idle = [await raw(server, b"") for _ in range(4)]
    await asyncio.sleep(0.05)
    async with aiohttp.ClientSession() as http, http.get(server.url + "healthz") as resp:
        assert (resp.status, await resp.json()) == (200, {"status": "ok"})
    first_reader, _ = idle[0]
    assert await asyncio.wait_for(first_reader.read(), GUARD_S) == b""  # the oldest was closed
    assert not idle[-1][0].at_eof()
    for _, writer in idle:
        writer.close()


async def test_past_the_cap_with_every_connection_busy_a_new_one_gets_503(
    start: Start,
) -> None:
    server = await start(max_connections=3)
    async with aiohttp.ClientSession() as http:
        sockets = [await join(http, server.url, f"m-{n}", f"会员{n}") for n in range(3)]
        reader, writer = await raw(server, b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n")
        answer = await response(reader)
        writer.close()
        assert answer.startswith(b"HTTP/1.1 503")
        assert b"Retry-After: 1" in answer
        # The chats that were open keep working.
        await sockets[0].send_json({"type": "message", "text": "还在吗"})
        assert (await receive(sockets[0]))["text"] == "echo:还在吗"
        for ws in sockets:
            await ws.close()


def test_the_cap_fits_the_open_file_limit() -> None:
    assert connection_cap(512, fd_limit=1024 * 1024) == 512
    assert connection_cap(512, fd_limit=1024) == 512  # 1024 - 256 reserved
    assert connection_cap(512, fd_limit=256) == 64  # 192 kept: one accept batch and the rest
    assert connection_cap(512, fd_limit=100) == 1


def test_recurring_conditions_are_logged_once_per_interval(
    caplog: pytest.LogCaptureFixture,
) -> None:
    now = [0.0]
    throttled = Throttled("pressure", interval=10.0, monotonic=lambda: now[0])
    handler = AcceptErrorLog(throttled)
    loop = asyncio.new_event_loop()
    passed: list[dict[str, Any]] = []
    try:
        loop.set_exception_handler(lambda _loop, context: passed.append(context))
        AcceptErrorLog.install(loop, throttled)
        AcceptErrorLog.install(loop, throttled)  # once
        handler = loop.get_exception_handler()  # type: ignore[assignment]
        error = {"message": ACCEPT_ERROR, "exception": OSError(24, "Too many open files")}
        with caplog.at_level(logging.WARNING):
            for second in range(25):
                now[0] = float(second)
                for _ in range(100):  # a hundred failed accepts a second
                    loop.call_exception_handler(error)
            loop.call_exception_handler({"message": "something else"})
    finally:
        loop.close()
    assert isinstance(handler, AcceptErrorLog)
    assert throttled.lines == 3  # at 0 s, 10 s and 20 s
    assert len(caplog.records) == 3
    assert "Too many open files (x1000)" in caplog.records[1].getMessage()
    assert "Traceback" not in caplog.text
    assert passed == [{"message": "something else"}]


# --- load shedding ---------------------------------------------------------------------------


async def test_the_webhook_sheds_load_with_503_at_once(start: Start) -> None:
    server = await start(Admission(1, queue=0, wait=GUARD_S))
    server.bot.gate.clear()
    first = asyncio.create_task(post_hook(server, "第一个", "m-1"))
    await asyncio.wait_for(server.bot.started.wait(), GUARD_S)
    status, payload, retry_after = await asyncio.wait_for(
        post_hook(server, "第二个", "m-2"), GUARD_S / 4
    )
    assert (status, payload, retry_after) == (503, {"error": "busy", "retry_after": 10}, "10")
    assert server.bot.seen == ["第一个"]  # the shed message never reached the pipeline
    server.bot.gate.set()
    assert (await first)[0] == 200
    status, payload, _ = await post_hook(server, "第二个", "m-2")  # the bridge's retry
    assert (status, payload["reply"]["text"]) == (200, "echo:第二个")


async def test_the_web_chat_answers_busy_to_the_sender_only(start: Start) -> None:
    server = await start(Admission(1, queue=0, wait=GUARD_S))
    server.bot.gate.clear()
    async with aiohttp.ClientSession() as http:
        first = await join(http, server.url, "m-1", "阿花")
        second = await join(http, server.url, "m-2", "阿草")
        await first.send_json({"type": "message", "text": "第一个"})
        await asyncio.wait_for(server.bot.started.wait(), GUARD_S)
        await second.send_json({"type": "message", "text": "第二个"})
        busy = await receive(second)
        assert busy["type"] == "busy"
        assert busy["retry_after"] == 10
        assert "请 10 秒后再发一次" in busy["error"]
        assert server.bot.seen == ["第一个"]
        server.bot.gate.set()
        assert (await receive(first))["text"] == "echo:第一个"
        await second.send_json({"type": "message", "text": "第二个"})
        assert (await receive(second))["text"] == "echo:第二个"
        await first.close()
        await second.close()
