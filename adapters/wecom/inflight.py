"""Answers in flight: one task per message, shared by the platform's retries, delivered once.

WeChat calls back again with the same MsgId when it saw no answer within 5 s. The first request
starts the message's answer; a retry joins it and waits within its own budget. Delivery is
claimed, never assumed: a request still open when the answer is ready claims it and replies
passively; if no request is waiting when the answer finishes, the completion hook claims it and
sends it through the API. :meth:`Answer.claim` succeeds once, and the event loop runs one step at
a time, so the two paths cannot both deliver.

Entries stay a while after they finish (retries come within ~15 s) so that a late retry answers
"already done" without running the pipeline again; beyond that, the pipeline's durable dedupe
answers. Old entries are dropped when new ones arrive: no timer, no polling.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field

KEEP_SECONDS = 120.0
MAX_ENTRIES = 10_000


@dataclass(eq=False)
class Answer:
    """One message's answer: ``text`` is set by the task (None: nothing to say)."""

    text: str | None = None
    waiters: int = 0
    claimed: bool = False
    finished_at: float | None = None
    task: asyncio.Task[None] | None = field(default=None, repr=False)

    def claim(self) -> bool:
        """Take the right to deliver the answer; True for exactly one caller."""
        if self.claimed:
            return False
        self.claimed = True
        return True

    async def wait(self, budget: float, *, until: asyncio.Future[None] | None = None) -> str | None:
        """The answer to deliver from this request, if it is ready within ``budget`` seconds (and
        before ``until`` resolves, if given) and nobody delivered it yet; None otherwise (the
        caller answers "received"). ``until`` is only watched, never cancelled."""
        if self.claimed or self.task is None:
            return None
        self.waiters += 1
        watched: set[asyncio.Future[None]] = {self.task} if until is None else {self.task, until}
        try:
            await asyncio.wait(watched, timeout=budget, return_when=asyncio.FIRST_COMPLETED)
        finally:
            self.waiters -= 1
        if self.task.done() and self.text is not None and self.claim():
            return self.text
        return None


class InFlight:
    """The answers of recent messages, by key (account and MsgId, or an event's key)."""

    def __init__(
        self,
        *,
        monotonic: Callable[[], float] = time.monotonic,
        keep_seconds: float = KEEP_SECONDS,
        max_entries: int = MAX_ENTRIES,
    ) -> None:
        self._monotonic = monotonic
        self._keep = keep_seconds
        self._max = max_entries
        self._answers: dict[str, Answer] = {}

    def get(self, key: str) -> Answer | None:
        """The answer started for ``key``, if it is still remembered."""
        return self._answers.get(key)

    def start(
        self,
        key: str,
        spawn: Callable[[Answer], asyncio.Task[None]],
        unclaimed: Callable[[Answer], None],
    ) -> Answer:
        """Start the answer for ``key``: ``spawn`` runs the task that fills it in;
        ``unclaimed`` is called when it finishes while no request waits for it."""
        self._evict()
        answer = Answer()
        task = spawn(answer)
        answer.task = task
        task.add_done_callback(lambda done: self._finished(answer, done, unclaimed))
        self._answers[key] = answer
        return answer

    def waiting(self, key: str) -> int:
        """How many requests wait for ``key``'s answer right now."""
        answer = self._answers.get(key)
        return 0 if answer is None else answer.waiters

    def __len__(self) -> int:
        return len(self._answers)

    def _finished(
        self, answer: Answer, task: asyncio.Task[None], unclaimed: Callable[[Answer], None]
    ) -> None:
        answer.finished_at = self._monotonic()
        if task.cancelled():  # shutting down: nothing may be sent any more
            return
        if answer.waiters == 0:
            unclaimed(answer)

    def _evict(self) -> None:
        now = self._monotonic()
        while self._answers:
            key, oldest = next(iter(self._answers.items()))
            if oldest.finished_at is None:
                return  # still running; later ones are dropped once it finishes
            if now - oldest.finished_at < self._keep and len(self._answers) < self._max:
                return
            del self._answers[key]
