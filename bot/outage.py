"""Waiting out a dependency's outage in a loop that must not die of it (``siyu worker``, the
scheduler's leader election): capped exponential backoff, logged once per outage.

A loop that meets a dependency failure (:func:`bot.errors.is_unavailable`: the database refused,
reset or timed out) calls :meth:`Outage.wait` and tries again; after its next success it calls
:meth:`Outage.over`. The first failure of an outage logs one warning naming the error; the
attempts in between log nothing; the end logs one line with how long it lasted and how many
attempts it took. Decision: an outage of PostgreSQL restarting (seconds) or failing over (a
minute) must not fill the log with a line per attempt, nor end the process: a service manager's
restart would only add a cold start to the outage.

The delay doubles from ``first`` to ``cap`` seconds, each one drawn between half and all of it
(jitter: several workers that lost the database together do not reconnect in step).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Callable

log = logging.getLogger(__name__)

FIRST_DELAY_S = 0.5
MAX_DELAY_S = 15.0


class Outage:
    """The current outage of one loop's dependency, if any (see the module docstring)."""

    def __init__(
        self,
        what: str,
        *,
        first: float = FIRST_DELAY_S,
        cap: float = MAX_DELAY_S,
        monotonic: Callable[[], float] = time.monotonic,
        jitter: Callable[[], float] = random.random,
    ) -> None:
        self._what = what
        self._first = first
        self._cap = cap
        self._monotonic = monotonic
        self._jitter = jitter
        self._attempts = 0
        self._since: float | None = None

    @property
    def ongoing(self) -> bool:
        """Whether the last attempt failed."""
        return self._since is not None

    def delay(self) -> float:
        """The pause before the next attempt, from the failures so far."""
        ceiling = min(self._cap, self._first * 2.0 ** max(0, self._attempts - 1))
        return ceiling * (0.5 + 0.5 * self._jitter())

    async def wait(self, exc: BaseException, stop: asyncio.Event | None = None) -> None:
        """Note a failed attempt (logging the first of an outage) and pause before the next
        one; the pause ends early when ``stop`` is set."""
        self._attempts += 1
        if self._since is None:
            self._since = self._monotonic()
            log.warning(
                "%s: the database is unavailable (%s: %s); retrying with backoff up to %g s",
                self._what, type(exc).__name__, _first_line(exc), self._cap,
            )  # fmt: skip
        await pause(self.delay(), stop)

    def over(self) -> None:
        """The attempt succeeded: log the end of the outage, if there was one."""
        if self._since is None:
            return
        lasted = self._monotonic() - self._since
        log.warning(
            "%s: the database is back after %.1f s (%d failed attempts)",
            self._what, lasted, self._attempts,
        )  # fmt: skip
        self._since, self._attempts = None, 0


async def pause(seconds: float, stop: asyncio.Event | None = None) -> None:
    """Sleep ``seconds``, or less if ``stop`` is set meanwhile."""
    if stop is None:
        await asyncio.sleep(seconds)
        return
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:200] if text else ""
