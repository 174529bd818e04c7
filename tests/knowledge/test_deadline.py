"""Deadlines (knowledge/deadline.py) and the circuit breaker (knowledge/breaker.py).

The transport is exercised over real HTTP against an aiohttp server on 127.0.0.1 that drips its
body; the time bounds are generous, proving "ends by the deadline", not measuring speed.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

import httpx
import pytest
from aiohttp import web

from knowledge import remote
from knowledge.breaker import CircuitBreaker, State
from knowledge.deadline import (
    MIN_ATTEMPT,
    DeadlineExceeded,
    DeadlineTransport,
    budget,
    retry_after_seconds,
    retry_delay,
    time_left,
    within,
)
from knowledge.errors import ServiceUnavailable

# ---- ambient deadlines ------------------------------------------------------------------------


async def test_within_ends_the_block_and_is_seen_inside_it() -> None:
    assert time_left() == math.inf
    seen: list[float] = []

    async def sleeper() -> None:
        async with within(0.2):
            seen.append(time_left())
            await asyncio.sleep(5)

    started = time.monotonic()
    with pytest.raises(TimeoutError):
        await sleeper()
    assert time.monotonic() - started < 2.0
    assert 0.1 < seen[0] <= 0.2
    assert time_left() == math.inf  # restored


async def test_nested_limits_only_shorten_the_deadline() -> None:
    with budget(0.3):
        with budget(10):
            assert time_left() <= 0.3
        async with within(10):
            assert time_left() <= 0.3
        with budget(0.1):
            assert time_left() <= 0.1
    with budget(None):
        assert time_left() == math.inf


async def test_a_budget_is_not_enforced_by_itself_but_cuts_what_runs_inside() -> None:
    async def call() -> None:
        async with within(5):  # ... a call inside starts with nothing left
            await asyncio.sleep(1)

    with budget(0.2):
        await asyncio.sleep(0.3)  # no one enforces it here ...
        assert time_left() == 0.0
        with pytest.raises(TimeoutError):
            await call()


async def test_the_deadline_reaches_a_worker_thread() -> None:
    with budget(5):
        left = await asyncio.to_thread(time_left)
    assert 4 < left <= 5


def test_retry_delay_honours_retry_after_only_when_it_fits() -> None:
    assert retry_delay(60, remaining=7.5) is None  # Retry-After: 60 in an 8 s answer: give up
    assert retry_delay(1.0, remaining=7.5) == 1.0  # honoured, never shortened
    assert retry_delay(1.0, remaining=1.0 + MIN_ATTEMPT - 0.01) is None  # no time to try again
    assert retry_delay(None, remaining=math.inf, attempt=0) == 0.25  # back-off, doubling
    assert retry_delay(None, remaining=math.inf, attempt=2) == 1.0
    assert retry_delay(-3, remaining=5) == 0.0


def test_retry_after_is_read_in_each_of_its_forms() -> None:
    assert retry_after_seconds({"retry-after": "60"}) == 60
    assert retry_after_seconds({"retry-after-ms": "1500", "retry-after": "60"}) == 1.5
    assert retry_after_seconds({}) is None
    assert retry_after_seconds({"retry-after": "soon"}) is None
    http_date = retry_after_seconds({"retry-after": "Wed, 21 Oct 2015 07:28:00 GMT"})
    assert http_date == 0.0  # a date in the past: retry now
    assert retry_after_seconds(httpx.Headers({"Retry-After": "2"})) == 2


# ---- the transport over real HTTP ------------------------------------------------------------


@dataclass
class Dripper:
    url: str
    closing: asyncio.Event


@pytest.fixture
async def dripper() -> AsyncIterator[Dripper]:
    """``/drip``: headers at once, then a byte every 0.2 s for 10 s; ``/quick``: at once."""
    closing = asyncio.Event()

    async def drip(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()
        await response.prepare(request)
        with contextlib.suppress(ConnectionResetError):
            for _ in range(50):
                await response.write(b"x")
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(closing.wait(), 0.2)
                if closing.is_set():
                    break
        return response

    async def quick(_request: web.Request) -> web.Response:
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_get("/drip", drip)
    app.router.add_get("/quick", quick)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield Dripper(f"http://127.0.0.1:{runner.addresses[0][1]}", closing)
    finally:
        closing.set()
        await runner.cleanup()


async def test_a_dripping_body_ends_by_one_overall_deadline(dripper: Dripper) -> None:
    """Every read arrives within httpx's 5 s read timeout; only the overall 1 s deadline ends it."""
    transport = DeadlineTransport(1.0)
    async with httpx.AsyncClient(transport=transport, timeout=5.0) as client:
        started = time.monotonic()
        with pytest.raises(DeadlineExceeded):
            await client.get(f"{dripper.url}/drip")
        assert time.monotonic() - started < 3.0
        assert (await client.get(f"{dripper.url}/quick")).text == "ok"  # the client still works


