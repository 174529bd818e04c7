"""The recovery loop: answers and sends the inbox's messages that nobody is answering any more.

A platform channel that sends through an API (Official Account, WeCom app, kf) records each
message before it acknowledges the callback (:meth:`bot.inbox.Inbox.record`), and the process
that recorded it answers and sends it. When that process dies (SIGKILL, a crash, a host lost),
the message stays in the inbox: pending, answering or sending under a lease that runs out. Each
``siyu serve`` runs one :class:`Recovery`; every ``interval`` seconds it asks the inbox for the
messages of its channels that are stranded (:meth:`bot.inbox.Inbox.stranded`: pending longer
than ``grace`` and not queued in this process, answered but never handed out, or leased by an
owner whose lease ran out), answers them with the pipeline through the same inbox call as the
live path (:meth:`bot.inbox.Inbox.answer_to_send`, which claims with a lease, so several
processes on one PostgreSQL never answer one message twice) and sends them with the channel's
:data:`Deliver`, which consumes the contact window as the live path does.

Order: a pass groups the stranded messages by conversation; each conversation's are answered
one after another, oldest first, and a failure stops that conversation until the next pass.
Conversations run concurrently, each answer inside ``admit`` (the process's one admission, the
same answer slots as the live callbacks).

A bridge's messages (the JSON webhook) are not here: ``deliverers`` names only channels with a
platform API to send through, and a bridge gets its answer on its own retry.

A send that keeps failing is retried each time its lease runs out, and given up after
``MAX_SEND_ATTEMPTS`` tries (``outcome`` ``gave_up``, logged): the member's contact window closes
within 48 hours anyway.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import defaultdict
from collections.abc import Awaitable, Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from datetime import timedelta

from bot.errors import is_unavailable
from bot.inbox import SENDING, Inbox, Stranded
from bot.types import InboundMessage, Reply

log = logging.getLogger(__name__)

Deliver = Callable[[InboundMessage, Reply], Awaitable[str | None]]
"""Send ``reply`` to the member who wrote ``msg`` through the channel's platform API; returns
the outcome (``sent``, or why it never will be: ``window_closed``, ...). None, or an exception,
when it should be tried again later (the message stays ``sending``)."""

Admit = Callable[[], AbstractAsyncContextManager[object]]
"""An answer slot: entered around each answer (the process's admission)."""

INTERVAL = 2.0
"""Seconds between two passes."""

GRACE = timedelta(seconds=5)
"""How long a pending message may wait for its own process before another one answers it: the
recording process claims it within milliseconds unless it is queued there (then it is not
stranded: :meth:`Inbox.record` remembers it) or the process died."""

BATCH = 200
"""The most messages one pass takes on."""

MAX_SEND_ATTEMPTS = 8
"""Tries (claims) of one message after which a send that keeps failing is given up."""

STOP_WAIT = 5.0
"""Seconds :meth:`Recovery.stop` lets a running pass finish before cutting it short."""


class Recovery:
    """The loop of one process (see the module doc); :meth:`start` and :meth:`stop` it."""

    def __init__(
        self,
        inbox: Inbox,
        deliverers: Mapping[str, Deliver],
        *,
        admit: Admit = contextlib.nullcontext,
        interval: float = INTERVAL,
        grace: timedelta = GRACE,
        batch: int = BATCH,
    ) -> None:
        self._inbox = inbox
        self._deliverers = dict(deliverers)
        self._admit = admit
        self._interval = interval
        self._grace = grace
        self._batch = batch
        self._task: asyncio.Task[None] | None = None
        self._stopping = asyncio.Event()

    def start(self) -> None:
        """Run passes in the background until :meth:`stop` (nothing to do without channels)."""
        if self._deliverers and self._task is None:
            self._task = asyncio.create_task(self._run(), name="inbox recovery")

    async def stop(self, wait: float = STOP_WAIT) -> None:
        """Stop the loop: a running pass may finish within ``wait`` seconds (a send cut short
        would be sent again after its lease: at least once), then it is cancelled; an answer
        cut short is given back to the inbox."""
        task, self._task = self._task, None
        if task is None:
            return
        self._stopping.set()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(task), wait)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    async def run_once(self) -> int:
        """One pass: how many stranded messages were answered and sent (or settled)."""
        stranded = await self._inbox.stranded(
            self._deliverers.keys(), grace=self._grace, limit=self._batch
        )
        conversations: dict[str, list[Stranded]] = defaultdict(list)
        for item in stranded:
            conversations[item.message.session_key].append(item)
        done = await asyncio.gather(*(self._conversation(c) for c in conversations.values()))
        if sum(done):
            log.info("inbox recovery: %d stranded message(s) answered", sum(done))
        return sum(done)

    async def _run(self) -> None:
        while not self._stopping.is_set():
            try:
                await self.run_once()
            except Exception as exc:  # the database is down: the next pass tries again
                if not is_unavailable(exc):
                    log.exception("inbox recovery: a pass failed")
                else:
                    log.warning("inbox recovery: a pass failed: %s: %s", type(exc).__name__, exc)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), self._interval)

    async def _conversation(self, items: Sequence[Stranded]) -> int:
        done = 0
        for item in items:
            try:
                done += await self._recover(item)
            except Exception as exc:  # its lease runs out; the next pass tries again, in order
                msg = item.message
                log.warning("inbox recovery: message %s of %s not sent: %s: %s",
                            msg.id, msg.channel, type(exc).__name__, exc)  # fmt: skip
                break
        return done

    async def _recover(self, item: Stranded) -> int:
        msg = item.message
        if item.state == SENDING and item.attempts >= MAX_SEND_ATTEMPTS:
            if await self._inbox.abandon(msg, "gave_up"):
                log.warning("inbox recovery: gave up sending message %s of %s after %d tries",
                            msg.id, msg.channel, item.attempts)  # fmt: skip
            return 0
        async with self._admit():
            reply = await self._inbox.answer_to_send(msg)
            if reply is None:
                return 0  # another request has it, or it was done meanwhile
            outcome = await self._deliverers[msg.channel](msg, reply)
        if outcome is None:
            raise RuntimeError("the platform did not take it; tried again later")
        await self._inbox.sent(msg, outcome)
        return 1
