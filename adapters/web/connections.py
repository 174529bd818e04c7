"""Connection-level limits of the server ``siyu serve`` runs (web chat, webhook, WeCom and Official
Account callbacks all share it): idle and header-read timeouts, a connection cap, and accept
errors logged once per interval. Per-request limits (body size and body time) are
:mod:`adapters.limits`'.

- **Idle / header-read timeout** (``SIYU_WEB_IDLE_TIMEOUT``): aiohttp's keep-alive timer, which
  is armed when a connection opens and again after each response, and closes the connection if it
  is still waiting for a complete request line and headers by then. So one setting bounds both a
  client that connects and says nothing (or sends its headers a byte at a time) and an idle
  keep-alive connection. A WebSocket is not idle (its handler is running): the web chat's
  heartbeat looks after it.
- **Connection cap** (``SIYU_WEB_MAX_CONNECTIONS``, lowered to fit the process's open-file limit,
  :func:`connection_cap`): a new connection past the cap first closes the connection that has been
  idle longest (no request in progress: a keep-alive connection, or one still sending its
  headers); only when every connection is busy is the new one answered a canned 503 and closed.
  Decision: idle connections cost a file descriptor each and serve nobody, while a refused new
  connection may be the health check or a real member; measured before this (issue 11), 1,100 idle
  sockets at a 1,024 descriptor limit made ``/healthz`` time out. Busy connections (a request
  being answered, an open chat WebSocket) are never closed to make room.
- **Accept errors**: when the process does run out of descriptors, asyncio reports every failed
  ``accept()`` through the loop's exception handler with a traceback (about once a second per
  listening socket); :class:`AcceptErrorLog` turns them, and the cap's evictions and refusals,
  into one line per :data:`adapters.limits.LOG_INTERVAL_S` with a count.

:class:`GuardedSite` is the aiohttp site that puts the guard in front of the runner's server; the
cap counts connections the server knows plus those accepted in the current tick.
"""

from __future__ import annotations

import asyncio
import logging
import resource
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

from aiohttp import web
from aiohttp.web_protocol import RequestHandler

from adapters.limits import Throttled

log = logging.getLogger(__name__)

BACKLOG = 128
"""The listen backlog; asyncio accepts up to this many connections in one go."""
LINGER_S = 2.0
"""After answering a request whose body was not read (413, 408, a refusal before the body), how
long the server keeps reading and discarding the rest before it closes, so that the client can
read the answer rather than see a reset. aiohttp's default (10 s) kept every refused upload's
connection open that long."""
FD_RESERVE = 64
"""Descriptors kept for everything but client connections: the database, Chroma's files, outbound
HTTP (the LLM, the platforms), logs."""
ACCEPT_ERROR = "socket.accept() out of system resource"
"""The message asyncio's selector loop reports a failed ``accept()`` (EMFILE, ENFILE, ...) with."""
_BUSY_RESPONSE = (
    b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
    b"Retry-After: 1\r\nConnection: close\r\nContent-Length: 34\r\n\r\n"
    b'{"error": "too many connections"}\n'
)


