"""A web server whose process runs out of file descriptors on command, for
``test_server_exhaustion``: ``python -m tests.adapters.exhausted_server`` (from the repository
root) prints ``{"url": ...}`` once it listens, then reads commands on standard input:

- ``exhaust``: open ``/dev/null`` until the process has no descriptor left; prints ``exhausted``;
- ``release``: close them again; prints ``released``.

It stops when standard input closes. Logs go to standard error as ``siyu serve`` writes them.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import sys

from adapters.web import create_web_app, start_web
from adapters.web.config import WebSettings
from bot.types import InboundMessage, Reply, TextReply


async def echo(msg: InboundMessage, /) -> Reply:
    return TextReply(msg.text)


def exhaust() -> list[int]:
    held: list[int] = []
    while True:
        try:
            held.append(os.open(os.devnull, os.O_RDONLY))
        except OSError:
            return held


async def main() -> None:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    config = WebSettings(host="127.0.0.1", port=0)
    app = create_web_app(echo, config, bot_name="小域", brand="测试")
    runner, url = await start_web(app, config)
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    print(json.dumps({"url": url}), flush=True)
    held: list[int] = []
    try:
        while line := await reader.readline():
            if line.strip() == b"exhaust":
                held = exhaust()
                print("exhausted", flush=True)
            elif line.strip() == b"release":
                for fd in held:
                    os.close(fd)
                held = []
                print("released", flush=True)
    finally:
        await runner.cleanup()


if __name__ == "__main__":
    asyncio.run(main())
