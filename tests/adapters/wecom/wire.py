"""Helpers of the WeChat / WeCom channel tests: serve a channel sub-app on 127.0.0.1, build signed
and encrypted callbacks as the platforms do, and a real core answering from the demo FAQ."""

from __future__ import annotations

import asyncio
import io
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import aiohttp
from aiohttp import web

from adapters.wecom.crypto import CallbackCrypto, plain_signature
from adapters.wecom.xmlwire import build_xml
from bot.app import App
from bot.demo import DEMO_DIR
from bot.settings import Settings
from bot.types import InboundMessage, Reply, TextReply

CREATE_TIME = "1772000000"
"""A message's ``CreateTime`` (not checked for freshness: only the signed query timestamp is)."""
NONCE = "nonce123"
GUARD_S = 10.0
"""Only stops a broken test from hanging; no test asserts on time."""

# The official WeCom vector (DESIGN.md §3): its key serves every test account.
VECTOR_CORP_ID = "wx5823bf96d3bd56c7"
VECTOR_TOKEN = "QDG6eK"
AES_KEY = "jWmYm7qr5nMoAUwZRjGtBxmz3KA1tkAj3ykkR6q2B2C"

XML_BOMB = (
    b'<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">'
    b'<!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">'
    b'<!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">]>'
    b"<xml><Content>&lol3;</Content></xml>"
)


@asynccontextmanager
async def serve(prefix: str, sub: web.Application) -> AsyncIterator[str]:
    """Mount ``sub`` under ``prefix`` on a root app on 127.0.0.1; yields its base URL."""
    root = web.Application()
    root.add_subapp(prefix, sub)
    runner = web.AppRunner(root)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}{prefix}"
    finally:
        await runner.cleanup()


@asynccontextmanager
async def real_core(tmp_path: Path) -> AsyncIterator[App]:
    """The real core (SQLite, Chroma, hash embedder, no LLM) with the demo FAQ ingested."""
    settings = Settings(
        _env_file=None, data_dir=tmp_path / "data", llm={},
        knowledge={"embedding": "hash", "refresh_seconds": 0},
    )  # fmt: skip
    app = await App.build(settings)
    try:
        await app.knowledge.ingest_path(DEMO_DIR / "faq.csv")
        yield app
    finally:
        await app.close()


class SlowBot:
    """A handler that answers only once ``release`` is set: an answer slower than the budget."""

    def __init__(self, answer: Callable[[InboundMessage], str] | None = None) -> None:
        self.seen: list[InboundMessage] = []
        self.release = asyncio.Event()
        self._answer = answer or (lambda msg: f"answer:{msg.text}")

    async def __call__(self, msg: InboundMessage, /) -> Reply:
        self.seen.append(msg)
        await self.release.wait()
        return TextReply(self._answer(msg))


def now_timestamp() -> str:
    """The signed ``timestamp`` query parameter of a callback sent now: the channels refuse one
    more than 5 minutes from their clock (``adapters.freshness``)."""
    return str(int(time.time()))


def text_fields(user: str, to: str, content: str, msg_id: str, **extra: str) -> dict[str, str]:
    """A text message callback's fields."""
    return {
        "ToUserName": to, "FromUserName": user, "CreateTime": CREATE_TIME, "MsgType": "text",
        "Content": content, "MsgId": msg_id, **extra,
    }  # fmt: skip


def encrypted(
    crypto: CallbackCrypto, inner_xml: str, *, timestamp: str | None = None
) -> tuple[dict[str, str], bytes]:
    """Query and body of an encrypted callback, signed as the platform signs it (now, unless
    ``timestamp`` says when)."""
    timestamp = timestamp or now_timestamp()
    encrypt = crypto.encrypt(inner_xml)
    query = {
        "msg_signature": crypto.signature(timestamp, NONCE, encrypt),
        "timestamp": timestamp,
        "nonce": NONCE,
    }
    return query, build_xml({"ToUserName": crypto.receive_id, "Encrypt": encrypt}).encode()


def plain_query(token: str, *, timestamp: str | None = None) -> dict[str, str]:
    """The Official Account's plain-mode signature query (sent in every mode), signed now unless
    ``timestamp`` says when."""
    timestamp = timestamp or now_timestamp()
    return {
        "signature": plain_signature(token, timestamp, NONCE),
        "timestamp": timestamp,
        "nonce": NONCE,
        "openid": "ignored",
    }


async def post(url: str, body: bytes, params: dict[str, str]) -> tuple[int, str]:
    """POST ``body``; the status and the text of the answer."""
    timeout = aiohttp.ClientTimeout(total=GUARD_S)
    async with (
        aiohttp.ClientSession(timeout=timeout) as http,
        http.post(url, data=io.BytesIO(body), params=params) as response,
    ):
        return response.status, await response.text()


async def get(url: str, params: dict[str, str]) -> tuple[int, str]:
    """GET with ``params``; the status and the text of the answer."""
    timeout = aiohttp.ClientTimeout(total=GUARD_S)
    async with (
        aiohttp.ClientSession(timeout=timeout) as http,
        http.get(url, params=params) as response,
    ):
        return response.status, await response.text()


async def until(condition: Callable[[], bool], step: Callable[[], Awaitable[None]]) -> None:
    """Run ``step`` until ``condition`` holds (bounded by the guard)."""

    async def loop() -> None:
        while not condition():
            await step()

    await asyncio.wait_for(loop(), GUARD_S)
