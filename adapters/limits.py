"""Bounds on one HTTP request, for every endpoint ``siyu serve`` runs (web chat, webhook, WeCom and
Official Account callbacks): how big its body may be and how long it may take to arrive.

- Size: :func:`read_body` refuses a body over the limit from its ``Content-Length`` before reading
  a byte of it, and a chunked body (no ``Content-Length``) as soon as it passes the limit, so no
  request makes the server buffer more than the limit plus one chunk. The limit is
  :data:`adapters.MAX_REQUEST_BYTES` unless ``SIYU_WEB_MAX_BODY_BYTES`` says otherwise.
- Time: :func:`request_limits` is the root application's middleware. It answers 413 to an
  oversized ``Content-Length`` before any handler runs, and gives every request with a body
  ``body_timeout`` seconds from its headers to the body's last byte: a client that sends its body
  slowly (slowloris) has its body cut (:class:`BodyTimeout`) and gets a 408 with the connection
  closed. The clock stops once the body is in, so a slow answer is never cut.

Decision: the cut is a timer set when the handler starts and cancelled when it ends, not a
timeout around the handler: the handler's own work (an answer may take seconds) is not the
client's to hurry, and one timer per request costs nothing. The timer only acts if the body has
not reached its end, by setting an exception on the request's stream: whichever read is waiting
(:func:`read_body`, ``request.read()``) raises it and the middleware turns it into the 408.

Connection-level bounds (idle and header-read timeouts, the connection cap, accept errors) are
:mod:`adapters.web.connections`'. :class:`Throttled` is the one way both log what recurs under
attack: once per :data:`LOG_INTERVAL_S`, with a count.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Awaitable, Callable

from aiohttp import web
from aiohttp.typedefs import Middleware

from adapters import MAX_REQUEST_BYTES

log = logging.getLogger(__name__)

READ_CHUNK = 16 * 1024
LOG_INTERVAL_S = 10.0
"""Conditions that recur per request or per connection under attack or overload (a refused
accept, a shed request) are logged once per interval with a count, never once each."""
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class BodyTooLarge(Exception):
    """The request body is over the limit (HTTP 413)."""

    def __init__(self, limit: int, size: int | None = None) -> None:
        said = f"body of {size} bytes" if size is not None else "body"
        super().__init__(f"{said} is over the limit of {limit} bytes")
        self.limit = limit


class BodyTimeout(TimeoutError):
    """The request body did not arrive within the body timeout (HTTP 408).

    A ``TimeoutError`` on purpose: should the exception reach aiohttp itself (a handler that never
    read the body and outlived the timer), aiohttp treats a timeout while draining an unread body
    as the end of that drain, quietly, instead of logging an unhandled exception.
    """


async def read_body(request: web.Request, max_bytes: int = MAX_REQUEST_BYTES) -> bytes:
    """The request body; :class:`BodyTooLarge` from ``Content-Length`` before reading, or as soon
    as a body without one passes ``max_bytes``."""
    if request.content_length is not None and request.content_length > max_bytes:
        raise BodyTooLarge(max_bytes, request.content_length)
    body = bytearray()
    while chunk := await request.content.read(READ_CHUNK):
        body += chunk
        if len(body) > max_bytes:
            raise BodyTooLarge(max_bytes)
    return bytes(body)


def too_large(exc: BodyTooLarge, request: web.Request | None = None) -> web.Response:
    """The 413 answer; the connection is closed and, given the ``request``, no more of its body is
    read: what is left of it is not worth the memory (the server closes after a short linger)."""
    if request is not None and request.transport is not None:
        request.transport.pause_reading()
    return _closing(web.json_response({"error": str(exc)}, status=413))


def request_limits(*, max_body_bytes: int, body_timeout: float) -> Middleware:
    """The middleware bounding every request's body size and body time (module docstring)."""

    @web.middleware
    async def limits(request: web.Request, handler: Handler) -> web.StreamResponse:
        size = request.content_length
        if size is not None and size > max_body_bytes:
            return too_large(BodyTooLarge(max_body_bytes, size), request)
        if not request.body_exists:
            return await handler(request)
        timer = asyncio.get_running_loop().call_later(body_timeout, _cut, request, body_timeout)
        try:
            return await handler(request)
        except BodyTimeout as exc:
            log.info("cut a request body that took over %g s (%s)", body_timeout, request.path)
            return _closing(web.json_response({"error": str(exc)}, status=408))
        except BodyTooLarge as exc:
            return too_large(exc, request)
        finally:
            timer.cancel()

    return limits


class Throttled:
    """Log a recurring condition at most once per ``interval``, with how often it happened."""

    def __init__(
        self, what: str, *, logger: logging.Logger = log, interval: float = LOG_INTERVAL_S,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:  # fmt: skip
        """``what`` starts each line; ``logger`` writes it."""
        self._what, self._log = what, logger
        self._interval, self._monotonic = interval, monotonic
        self._counts: Counter[str] = Counter()
        self._next = 0.0
        self.lines = 0
        """Lines logged so far (tests)."""

    def note(self, what: str) -> None:
        """Count ``what``; log the counts if the interval since the last line is over."""
        self._counts[what] += 1
        now = self._monotonic()
        if now < self._next:
            return
        summary = "; ".join(f"{what} (x{n})" for what, n in self._counts.items())
        self._log.warning("%s: %s", self._what, summary)
        self._counts.clear()
        self._next = now + self._interval
        self.lines += 1


def _cut(request: web.Request, seconds: float) -> None:
    if not request.content.is_eof():
        request.content.set_exception(BodyTimeout(f"the body did not arrive within {seconds:g} s"))


def _closing(response: web.Response) -> web.Response:
    response.force_close()
    return response
