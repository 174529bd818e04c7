"""A small circuit breaker: stop calling a service that keeps failing, probe it back later.

States (``CircuitBreaker.state``)::

    closed ──(``failures`` consecutive failures)──► open
    open ──(``cool_down`` seconds passed; the next caller is let through as the probe)──► half_open
    half_open ──(the probe succeeds)──► closed
    half_open ──(the probe fails)──► open (for another ``cool_down``)

While open, :meth:`CircuitBreaker.allow` is False and callers take their fallback at once (the
extractive answer for the LLM, keyword search for the embeddings server, a retryable
``PlatformUnavailable`` for the platform APIs) instead of each waiting out a deadline. In
half-open only one probe is in flight; the other callers keep falling back until it reports. A
probe that never reports (its caller was cancelled) is given up after another ``cool_down``, so
the breaker cannot stick half-open.

The caller decides what a failure is: the service not answering usefully (a timeout, a refused
connection, 5xx, 429, an unreadable body). A 4xx that blames the request is the service
answering, and counts as a success.

The clock is injectable (``clock=``, monotonic seconds) so tests move time by hand. Transitions
are logged once each (warning when it opens, info when it closes), not per rejected call. Safe to
share between the event loop and worker threads (one lock).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from enum import StrEnum
from typing import Final

log = logging.getLogger(__name__)

FAILURES: Final = 3
"""Consecutive failures that open a breaker."""

COOL_DOWN: Final = 30.0
"""Seconds an open breaker waits before letting one probe through."""


class State(StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


class CircuitBreaker:
    """One breaker per remote service; see the module docstring."""

    def __init__(
        self,
        name: str,
        *,
        failures: int = FAILURES,
        cool_down: float = COOL_DOWN,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if failures < 1 or cool_down < 0:
            raise ValueError("failures must be at least 1 and cool_down not negative")
        self.name = name
        self._threshold = failures
        self._cool_down = cool_down
        self._clock = clock
        self._lock = threading.Lock()
        self._state = State.CLOSED
        self._failures = 0
        self._since = 0.0  # when it opened, or when the probe was let through

    @property
    def state(self) -> State:
        """The state as of now (an open breaker past its cool-down still reads open until a
        caller is let through as its probe)."""
        return self._state

    def allow(self) -> bool:
        """May a call go to the service now? True in closed; in open, True once the cool-down
        has passed (this caller is the probe, the breaker turns half-open)."""
        with self._lock:
            if self._state is State.CLOSED:
                return True
            if self._clock() - self._since < self._cool_down:
                return False
            if self._state is State.HALF_OPEN:
                log.info("%s: the probe never reported; letting another through", self.name)
            self._state = State.HALF_OPEN
            self._since = self._clock()
            return True

    def succeeded(self) -> None:
        """The service answered: close the breaker, forget the failures."""
        with self._lock:
            if self._state is not State.CLOSED:
                log.info("%s is answering again: circuit closed", self.name)
            self._state = State.CLOSED
            self._failures = 0

    def failed(self) -> None:
        """The service failed this call: count it; open after ``failures`` in a row, or at once
        when the call was the half-open probe."""
        with self._lock:
            self._failures += 1
            if self._state is State.CLOSED and self._failures < self._threshold:
                return
            if self._state is State.CLOSED:
                log.warning(
                    "%s failed %d times in a row: circuit open, falling back for %.0f s",
                    self.name, self._failures, self._cool_down,
                )  # fmt: skip
            self._state = State.OPEN
            self._since = self._clock()
