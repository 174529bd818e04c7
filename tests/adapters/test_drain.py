"""Draining (:mod:`adapters.web.drain`) and a closed admission, on a real server: requests in
flight finish and are counted, new ones get 503 with Retry-After, probes still answer, and the
wait returns when the last answer is done or reports what was left at the bound."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest
from aiohttp import web

from adapters.admission import Admission, Busy
from adapters.web import create_web_app, start_web
from adapters.web.config import WebSettings
from adapters.web.server import DRAIN
from bot.types import InboundMessage, Reply, TextReply

CONFIG = WebSettings(host="127.0.0.1", port=0)


async def test_a_closed_admission_refuses_new_work_and_lets_the_admitted_finish() -> None:
    admission = Admission(2)
    entered, release = asyncio.Event(), asyncio.Event()

    async def answer() -> None:
        async with admission.admit():
            entered.set()
            await release.wait()

    task = asyncio.create_task(answer())
    await entered.wait()
    admission.close()
    with pytest.raises(Busy, match="shutting down"):
        async with admission.admit():
            pass
    quiet = asyncio.create_task(admission.quiet())
    await asyncio.sleep(0)
    assert not quiet.done()  # one answer still runs
    release.set()
    await task
    await asyncio.wait_for(quiet, 5)
    assert admission.demand == 0


class SlowHandler:
    """A message handler that answers when the test says so."""

    def __init__(self) -> None:
        self.release = asyncio.Event()

    async def __call__(self, msg: InboundMessage) -> Reply:
        await self.release.wait()
        return TextReply("好的")


async def test_draining_waits_for_the_request_in_flight_and_refuses_new_ones() -> None:
    entered, release = asyncio.Event(), asyncio.Event()

    async def slow(request: web.Request) -> web.Response:
        entered.set()
        await release.wait()
        return web.Response(text="done")

    app = create_web_app(SlowHandler(), CONFIG, bot_name="小域", brand="b")
    app.router.add_get("/slow", slow)  # a request that stays in flight until released
    drain = app[DRAIN]
    runner, url = await start_web(app, CONFIG)
    try:
        async with aiohttp.ClientSession() as http:
            in_flight = asyncio.create_task(http.get(url + "slow"))
            await asyncio.wait_for(entered.wait(), 10)
            assert drain.active == 1
            waiting = asyncio.create_task(drain.wait(30))
            await asyncio.sleep(0.05)
            async with http.get(url + "api/stores") as refused:
                assert refused.status == 503
                assert refused.headers["Retry-After"] == "2"
            async with http.get(url + "healthz") as health:
                assert health.status == 200
            assert not waiting.done()
            release.set()
            assert await asyncio.wait_for(waiting, 10) == 0
            async with await in_flight as resp:
                assert await resp.text() == "done"
    finally:
        await runner.cleanup()
    assert drain.refused == 1


async def test_draining_past_the_bound_says_how_much_was_left() -> None:
    app = create_web_app(SlowHandler(), CONFIG, bot_name="小域", brand="b")
    drain = app[DRAIN]
    ticket = drain.admission.line_up()  # an acknowledged callback's answer, never started
    try:
        assert await drain.wait(0.1) == 1
    finally:
        ticket.abandon()
    assert drain.in_flight == 0
