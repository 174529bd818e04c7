"""Draining the server when the process is told to stop (SIGTERM, what service managers send on
every deploy): stop taking new work, let the work in flight finish within a bound, give back the
rest.

:class:`Drain` is one per server (:func:`adapters.web.server.create_web_app` installs its
middleware on the root application, so it sees every channel mounted there). From
:meth:`Drain.begin` on:

- every new request except ``/healthz`` and ``/readyz`` is answered ``503`` with
  ``Retry-After`` (a bridge retries, a platform retries its callback, a load balancer sends it to
  another process); ``/readyz`` says ``not ready`` naming ``draining``, so the balancer stops
  sending; ``/healthz`` stays 200: the process is alive, a supervisor must not kill it;
- the process's :class:`~adapters.admission.Admission` refuses new answers (a web chat frame on an
  open socket gets a ``busy`` frame) while the answers already admitted or lined up go on;
- :meth:`Drain.wait` returns once no request is in flight and no answer runs or waits
  (:meth:`~adapters.admission.Admission.quiet`), or when ``SIYU_WEB_DRAIN_SECONDS`` have passed.

What is still running after that is cancelled by the runner's cleanup: a cancelled answer gives
its message back to the durable inbox (:mod:`bot.inbox`), and the composition root gives back
whatever lease is left (``Inbox.release``), so another process answers it at once. Chat
WebSockets are not requests in flight: they are closed at shutdown and the page reconnects.
"""

from __future__ import annotations

import asyncio
import logging
import time

from aiohttp import web

from adapters.admission import Admission
from adapters.limits import Handler

log = logging.getLogger(__name__)

RETRY_AFTER_S = 2
"""What a request refused while draining is told (whole seconds)."""
PROBES = frozenset({"/healthz", "/readyz"})
"""Paths answered while draining (``/readyz`` answers "not ready" itself)."""
LONG_LIVED = frozenset({"/ws"})
"""Paths whose requests last as long as a chat: not counted as in flight."""


class Drain:
    """Counts the requests in flight and refuses new ones once draining."""

    def __init__(self, admission: Admission) -> None:
        self.admission = admission
        self.draining = False
        self.active = 0
        """Requests being handled (probes and chat sockets excepted)."""
        self.refused = 0
        """Requests answered 503 because the server was draining."""
        self._no_requests = asyncio.Event()
        self._no_requests.set()

    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        """Refuse new work while draining; count the rest while it runs."""
        if request.path in PROBES:
            return await handler(request)
        if self.draining:
            self.refused += 1
            return web.json_response(
                {"error": "shutting down", "retry_after": RETRY_AFTER_S},
                status=503, headers={"Retry-After": str(RETRY_AFTER_S)},
            )  # fmt: skip
        if request.path in LONG_LIVED:
            return await handler(request)
        self.active += 1
        self._no_requests.clear()
        try:
            return await handler(request)
        finally:
            self.active -= 1
            if not self.active:
                self._no_requests.set()

    @property
    def in_flight(self) -> int:
        """Requests being handled plus answers running or waiting for a slot."""
        return self.active + self.admission.demand

    def begin(self) -> None:
        """Stop taking new work (idempotent)."""
        if not self.draining:
            self.draining = True
            self.admission.close()

    async def wait(self, bound: float) -> int:
        """Begin, then wait until nothing is in flight or ``bound`` seconds pass; how much was
        still in flight at the end (0: drained)."""
        self.begin()
        started = time.monotonic()
        log.info("draining: %d in flight, waiting up to %g s", self.in_flight, bound)
        try:
            async with asyncio.timeout(bound):
                await self._settled()
        except TimeoutError:
            left = self.in_flight
            log.warning("drain bound of %g s reached: %d in flight are given back", bound, left)
            return left
        log.info("drained in %.1f s", time.monotonic() - started)
        return 0

    async def _settled(self) -> None:
        """Until no request and no answer is in flight (either may start the other)."""
        while self.in_flight:
            await self._no_requests.wait()
            await self.admission.quiet()
