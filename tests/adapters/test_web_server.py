"""Running the web chat: ``start_web``, ``serve`` and a clean shutdown with sockets open."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Iterator

import aiohttp
import pytest
from aiohttp import WSCloseCode

from adapters.web import CannotListen, check_can_listen, create_web_app, serve, start_web
from adapters.web.config import WebSettings
from tests.adapters.conftest import BOT_NAME, BRAND, Recorder, join

CONFIG = WebSettings(host="127.0.0.1", port=0, max_body_bytes=65_536)


async def test_start_web_reports_the_bound_port(session: aiohttp.ClientSession) -> None:
    app = create_web_app(Recorder(), CONFIG, bot_name=BOT_NAME, brand=BRAND)
    runner, url = await start_web(app, CONFIG)
    try:
        assert url.startswith("http://127.0.0.1:")
        assert url.endswith("/")
        assert int(url.rsplit(":", 1)[1].rstrip("/")) > 0
        async with session.get(url + "healthz") as resp:
            assert resp.status == 200
    finally:
        await runner.cleanup()


async def test_shutdown_closes_open_sockets(session: aiohttp.ClientSession) -> None:
    app = create_web_app(Recorder(), CONFIG, bot_name=BOT_NAME, brand=BRAND)
    runner, url = await start_web(app, CONFIG)
    ws = await join(session, url, "m-1", "阿花", room="r1")
    await runner.cleanup()
    msg = await ws.receive(timeout=10)
    assert msg.type is aiohttp.WSMsgType.CLOSE
    assert msg.data == WSCloseCode.GOING_AWAY  # (the client may then see 1006: server hung up)


async def test_serve_runs_until_cancelled(session: aiohttp.ClientSession) -> None:
    app = create_web_app(Recorder(), CONFIG, bot_name=BOT_NAME, brand=BRAND)
    started: asyncio.Queue[str] = asyncio.Queue()
    task = asyncio.create_task(serve(app, CONFIG, on_started=started.put_nowait))
    url = await asyncio.wait_for(started.get(), timeout=10)
    async with session.get(url + "healthz") as resp:
        assert await resp.json() == {"status": "ok"}
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    with pytest.raises(aiohttp.ClientConnectionError):
        await session.get(url + "healthz")


@pytest.fixture
def busy_port() -> Iterator[int]:
    """A port some other program is listening on."""
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        yield holder.getsockname()[1]


async def test_a_busy_port_is_named_not_a_traceback(busy_port: int) -> None:
    config = WebSettings(host="127.0.0.1", port=busy_port, max_body_bytes=65_536)
    with pytest.raises(CannotListen) as early:
        check_can_listen(config)
    app = create_web_app(Recorder(), config, bot_name=BOT_NAME, brand=BRAND)
    with pytest.raises(CannotListen) as late:
        await start_web(app, config)
    for caught in (early.value, late.value):
        assert (caught.host, caught.port) == ("127.0.0.1", busy_port)
        assert f"127.0.0.1:{busy_port}" in str(caught)
        assert "already in use" in caught.reason
    check_can_listen(CONFIG)  # port 0: any free port will do, nothing to probe
