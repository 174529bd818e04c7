"""A real web chat server on 127.0.0.1 (port 0) and a real aiohttp client session."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from adapters.web import create_web_app, start_web
from adapters.web.config import WebSettings
from bot.types import InboundMessage, MessageHandler, NoReply, Reply, TextReply

BOT_NAME = "小域"
BRAND = "山茶花<超市>"
FIXED_NOW = datetime(2026, 3, 8, 10, 30, tzinfo=UTC)
RECEIVE_GUARD_S = 10.0
"""Only stops a broken test from hanging; no test asserts on time."""

StartServer = Callable[..., Awaitable[tuple[web.Application, str]]]


class Recorder:
    """A handler that remembers every message and answers by rule: a test's tiny bot."""

    def __init__(self, answer: Callable[[InboundMessage], Reply] | None = None) -> None:
        self.seen: list[InboundMessage] = []
        self._answer = answer or (lambda msg: TextReply(f"echo:{msg.text}"))

    async def __call__(self, msg: InboundMessage, /) -> Reply:
        self.seen.append(msg)
        if msg.text == "silent":
            return NoReply("test")
        return self._answer(msg)


@pytest.fixture
async def start_server() -> AsyncIterator[StartServer]:
    """Start web chat apps around handlers; every one is cleaned up after the test."""
    runners: list[web.AppRunner] = []

    async def start(
        handle: MessageHandler, *, max_body_bytes: int = 65_536
    ) -> tuple[web.Application, str]:
        config = WebSettings(host="127.0.0.1", port=0, max_body_bytes=max_body_bytes)
        app = create_web_app(
            handle, config, bot_name=BOT_NAME, brand=BRAND, clock=lambda: FIXED_NOW
        )
        runner, url = await start_web(app, config)
        runners.append(runner)
        return app, url

    yield start
    for runner in runners:
        await runner.cleanup()


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as client:
        yield client


async def receive(ws: aiohttp.ClientWebSocketResponse) -> dict[str, Any]:
    """The next frame from the server, decoded; fails on anything but a JSON text frame."""
    msg = await ws.receive(timeout=RECEIVE_GUARD_S)
    assert msg.type is aiohttp.WSMsgType.TEXT, (msg.type, msg.data)
    frame: dict[str, Any] = json.loads(msg.data)
    return frame


async def join(
    session: aiohttp.ClientSession,
    url: str,
    member_id: str,
    name: str,
    room: str | None = None,
    store_id: str | None = None,
) -> aiohttp.ClientWebSocketResponse:
    """Open a socket, say hello, and consume the greeting notice."""
    ws = await session.ws_connect(url + "ws")
    hello = {
        "type": "hello",
        "member_id": member_id,
        "name": name,
        "room": room,
        "store_id": store_id,
    }
    await ws.send_str(json.dumps(hello))
    greeting = await receive(ws)
    assert greeting["kind"] == "notice", greeting
    return ws
