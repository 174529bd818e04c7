"""How a long-running process logs: level, plain or JSON lines, and the message being answered.

:func:`configure_logging` is called once, at the start of ``siyu serve``, ``demo``, ``worker``
and ``scheduler``, with the settings' :class:`bot.config.LogSettings` (``SIYU_LOG_LEVEL``,
``SIYU_LOG_JSON``). Every line goes to stderr:

- **plain** (the default): ``2026-06-10T02:00:00.123+00:00 INFO bot.pipeline [msg 42]: ...``;
- **JSON** (``SIYU_LOG_JSON=1``): one object per line with ``ts`` (ISO 8601, UTC,
  milliseconds), ``level``, ``logger``, ``message``, ``message_id`` when the line was logged
  while a member's message was being answered, and ``exception`` (the traceback) when there is
  one. A log collector needs no parsing rules.

The message id comes from a context variable, :func:`answering`, which the pipeline sets around
each message (:meth:`bot.pipeline.Pipeline.handle`); asyncio copies it into the tasks started
meanwhile, so every line logged on that message's behalf carries it, whichever module logs it.

What a line may contain is :mod:`bot.redact`'s rule: members' text and the model's output are
never logged; ids, lengths and kinds are. Decisions: aiohttp's access log (one line per request,
query strings included, which carry signatures and openids) and httpx's line per outbound request
(the LLM, the embeddings server) stay at WARNING unless the level is DEBUG, and so do Alembic's
two lines per start (:mod:`bot.schema` logs an upgrade itself); SQLAlchemy holds its own loggers
at WARNING (:mod:`bot.redact`).
"""

from __future__ import annotations

import contextvars
import json
import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import TextIO

_MESSAGE_ID: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "siyu_message_id", default=None
)

QUIET_BELOW_DEBUG = ("aiohttp.access", "httpx", "alembic")
"""Loggers held at WARNING unless the level is DEBUG (see the module docstring)."""


@contextmanager
def answering(message_id: str) -> Iterator[None]:
    """Mark every line logged inside (and in tasks started inside) as about ``message_id``."""
    token = _MESSAGE_ID.set(message_id)
    try:
        yield
    finally:
        _MESSAGE_ID.reset(token)


def current_message_id() -> str | None:
    """The id of the message being answered in this context, if any."""
    return _MESSAGE_ID.get()


def _timestamp(record: logging.LogRecord) -> str:
    return datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds")


class JsonFormatter(logging.Formatter):
    """One JSON object per record (see the module docstring for the fields)."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, str] = {
            "ts": _timestamp(record),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if (message_id := current_message_id()) is not None:
            line["message_id"] = message_id
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, ensure_ascii=False)


class PlainFormatter(logging.Formatter):
    """``<ISO time> <LEVEL> <logger> [msg <id>]: <message>``, the traceback on the next lines."""

    def format(self, record: logging.LogRecord) -> str:
        message_id = current_message_id()
        about = f" [msg {message_id}]" if message_id is not None else ""
        head = f"{_timestamp(record)} {record.levelname} {record.name}{about}"
        text = f"{head}: {record.getMessage()}"
        if record.exc_info:
            text += "\n" + self.formatException(record.exc_info)
        return text


class StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever ``sys.stderr`` is when a line is logged, not the one it was built
    with: a command run in-process by a test runner, which swaps stderr for a buffer it closes
    afterwards, must not leave later lines writing to a closed buffer."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    @property
    def stream(self) -> TextIO:
        return sys.stderr

    @stream.setter
    def stream(self, _value: TextIO) -> None:
        pass


def configure_logging(level: str, *, json_lines: bool) -> None:
    """Send every log line to stderr at ``level``, as JSON or plain lines. Replaces the stderr
    handlers already on the root logger (``siyu``'s own default, an earlier call) and leaves
    any other handler alone (a test runner's capture)."""
    handler = StderrHandler()
    handler.setFormatter(JsonFormatter() if json_lines else PlainFormatter())
    root = logging.getLogger()
    for old in list(root.handlers):
        if isinstance(old, logging.StreamHandler) and old.stream in (sys.stderr, sys.__stderr__):
            root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    quiet = logging.WARNING if root.level > logging.DEBUG else logging.NOTSET
    for name in QUIET_BELOW_DEBUG:
        logging.getLogger(name).setLevel(quiet)
