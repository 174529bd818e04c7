"""How many answers a process computes at once, and what happens to the rest: :class:`Admission`.

One admission per process, built by the composition root (``bot/cli.py``) and shared by every
channel, because the resource it guards is the process's: the CPU that embeds questions (extractive
answers) or the connections to the LLM. At most ``limit`` answers run at once
(:func:`answering_limit`); past that, work waits in one FIFO line for a free slot.

Two kinds of work wait differently:

- **A person is waiting on the connection** (the webhook's response, a web chat frame):
  :meth:`Admission.admit`. At most ``queue`` such requests wait for a slot, each at most ``wait``
  seconds. Past either bound the request is refused with :class:`Busy` at once (or when its wait
  runs out): the webhook answers 503 with ``Retry-After``, the web chat a ``busy`` frame. Decision:
  shedding early beats serving late. Measured before this existed (issue 11): 100 webhook
  requests/s against a capacity of about 30/s left 4,050 of 6,000 timing out and the rest answered
  after a median 40.6 s; a bridge can retry a 503, it cannot retry an answer that never came.
- **The platform was already acknowledged** (kf, Official Account, WeCom app callbacks answer
  through the API later): :meth:`Admission.line_up`. It waits in the same line without a
  bound; refusing it would lose an acknowledged message (durable queueing of those is the inbox's
  job, not this module's). It still counts towards :attr:`Admission.saturated`, so a callback that
  could answer passively (the Official Account) acknowledges at once instead of waiting its turn;
  and one already waiting for its passive reply stops waiting once work queues
  (:meth:`Admission.strained`): in a burst no request is held open for an answer.

Counts (:attr:`running`, :attr:`waiting`, :attr:`shed`) are plain attributes for tests, benches
and a readiness check; shedding is logged once per interval with a count, not per request.

:meth:`Admission.close` is the process draining (SIGTERM, :mod:`adapters.web.drain`): from then on
:meth:`Admission.admit` refuses at once with :class:`Busy`, while the answers already admitted or
lined up finish (and :attr:`demand` tells when they have).
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from adapters.limits import Throttled

log = logging.getLogger(__name__)

MAX_ANSWERING = 16
"""Answers run at once per process when they come from an LLM (network-bound)."""
MAX_ANSWERING_CPU = 4
"""The same for answers computed locally (extractive, the query embedding is CPU-bound): about two
per core; more only takes CPU from the acknowledgements (docs/measurements.md)."""
DEFAULT_QUEUE = 16
"""Requests with a person waiting that may queue for a slot (``SIYU_WEB_ANSWER_QUEUE``)."""
DEFAULT_WAIT_S = 5.0
"""How long such a request may wait for a slot (``SIYU_WEB_ANSWER_WAIT_SECONDS``)."""


def answering_limit(*, llm: bool) -> int:
    """How many answers a process runs at once: :data:`MAX_ANSWERING` with an LLM, else
    :data:`MAX_ANSWERING_CPU`."""
    return MAX_ANSWERING if llm else MAX_ANSWERING_CPU


class Busy(Exception):
    """No slot for this request now: refuse it and tell the caller when to come back."""

    def __init__(self, reason: str, retry_after: int) -> None:
        super().__init__(reason)
        self.retry_after = retry_after
        """Whole seconds, as an HTTP ``Retry-After`` header carries them."""


class Admission:
    """``limit`` answers at once; up to ``queue`` interactive requests waiting ``wait`` s each."""

    def __init__(
        self,
        limit: int = MAX_ANSWERING_CPU,
        *,
        queue: int = DEFAULT_QUEUE,
        wait: float = DEFAULT_WAIT_S,
    ) -> None:
        if limit < 1 or queue < 0 or wait < 0:
            raise ValueError("an admission needs limit >= 1, queue >= 0 and wait >= 0")
        self.limit, self.queue, self.wait = limit, queue, wait
        self._slots = asyncio.Semaphore(limit)  # FIFO: the one line every kind of work joins
        self.running = 0
        """Answers holding a slot."""
        self.waiting = 0
        """Interactive requests waiting for a slot (bounded by ``queue``)."""
        self.background_waiting = 0
        """Acknowledged callbacks waiting for a slot (unbounded)."""
        self.shed = 0
        """Interactive requests refused so far."""
        self._strain: asyncio.Future[None] | None = None
        self._shedding = Throttled("shedding load", logger=log)
        self.closed = False
        """No new interactive work is admitted (:meth:`close`)."""
        self._quiet: list[asyncio.Future[None]] = []

    @property
    def demand(self) -> int:
        """Answers running or in line for a slot, of both kinds."""
        return self.running + self.waiting + self.background_waiting

    @property
    def saturated(self) -> bool:
        """True when new work would wait: every slot is taken or promised to someone in line."""
        return self.demand >= self.limit

    def strained(self) -> asyncio.Future[None]:
        """Resolved as soon as work has to wait in line for a slot (already, if it does).

        What a request waiting for its answer races against when it need not wait (an Official
        Account passive reply): once a burst makes work queue, it stops waiting and acknowledges.
        One future per calm spell, shared by every such request; never cancelled by them."""
        if self._strain is None or self._strain.done():
            self._strain = asyncio.get_running_loop().create_future()
            self._check_strain()
        return self._strain

    @property
    def retry_after(self) -> int:
        """What a refused request is told: the longest a queued one may wait, whole seconds."""
        return max(1, math.ceil(self.wait))

    @asynccontextmanager
    async def admit(self) -> AsyncIterator[None]:
        """Hold a slot while a person waits for the answer; :class:`Busy` when the line is full
        or the slot does not come within ``wait`` seconds."""
        if self.closed:
            raise self._refuse("shutting down")
        if self.saturated and self.waiting >= self.queue:
            raise self._refuse(f"{self.running} answering and {self.waiting} waiting")
        self.waiting += 1
        self._check_strain()
        try:
            async with asyncio.timeout(self.wait):
                await self._slots.acquire()
        except BaseException as exc:
            self.waiting -= 1
            self._check_quiet()
            if isinstance(exc, TimeoutError):
                raise self._refuse(f"no answer slot within {self.wait:g} s") from None
            raise
        self.waiting -= 1
        self.running += 1
        try:
            yield
        finally:
            self._release()

    def close(self) -> None:
        """Admit no new interactive work (the process is draining); idempotent."""
        self.closed = True

    async def quiet(self) -> None:
        """Return once no answer runs or waits (:attr:`demand` is 0)."""
        if not self.demand:
            return
        waiter = asyncio.get_running_loop().create_future()
        self._quiet.append(waiter)
        try:
            await waiter
        finally:
            if waiter in self._quiet:
                self._quiet.remove(waiter)

    def _check_quiet(self) -> None:
        if self.demand:
            return
        waiters, self._quiet = self._quiet, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

    def line_up(self) -> Ticket:
        """A place in line for work whose caller was already answered: counted from now (so
        :attr:`saturated` sees it at once, before the work's task first runs); entering the
        ticket waits for a slot as long as it takes."""
        self.background_waiting += 1
        self._check_strain()
        return Ticket(self)

    async def _take_turn(self) -> None:
        """A lined-up ticket gets its slot (it stays in line, counted, until then)."""
        await self._slots.acquire()
        self.background_waiting -= 1
        self.running += 1

    def _check_strain(self) -> None:
        if self.demand > self.limit and self._strain is not None and not self._strain.done():
            self._strain.set_result(None)

    def _leave_line(self) -> None:
        self.background_waiting -= 1
        self._check_quiet()

    def _release(self) -> None:
        self.running -= 1
        self._slots.release()
        self._check_quiet()

    def _refuse(self, reason: str) -> Busy:
        self.shed += 1
        self._shedding.note(f"refused with Retry-After {self.retry_after} s")
        return Busy(reason, self.retry_after)


class Ticket:
    """A place in an :class:`Admission`'s line (:meth:`Admission.line_up`): ``async with`` it to
    wait for the slot and hold it; :meth:`abandon` gives the place up if it was never entered
    (its task was cancelled before it started)."""

    def __init__(self, admission: Admission) -> None:
        self._admission = admission
        self._state = "waiting"  # → "running" → "done", or → "abandoned"

    async def __aenter__(self) -> None:
        try:
            await self._admission._take_turn()
        except BaseException:
            self.abandon()
            raise
        self._state = "running"

    async def __aexit__(self, *_exc: object) -> None:
        if self._state == "running":
            self._state = "done"
            self._admission._release()

    def abandon(self) -> None:
        """Leave the line without running; a no-op once entered or already abandoned."""
        if self._state == "waiting":
            self._state = "abandoned"
            self._admission._leave_line()
