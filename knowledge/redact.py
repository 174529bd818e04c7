"""One line about a failed call to a remote model (the LLM, the embeddings server) that never
quotes what the model sent back: the log and the error text carry the exception's type, an HTTP
status and error code, a transport's own words, or only a message's length. Why, and the rest of
what logs may say: :mod:`bot.redact`. It lives here, under the knowledge layer, because
:mod:`knowledge.remote` (the retries and deadline every remote model call shares) builds its
errors with it, and the knowledge layer does not import the bot."""

from __future__ import annotations

import re

import httpx
import openai

_TOKEN = re.compile(r"[\w.\-]{1,40}")
"""An error code or type as providers send them (``rate_limit_exceeded``, ``server_error``)."""

_TRANSPORT: tuple[type[BaseException], ...] = (
    openai.APIConnectionError,  # includes APITimeoutError; a fixed message
    httpx.TransportError,  # connect/read/write errors and timeouts: the OS's or httpx's words
    TimeoutError,
    ConnectionError,
)


def llm_failure(exc: BaseException) -> str:
    """One line about a failed LLM call, for the log and ``LLMError``: the exception's type and,
    where its message cannot quote the response, the message; an HTTP error's status and error
    code; for anything else (a parser's or validator's error) only the message's length."""
    kind = type(exc).__name__
    if isinstance(exc, openai.APIStatusError):
        code = _token(getattr(exc, "code", None)) or _token(getattr(exc, "type", None))
        return f"{kind}: HTTP {exc.status_code}" + (f" ({code})" if code else "")
    if isinstance(exc, _TRANSPORT):
        return f"{kind}: {exc}"[:300]
    return f"{kind} (message of {_length(exc)} characters not logged: it may quote the model)"


def _length(exc: BaseException) -> int | str:
    try:
        return len(str(exc))
    except ValueError:  # str() of an int past the int-string conversion limit
        return "?"


def _token(value: object) -> str | None:
    return value if isinstance(value, str) and _TOKEN.fullmatch(value) else None
