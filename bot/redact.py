"""What a log line may say about text Siyu does not own.

Members' messages and the model's output are personal or unpredictable (a model can be made to
repeat its prompt, and the prompt holds the member's words and the conversation): they are never
logged verbatim. A log line names them by message id and length instead; rejected model drafts
are named by the rule they broke and the offending term from our own lists, not by their text.

The one place model output used to reach the log is an exception's message: a failed LLM call
is logged as a fallback warning, and the exception's text may quote the response — langchain's
``ValueError`` quotes a body that is not a completion, openai's ``APIStatusError`` the error
body (some providers put the refused input there), pydantic's ``ValidationError`` the invalid
value. :func:`llm_failure` says what failed without any of that.

SQL parameters hold members' text too. At the default levels no SQL is logged: SQLAlchemy holds
its ``sqlalchemy`` logger at WARNING itself (set at import), and ``aiosqlite`` logs each call
(its arguments included) at DEBUG only. The engine hides parameters anyway
(``hide_parameters``, :func:`bot.db.create_engine`): in the text of every database error, which
the error boundaries log, and in SQLAlchemy's statements when an operator turns them on.
A root logger at DEBUG is an explicit choice to see everything, aiosqlite's arguments included.
"""

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