def connection_cap(configured: int, fd_limit: int | None = None) -> int:
    """``configured``, lowered so that connections plus one accept batch plus the reserve fit the
    soft open-file limit (``fd_limit``, default this process's ``RLIMIT_NOFILE``)."""
    if fd_limit is None:
        fd_limit = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    if fd_limit == resource.RLIM_INFINITY:
        return configured
    reserve = max(FD_RESERVE + BACKLOG, fd_limit // 4)
    return max(1, min(configured, fd_limit - reserve))


class AcceptErrorLog:
    """A loop exception handler: failed accepts go to a :class:`Throttled` line, everything else
    to the handler that was there before (or asyncio's default)."""

    def __init__(self, throttled: Throttled, previous: Any = None) -> None:
        self._throttled, self._previous = throttled, previous

    def __call__(self, loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        if context.get("message") == ACCEPT_ERROR:
            self._throttled.note(f"accept failed: {context.get('exception')}")
        elif self._previous is not None:
            self._previous(loop, context)
        else:
            loop.default_exception_handler(context)

    @classmethod
    def install(cls, loop: asyncio.AbstractEventLoop, throttled: Throttled) -> None:
        """Put one in front of ``loop``'s current handler, unless one is there already."""
        current = loop.get_exception_handler()
        if not isinstance(current, cls):
            loop.set_exception_handler(cls(throttled, current))


class ConnectionGuard:
    """The protocol factory in front of the aiohttp server: counts, evicts, refuses.

    :attr:`middleware` marks which connections have a request in progress; it must run on the
    root application (``start_web`` adds it).
    """

    def __init__(
        self, runner: web.BaseRunner, cap: int, throttled: Throttled,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:  # fmt: skip
        """``runner`` serves the connections (its server exists once it is set up)."""
        self._runner, self.cap, self._throttled = runner, cap, throttled
        self._monotonic = monotonic
        self._pending = 0  # accepted this tick, not yet known to the server
        self._busy: Counter[RequestHandler] = Counter()
        self._idle_since: dict[RequestHandler, float] = {}
        self.evicted = self.refused = 0

    def __call__(self) -> asyncio.BaseProtocol:
        # The server keeps a closed connection listed until its handler task ends: not counted.
        live = [conn for conn in self._runner_server().connections if conn.transport is not None]
        self._forget_closed(live)
        if len(live) + self._pending >= self.cap and not self._evict(live):
            self.refused += 1
            self._throttled.note(f"connection cap {self.cap} reached, all busy: refused")
            return _Refuse()
        self._pending += 1
        asyncio.get_running_loop().call_soon(self._made)
        handler = self._runner_server()()
        self._idle_since[handler] = self._monotonic()
        return handler

    @web.middleware
    async def middleware(
        self, request: web.Request, handler: Callable[[web.Request], Any]
    ) -> web.StreamResponse:
        """Mark the request's connection busy while its handler runs."""
        conn = request.protocol
        self._busy[conn] += 1
        try:
            response: web.StreamResponse = await handler(request)
            return response
        finally:
            self._busy[conn] -= 1
            if self._busy[conn] <= 0:
                del self._busy[conn]
            self._idle_since[conn] = self._monotonic()

    def _made(self) -> None:
        # Runs after the tick's accepts, just before the first connection_made of the batch.
        self._pending -= 1

    def _runner_server(self) -> web.Server:
        server = self._runner.server
        if server is None:
            raise RuntimeError("the runner is not set up")
        return server

    def _evict(self, live: list[RequestHandler]) -> bool:
        """Close the connection idle longest; False when every one is busy."""
        idle = [conn for conn in live if conn not in self._busy]
        if not idle:
            return False
        oldest = min(idle, key=lambda conn: self._idle_since.get(conn, 0.0))
        oldest.force_close()
        self.evicted += 1
        self._throttled.note(f"connection cap {self.cap} reached: closed idle connections")
        return True

    def _forget_closed(self, live: list[RequestHandler]) -> None:
        if len(self._idle_since) > 2 * max(len(live), self.cap):
            known = set(live)
            self._idle_since = {c: t for c, t in self._idle_since.items() if c in known}


class _Refuse(asyncio.Protocol):
    """A connection over the cap: a canned 503, then closed, without reading the request."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.WriteTransport)
        transport.write(_BUSY_RESPONSE)
        transport.close()


class GuardedSite(web.BaseSite):
    """A TCP site whose connections go through a :class:`ConnectionGuard`."""

    def __init__(
        self, runner: web.BaseRunner, host: str, port: int, guard: Callable[[], Any]
    ) -> None:
        super().__init__(runner, backlog=BACKLOG)
        self._host, self._port, self._guard = host, port, guard

    @property
    def name(self) -> str:
        return f"http://{self._host}:{self._port}"

    async def start(self) -> None:
        await super().start()
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            self._guard, self._host or None, self._port, backlog=self._backlog
        )
