"""Exceptions raised by the bot core.

SiyuError
├── ConfigError      settings are missing or contradict each other (raised at start-up)
│   └── SchemaError  the database is not one this Siyu can bring to its schema
├── AnswerError      the answerer could not produce an answer (the pipeline falls back)
│   └── LLMError     the LLM call failed or timed out
│       └── LLMUnavailable   the LLM is not answering, or its circuit breaker is open
└── DeliveryError    a proactive message (bot.types.Outbound) was not delivered
"""

from __future__ import annotations


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


class LLMUnavailable(LLMError):
    """The LLM did not answer usefully within the deadline (timeout, refused connection, 5xx,
    429, an unreadable body), or its circuit breaker is open (``breaker_open``: nothing was
    sent). The answer falls back to the extractive one (:meth:`bot.llm.ChatModel.invoke`)."""

    def __init__(self, message: str, *, breaker_open: bool = False) -> None:
        super().__init__(message)
        self.breaker_open = breaker_open
