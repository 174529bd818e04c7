"""Exceptions raised by the bot core.

SiyuError
├── ConfigError      settings are missing or contradict each other (raised at start-up)
│   └── SchemaError  the database is not one this Siyu can bring to its schema
├── AnswerError      the answerer could not produce an answer (the pipeline falls back)
│   └── LLMError     the LLM call failed or timed out
│       └── LLMUnavailable   the LLM is not answering, or its circuit breaker is open
├── DeliveryError    a proactive message (bot.types.Outbound) was not delivered
└── Unavailable      a dependency failed: the message waits in the inbox, the caller retries

:func:`is_unavailable` says which exceptions are dependency failures (an outage to wait out)
rather than bugs or bad input.
"""

from __future__ import annotations

import sqlalchemy.exc

from knowledge.errors import ServiceUnavailable, StoreError


class SiyuError(Exception):
    """Root of the bot core's exceptions."""


class ConfigError(SiyuError):
    """Settings are missing or inconsistent."""


class SchemaError(ConfigError):
    """The database cannot be upgraded: a revision newer than this Siyu, tables not made by Siyu,
    or a database made before migrations whose tables differ from the models (:mod:`bot.schema`).
    A start-up problem: ``siyu`` says it in one line and exits 2."""


class AnswerError(SiyuError):
    """No answer could be produced by this answerer."""


class LLMError(AnswerError):
    """The LLM call failed, timed out or returned nothing usable."""


class DeliveryError(SiyuError):
    """A proactive send failed. ``reason`` is what the outbox records: ``window_closed`` (the
    member's 48-hour / 5-message window), ``platform_quota`` (a platform limit), ``rejected``
    (the platform refused the content or address) or ``transport`` (no answer, busy).
    ``retryable`` sends may be tried again later; the others end the message."""

    def __init__(self, message: str, *, reason: str, retryable: bool) -> None:
        super().__init__(message)
        self.reason = reason
        self.retryable = retryable


class Unavailable(SiyuError):
    """A message could not be recorded or answered now because a dependency failed (the
    database, the vector store, the embeddings server), or its answer is still being made
    elsewhere. Nothing is lost: the message waits in the inbox (:mod:`bot.inbox`). Channels
    answer 503 with ``Retry-After: retry_after`` (webhook), an error frame (web chat), or no
    acknowledgement (platform callbacks), so that the caller retries."""

    def __init__(self, message: str, retry_after: float = 2.0) -> None:
        super().__init__(message)
        self.retry_after = retry_after


_OUTAGES: tuple[type[BaseException], ...] = (
    sqlalchemy.exc.OperationalError,  # the database refused, dropped or timed out
    sqlalchemy.exc.InterfaceError,  # the connection is gone
    sqlalchemy.exc.TimeoutError,  # no pooled connection in time
    OSError,  # refused or reset connections (ConnectionError is one)
    TimeoutError,
    ServiceUnavailable,  # the embeddings server (a 4xx is a configuration error, not this)
    StoreError,  # the vector store
)


def is_unavailable(exc: BaseException) -> bool:
    """True when ``exc`` is a dependency failure that a retry may not meet again."""
    if isinstance(exc, (Unavailable, *_OUTAGES)):
        return True
    return isinstance(exc, sqlalchemy.exc.DBAPIError) and exc.connection_invalidated


class LLMUnavailable(LLMError):
    """The LLM did not answer usefully within the deadline (timeout, refused connection, 5xx,
    429, an unreadable body), or its circuit breaker is open (``breaker_open``: nothing was
    sent). The answer falls back to the extractive one (:meth:`bot.llm.ChatModel.invoke`)."""

    def __init__(self, message: str, *, breaker_open: bool = False) -> None:
        super().__init__(message)
        self.breaker_open = breaker_open
