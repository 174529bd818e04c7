"""One way to call an OpenAI-compatible service (the LLM, the embeddings server): one deadline,
our own bounded retries, a circuit breaker.

:func:`call` runs ``attempt`` (one SDK request; the SDK's own retries are off) under
:func:`knowledge.deadline.within` ``seconds`` (or the ambient answer deadline, if sooner):

- the breaker is open → :class:`ServiceUnavailable` at once (``breaker_open``), nothing is sent;
  likewise (without a breaker verdict) when nothing is left of the ambient deadline: an
  answer whose time went elsewhere must not count against the service;
- a transient failure (:func:`transient`: timeout or deadline, refused connection, 5xx, 429, an
  unreadable answer) is retried at most ``retries`` times while
  :func:`knowledge.deadline.retry_delay` says the retry fits (Retry-After honoured, never slept
  past the deadline); when it cannot be retried the breaker counts a failure and the caller gets
  :class:`ServiceUnavailable`, so it falls back (extractive answer, keyword search);
- any other error (a 4xx: a wrong key, model or request) is the service answering: the breaker
  counts a success and the error is raised as it is, to be reported as the real error it is.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from typing import TypeVar

import openai

from knowledge.breaker import CircuitBreaker
from knowledge.deadline import retry_after_seconds, retry_delay, time_left, within
from knowledge.errors import ServiceUnavailable
from knowledge.redact import llm_failure

log = logging.getLogger(__name__)

T = TypeVar("T")


def transient(exc: BaseException, unusable: tuple[type[BaseException], ...] = ()) -> bool:
    """Does ``exc`` mean the service is not answering usefully now (worth a retry, a breaker
    failure and a fallback) rather than refusing this request? ``unusable``: what the caller's
    client raises for an answer it cannot read (langchain's ValueError for a body that is not a
    completion)."""
    if isinstance(exc, unusable):
        return True
    if isinstance(exc, openai.APIStatusError):
        return exc.status_code in (408, 409, 429) or exc.status_code >= 500
    return isinstance(
        exc,
        TimeoutError
        | openai.APITimeoutError
        | openai.APIConnectionError
        | openai.APIResponseValidationError
        | json.JSONDecodeError,
    )


def _retry_after(exc: BaseException) -> float | None:
    if isinstance(exc, openai.APIStatusError):
        return retry_after_seconds(exc.response.headers)
    return None


async def call(
    attempt: Callable[[], Awaitable[T]],
    *,
    breaker: CircuitBreaker,
    seconds: float,
    retries: int,
    unusable: tuple[type[BaseException], ...] = (),
) -> T:
    """``attempt()``'s result within one deadline; see the module docstring. ``unusable`` as
    in :func:`transient`."""
    if time_left() <= 0:  # the answer's deadline is spent: no verdict on the service
        raise ServiceUnavailable(f"{breaker.name}: no time left in the answer's deadline")
    if not breaker.allow():
        raise ServiceUnavailable(f"{breaker.name}: circuit open", breaker_open=True)
    try:
        async with within(seconds):
            result = await _retried(attempt, retries, unusable)
    except ServiceUnavailable:
        breaker.failed()
        raise
    except TimeoutError as exc:
        breaker.failed()
        raise ServiceUnavailable(f"{breaker.name}: no answer within {seconds} s") from exc
    except Exception:  # a rejected request: the service did answer (a cancel is no verdict)
        breaker.succeeded()
        raise
    breaker.succeeded()
    return result


async def _retried(
    attempt: Callable[[], Awaitable[T]], retries: int, unusable: tuple[type[BaseException], ...]
) -> T:
    done = 0
    while True:
        try:
            return await attempt()
        except Exception as exc:
            if not transient(exc, unusable):
                raise
            delay = retry_delay(_retry_after(exc), time_left(), attempt=done)
            if done >= retries or delay is None:
                raise ServiceUnavailable(llm_failure(exc)) from exc
            log.debug("transient %s, retrying in %.2f s", type(exc).__name__, delay)
        done += 1
        await asyncio.sleep(delay)