async def test_the_transport_keeps_to_a_sooner_ambient_deadline(dripper: Dripper) -> None:
    async with httpx.AsyncClient(transport=DeadlineTransport(30.0), timeout=30.0) as client:
        started = time.monotonic()
        with budget(0.5), pytest.raises(DeadlineExceeded):
            await client.get(f"{dripper.url}/drip")
        assert time.monotonic() - started < 3.0


def test_a_deadline_must_be_positive() -> None:
    with pytest.raises(ValueError, match="positive"):
        DeadlineTransport(0)


# ---- the circuit breaker ---------------------------------------------------------------------


@dataclass
class Monotonic:
    now: float = 0.0

    def __call__(self) -> float:
        return self.now


def test_breaker_opens_after_three_failures_in_a_row() -> None:
    clock = Monotonic()
    breaker = CircuitBreaker("svc", clock=clock)
    breaker.failed()
    breaker.failed()
    breaker.succeeded()  # a success in between starts the count again
    breaker.failed()
    breaker.failed()
    assert breaker.state is State.CLOSED
    assert breaker.allow()
    breaker.failed()
    assert breaker.state is State.OPEN
    assert not breaker.allow()
    clock.now = 29.9
    assert not breaker.allow()


def test_after_the_cool_down_one_probe_decides() -> None:
    clock = Monotonic()
    breaker = CircuitBreaker("svc", failures=1, cool_down=30, clock=clock)
    breaker.failed()
    clock.now = 30
    assert breaker.allow()  # the probe
    assert breaker.state is State.HALF_OPEN
    assert not breaker.allow()  # one probe at a time
    breaker.failed()
    assert breaker.state is State.OPEN  # failed probe: another cool-down
    clock.now = 45
    assert not breaker.allow()
    clock.now = 60
    assert breaker.allow()
    breaker.succeeded()
    assert breaker.state is State.CLOSED
    assert breaker.allow()
    assert breaker.allow()


def test_a_probe_that_never_reports_is_replaced_after_a_cool_down() -> None:
    clock = Monotonic()
    breaker = CircuitBreaker("svc", failures=1, cool_down=30, clock=clock)
    breaker.failed()
    clock.now = 30
    assert breaker.allow()  # this caller is cancelled and never reports
    clock.now = 59
    assert not breaker.allow()
    clock.now = 60
    assert breaker.allow()


def test_breaker_settings_are_checked() -> None:
    with pytest.raises(ValueError, match="failures"):
        CircuitBreaker("svc", failures=0)


async def test_a_call_with_no_time_left_is_not_made_nor_held_against_the_service() -> None:
    breaker = CircuitBreaker("svc", failures=1)
    calls: list[int] = []

    async def attempt() -> int:
        calls.append(1)
        return 1

    with budget(0.01):
        await asyncio.sleep(0.02)  # the answer's time went elsewhere
        with pytest.raises(ServiceUnavailable, match="no time left"):
            await remote.call(attempt, breaker=breaker, seconds=5, retries=1)
    assert calls == []
    assert breaker.state is State.CLOSED
    assert await remote.call(attempt, breaker=breaker, seconds=5, retries=1) == 1
