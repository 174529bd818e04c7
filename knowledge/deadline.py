"""Deadlines: one overall time limit per call, shared by everything done for one answer.

A member waits for one answer, not for each request made while writing it. So a deadline here is
an absolute point on the monotonic clock (``time.monotonic``, which asyncio's loop time is), kept
in a context variable: everything awaited inside :func:`within` (or :func:`budget`) sees it, nested
limits can only shorten it, and ``asyncio.to_thread`` carries it into worker threads.

- :func:`within` enforces a limit (``asyncio.timeout_at``) on a block and makes it the ambient
  deadline; :class:`TimeoutError` when it passes.
- :func:`budget` only records a limit: the calls made inside enforce it themselves (each through
  its own :func:`within`), so whoever opened the budget still has its results, and the time to
  fall back, when one of them gives up. The answerer opens one per question
  (``SIYU_ANSWER_DEADLINE``) so the embedding and LLM calls of that question share it.
- :func:`time_left` is what remains of the ambient deadline (``math.inf`` without one).
- :func:`retry_delay` decides whether a retry still fits: Retry-After (or an exponential back-off)
  is honoured when the retry can start before the deadline with :data:`MIN_ATTEMPT` seconds left
  for it, else the answer is None: give up now. Decision: never sleep until the deadline only to
  fail then, so a "429, Retry-After: 60" costs an answer nothing but the one request.
- :class:`DeadlineTransport` wraps an httpx transport so that each request, its response body
  included, ends by ONE deadline (``seconds`` after it starts, or the ambient one if sooner).
  httpx's own timeouts are per read: a server dripping one byte a second never trips them.
"""

from __future__ import annotations

import asyncio
import contextvars
import email.utils
import math
import time
from collections.abc import AsyncIterator, Iterator, Mapping
from contextlib import asynccontextmanager, contextmanager
from datetime import UTC, datetime
from typing import Final

import httpx

MIN_ATTEMPT: Final = 0.5
"""Seconds a retry must have before the deadline to be worth starting."""

BACKOFF: Final = 0.25
"""The first retry's delay when the server names none; doubled for each further retry."""

_deadline: contextvars.ContextVar[float | None] = contextvars.ContextVar(
    "siyu_deadline", default=None
)


def now() -> float:
    """The clock deadlines are read on (asyncio's loop time is the same clock)."""
    return time.monotonic()


def deadline_in(seconds: float) -> float:
    """The absolute deadline ``seconds`` from now, or the ambient one if that comes first."""
    own = now() + max(seconds, 0.0)
    ambient = _deadline.get()
    return own if ambient is None else min(own, ambient)


def time_left() -> float:
    """Seconds until the ambient deadline (never negative); ``math.inf`` when there is none."""
    ambient = _deadline.get()
    return math.inf if ambient is None else max(ambient - now(), 0.0)


@contextmanager
def budget(seconds: float | None) -> Iterator[None]:
    """Make ``seconds`` from now the ambient deadline (if sooner) without enforcing it; None
    changes nothing. See the module docstring for who enforces it."""
    if seconds is None:
        yield
        return
    token = _deadline.set(deadline_in(seconds))
    try:
        yield
    finally:
        _deadline.reset(token)


@asynccontextmanager
async def within(seconds: float) -> AsyncIterator[None]:
    """Run the block by ``seconds`` from now (or the ambient deadline, if sooner), which is the
    ambient deadline inside it; :class:`TimeoutError` when it passes."""
    at = deadline_in(seconds)
    token = _deadline.set(at)
    try:
        async with asyncio.timeout_at(at):
            yield
    finally:
        _deadline.reset(token)


def retry_delay(retry_after: float | None, remaining: float, *, attempt: int = 0) -> float | None:
    """How long to wait before retry number ``attempt + 1``, or None when it cannot fit.

    ``retry_after`` is the server's Retry-After in seconds (None: back off
    ``BACKOFF * 2**attempt``); ``remaining`` the time left (:func:`time_left`). The wait is
    honoured, never shortened: a retry sooner than the server asked would be refused again.
    When the wait plus :data:`MIN_ATTEMPT` does not fit in ``remaining`` the caller gives up
    at once."""
    delay = BACKOFF * 2**attempt if retry_after is None else max(retry_after, 0.0)
    if delay + MIN_ATTEMPT > remaining:
        return None
    return delay


def retry_after_seconds(headers: Mapping[str, str] | httpx.Headers) -> float | None:
    """The Retry-After of an HTTP answer in seconds (``retry-after-ms``, seconds or an HTTP
    date), None when absent or unreadable."""
    millis = headers.get("retry-after-ms")
    if millis:
        try:
            return max(float(millis) / 1000, 0.0)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return max(float(value), 0.0)
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max((when - datetime.now(UTC)).total_seconds(), 0.0)


class DeadlineExceeded(httpx.TimeoutException):
    """A request (or the reading of its answer) ran past its overall deadline."""


class DeadlineTransport(httpx.AsyncBaseTransport):
    """An httpx transport whose every request, answer body included, ends by one deadline:
    ``seconds`` after it starts, or the ambient deadline (:func:`within`) if sooner."""

    def __init__(self, seconds: float, inner: httpx.AsyncBaseTransport | None = None) -> None:
        if seconds <= 0:
            raise ValueError("a deadline must be positive")
        self._seconds = seconds
        self._inner = inner if inner is not None else httpx.AsyncHTTPTransport()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        at = deadline_in(self._seconds)
        try:
            async with asyncio.timeout_at(at):
                response = await self._inner.handle_async_request(request)
        except TimeoutError:
            raise DeadlineExceeded(f"no answer within {self._seconds} s", request=request) from None
        stream = _DeadlineStream(response.stream, at, request)
        return httpx.Response(
            response.status_code,
            headers=response.headers,
            stream=stream,
            extensions=response.extensions,
        )

    async def aclose(self) -> None:
        await self._inner.aclose()


class _DeadlineStream(httpx.AsyncByteStream):
    """A response body whose reads all end by the request's deadline."""

    def __init__(self, inner: httpx.SyncByteStream | httpx.AsyncByteStream, at: float,
                 request: httpx.Request) -> None:  # fmt: skip
        if not isinstance(inner, httpx.AsyncByteStream):
            raise TypeError("an async transport answered with a sync stream")
        self._inner = inner
        self._at = at
        self._request = request

    async def __aiter__(self) -> AsyncIterator[bytes]:
        chunks = aiter(self._inner)
        while True:
            try:
                async with asyncio.timeout_at(self._at):
                    chunk = await anext(chunks)
            except StopAsyncIteration:
                return
            except TimeoutError:
                raise DeadlineExceeded(
                    "the answer's body did not arrive by the deadline", request=self._request
                ) from None
            yield chunk

    async def aclose(self) -> None:
        await self._inner.aclose()
