"""``/readyz``: the core's readiness checks (:mod:`bot.readiness`) served beside ``/healthz``.

A real App (SQLite or PostgreSQL, embedded Chroma, hash embeddings) behind the real web server;
the database made unavailable in the two ways it fails: refused (an engine on a port nobody
listens on, or the TCP proxy in front of PostgreSQL cut) and hung (a server that accepts the
connection and never answers), where the check must give up within its time bound.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import sqlalchemy as sa

from adapters.web import create_web_app, start_web
from adapters.web.config import WebSettings
from adapters.web.server import DRAIN
from bot.app import App
from bot.clock import utc_now
from bot.config import ReadinessConfig
from bot.db import create_engine
from bot.inbox import message_fields
from bot.models import InboxMessage
from bot.readiness import Readiness, database_probe, readiness
from bot.types import InboundMessage, MemberRef
from tests.bot.conftest import make_settings
from tests.fakes.tcp_proxy import TcpProxy
from tests.sql import postgres_url

WEB = WebSettings(host="127.0.0.1", port=0)
INBOX = InboxMessage.__table__  # type: ignore[attr-defined]
TIMEOUT_S = 1.0


@pytest.fixture
async def app(data_dir: Path) -> AsyncIterator[App]:
    built = await App.build(make_settings(data_dir, ops={"ready_timeout": TIMEOUT_S}))
    try:
        yield built
    finally:
        await built.close()


async def readyz(app_: App, ready: Readiness | None = None, *, drain: bool = False) -> Any:
    """GET /readyz of a server over ``app_``: (status, body, seconds it took)."""
    check = (ready or app_.readiness()).check
    web_app = create_web_app(app_.pipeline.handle, WEB, bot_name="小域", brand="b", ready=check)
    if drain:
        web_app[DRAIN].begin()
    runner, url = await start_web(web_app, WEB)
    try:
        async with aiohttp.ClientSession() as http:
            started = time.monotonic()
            async with http.get(url + "readyz") as resp:
                return resp.status, await resp.json(), time.monotonic() - started
    finally:
        await runner.cleanup()


async def test_ready_when_every_check_passes(app: App) -> None:
    status, body, _ = await readyz(app)
    assert status == 200
    assert body["status"] == "ready"
    assert set(body["checks"]) == {"database", "knowledge", "inbox_lag"}
    assert all(check["ok"] for check in body["checks"].values())
    assert body["checks"]["inbox_lag"]["detail"] == "0 waiting, oldest 0.0 s"


async def test_a_message_waiting_too_long_makes_the_process_not_ready(app: App) -> None:
    msg = InboundMessage(
        id="old-1", channel="webhook.bridge", conversation="u1",
        sender=MemberRef("webhook.bridge", "u1"), text="在吗", received_at=utc_now(),
    )  # fmt: skip
    long_ago = utc_now() - timedelta(minutes=2)
    async with app.engine.begin() as conn:
        await conn.execute(
            INBOX.insert().values(
                channel=msg.channel, message_id=msg.id, session_key=msg.session_key,
                message=message_fields(msg), state="pending", attempts=0,
                received_at=long_ago, updated_at=long_ago,
            )
        )  # fmt: skip
    status, body, _ = await readyz(app)
    assert status == 503
    assert body["status"] == "not ready"
    assert body["failing"] == ["inbox_lag"]
    assert "1 waiting, oldest 12" in body["checks"]["inbox_lag"]["detail"]
    assert "(more than 60 s)" in body["checks"]["inbox_lag"]["detail"]


async def test_not_ready_while_draining(app: App) -> None:
    status, body, _ = await readyz(app, drain=True)
    assert status == 503
    assert body["failing"] == ["draining"]


async def test_a_database_that_refuses_is_named(app: App) -> None:
    with_socket_closed = create_engine("postgresql+asyncpg://postgres@127.0.0.1:9/none")
    try:
        bad = Readiness({"database": database_probe(with_socket_closed)}, timeout=TIMEOUT_S)
        status, body, _ = await readyz(app, bad)
    finally:
        await with_socket_closed.dispose()
    assert status == 503
    assert body["failing"] == ["database"]
    assert "ConnectionRefusedError" in body["checks"]["database"]["detail"]


async def test_a_database_that_hangs_is_given_up_within_the_bound(app: App) -> None:
    held: list[asyncio.StreamWriter] = []

    async def never_answer(_r: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)

    server = await asyncio.start_server(never_answer, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    hung = create_engine(f"postgresql+asyncpg://postgres@127.0.0.1:{port}/none")
    try:
        ready = Readiness({"database": database_probe(hung)}, timeout=TIMEOUT_S)
        status, body, took = await readyz(app, ready)
    finally:
        for writer in held:
            writer.close()
        server.close()
        await server.wait_closed()
        await hung.dispose()
    assert status == 503
    assert body["checks"]["database"] == {"ok": False, "detail": "no answer within 1 s"}
    assert took < 10 * TIMEOUT_S  # bounded by the check's timeout, not by the driver's 60 s


@pytest.mark.postgres
async def test_postgres_cut_off_is_not_ready_and_back_is_ready(app: App) -> None:
    url = postgres_url()
    async with TcpProxy(sa.engine.make_url(url).port or 5432) as proxy:
        engine = create_engine(proxy.url(url))
        ready = readiness(engine, app.knowledge.ping, app.inbox, ReadinessConfig(TIMEOUT_S, 60))
        try:
            before, _, _ = await readyz(app, ready)
            await proxy.cut()
            during, body, _ = await readyz(app, ready)
            await proxy.restore()
            after, _, _ = await readyz(app, ready)
        finally:
            await engine.dispose()
    assert (before, during, after) == (200, 503, 200)
    assert body["failing"] == ["database"]
