"""Chat with the bot in a terminal: one line in, one reply out.

``siyu chat`` calls :func:`run_console` with the pipeline's ``handle``. Tests pass their own
``input_lines`` and ``write`` so no terminal is needed.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import unicodedata
import uuid
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Iterator
from contextlib import aclosing

from adapters import MAX_TEXT_CHARS, Clock, utc_now
from bot.text import encodable
from bot.types import HandoffReply, InboundMessage, MemberRef, MessageHandler, Reply, TextReply

logger = logging.getLogger(__name__)

CHANNEL = "console"
QUIT_COMMANDS = frozenset({"/quit", "/exit"})


async def stdin_lines() -> AsyncGenerator[str, None]:
    """Lines from standard input until EOF, read in the default executor.

    ``connect_read_pipe`` would be lighter, but it refuses regular files (``siyu chat < qs.txt``);
    a blocking ``readline`` in the executor works for terminals, pipes and files alike.
    """
    loop = asyncio.get_running_loop()
    while True:
        line = await loop.run_in_executor(None, sys.stdin.readline)
        if not line:
            return
        yield line


def render_reply(reply: Reply) -> Iterator[str]:
    """The lines a terminal shows for ``reply``: the text, then numbered sources."""
    if isinstance(reply, TextReply):
        yield reply.text
        for number, citation in enumerate(reply.citations, 1):
            title = f" — {citation.title}" if citation.title else ""
            yield f"  [{number}] {citation.source}{title}"
    elif isinstance(reply, HandoffReply):
        yield reply.text


def _problem(text: str) -> str | None:
    """Why ``text`` cannot be sent, or None when it can."""
    if len(text) > MAX_TEXT_CHARS:
        return f"（消息太长：最多 {MAX_TEXT_CHARS} 字，这条有 {len(text)} 字）"
    if any(unicodedata.category(ch) == "Cc" and ch != "\t" for ch in text):
        return "（消息里有控制字符，请重新输入）"
    if not encodable(text):  # a byte that is not UTF-8, read with surrogateescape (C locale)
        return "（消息里有无法识别的字符，请检查终端的编码是否为 UTF-8）"
    return None


async def run_console(
    handle: MessageHandler,
    *,
    input_lines: AsyncIterator[str] | None = None,
    write: Callable[[str], None] = print,
    member_id: str = "console-user",
    store_id: str | None = None,
    clock: Clock = utc_now,
) -> None:
    """Feed each input line to ``handle`` as a member message and write the reply.

    Stops at EOF or ``/quit``. Blank lines are skipped. A failing handler is logged and reported
    on the console; the chat goes on.
    """
    sender = MemberRef(CHANNEL, member_id)
    if input_lines is None:
        async with aclosing(stdin_lines()) as lines:
            await _loop(handle, lines, write, sender, store_id, clock)
    else:
        await _loop(handle, input_lines, write, sender, store_id, clock)


async def _loop(
    handle: MessageHandler,
    lines: AsyncIterator[str],
    write: Callable[[str], None],
    sender: MemberRef,
    store_id: str | None,
    clock: Clock,
) -> None:
    async for raw in lines:
        text = raw.strip()
        if not text:
            continue
        if text in QUIT_COMMANDS:
            return
        problem = _problem(text)
        if problem is not None:
            write(problem)
            continue
        msg = InboundMessage(
            id=str(uuid.uuid4()),
            channel=CHANNEL,
            conversation=sender.external_id,
            sender=sender,
            text=text,
            received_at=clock(),
            store_id=store_id,
        )
        for line in await _answer(handle, msg):
            write(line)


async def _answer(handle: MessageHandler, msg: InboundMessage) -> list[str]:
    try:
        reply = await handle(msg)
    except Exception:  # the error boundary of this channel: log once, keep chatting
        logger.exception("handler failed on console message %s", msg.id)
        return ["（出错了，这条消息没有得到回答，请稍后再试）"]
    return list(render_reply(reply))
