"""Log lines (:mod:`bot.logs`): JSON or plain, with the id of the message being answered in the
task that answers it and in the tasks it starts, and nowhere else."""

from __future__ import annotations

import asyncio
import io
import json
import logging
from collections.abc import Iterator
from datetime import datetime

import pytest

from bot.logs import JsonFormatter, PlainFormatter, answering

log = logging.getLogger("tests.logs")


@pytest.fixture
def captured() -> Iterator[tuple[io.StringIO, logging.Handler]]:
    """A handler on this test's logger only (the root logger is pytest's)."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    try:
        yield stream, handler
    finally:
        log.removeHandler(handler)


async def test_json_lines_name_the_message_being_answered(
    captured: tuple[io.StringIO, logging.Handler],
) -> None:
    stream, handler = captured
    handler.setFormatter(JsonFormatter())

    async def background() -> None:
        log.warning("in a task started while answering")

    with answering("m-42"):
        log.info("answering %s", "m-42")
        await asyncio.create_task(background())
    log.info("after")
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert [line.get("message_id") for line in lines] == ["m-42", "m-42", None]
    assert lines[0]["message"] == "answering m-42"
    assert lines[1]["level"] == "WARNING"
    assert lines[0]["logger"] == "tests.logs"
    assert datetime.fromisoformat(lines[0]["ts"]).utcoffset() is not None


def test_json_lines_carry_the_traceback_in_one_line(
    captured: tuple[io.StringIO, logging.Handler],
) -> None:
    stream, handler = captured
    handler.setFormatter(JsonFormatter())
    try:
        raise ValueError("boom")
    except ValueError:
        log.exception("failed")
    (line,) = stream.getvalue().splitlines()
    assert "ValueError: boom" in json.loads(line)["exception"]


def test_plain_lines_have_a_timestamp_and_the_message_id(
    captured: tuple[io.StringIO, logging.Handler],
) -> None:
    stream, handler = captured
    handler.setFormatter(PlainFormatter())
    with answering("m-7"):
        log.info("hello")
    (line,) = stream.getvalue().splitlines()
    stamp, rest = line.split(" ", 1)
    assert datetime.fromisoformat(stamp).utcoffset() is not None
    assert rest == "INFO tests.logs [msg m-7]: hello"
