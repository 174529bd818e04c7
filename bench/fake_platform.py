"""The fake WeCom + Official Account API (``tests.fakes.wecom_server``) as a process of its own,
for the benches.

    python -m bench.fake_platform        (from the repository root)

Prints one line ``{"url": "http://127.0.0.1:<port>"}`` once it listens, and stops when its
standard input closes (so it never outlives the bench that started it). Next to the fake's API it
serves bench-only endpoints:

- ``POST /bench/kf_messages`` ``{"count": n, "open_kfid": "...", "users": m}``: ``n`` customer
  text messages are waiting on the platform (spread over ``m`` customers), as if they had been
  sent before their callbacks arrive.
- ``GET /bench/stats``: how many calls each API received and how many sends were accepted.
- ``GET /bench/kf_send_times``: ``{"times": [...]}``, the real ``time.time()`` at which the fake
  accepted each kf send (a repeated ``msgid`` is not a new send), in order: the campaign bench
  measures the achieved send rate from them (the fake's own clock does not move).

The fake's clock starts at the real time (the bot under test uses the real clock for the 48-hour
windows) and does not move. Every Official Account user counts as having written just now, so a
late answer's ``custom/send`` is accepted: in the bench every such user did write.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web

from tests.fakes.wecom_server import FakePlatform, ManualClock

ROOT = Path(__file__).resolve().parent.parent

QUESTIONS = (
    "积分会过期吗？",
    "积分怎么算？",
    "积分可以抵现吗？",
    "怎么注册成为会员？",
    "今天天气怎么样",
)
"""Demo FAQ questions, and one the FAQ cannot answer (the "not found" path)."""
JSON = dict[str, Any]


@dataclass
class BenchPlatform(FakePlatform):
    """The test fake, with every OA user's 48-hour window open."""

    kf_send_times: list[float] = field(default_factory=list)
    """Real time of each accepted kf send (the fake's clock stands still)."""

    async def _custom_send(self, request: web.Request, body: JSON) -> JSON:
        self.add_oa_message(str(body.get("touser", "")))
        return await super()._custom_send(request, body)

    async def _kf_send_msg(self, request: web.Request, body: JSON) -> JSON:
        accepted = len(self.kf_sent)  # the parent never suspends: nothing interleaves here
        answer = await super()._kf_send_msg(request, body)
        if len(self.kf_sent) > accepted:
            self.kf_send_times.append(time.time())
        return answer


def bench_app(fake: FakePlatform) -> web.Application:
    """The fake's API plus the bench's control endpoints."""
    app = fake.app()

    async def kf_messages(request: web.Request) -> web.Response:
        spec = await request.json()
        count, users = int(spec["count"]), max(1, int(spec.get("users", 1)))
        kfid = str(spec.get("open_kfid", "wkfake"))
        for n in range(count):
            question = QUESTIONS[n % len(QUESTIONS)]
            fake.add_kf_message(f"wm-bench-{n % users}", question, open_kfid=kfid)
        return web.json_response({"waiting": len(fake.kf_messages[kfid])})

    async def stats(_request: web.Request) -> web.Response:
        calls = Counter(r.api for r in fake.requests)
        sent = {"kf_sent": len(fake.kf_sent), "custom_sent": len(fake.custom_sent)}
        return web.json_response({"calls": dict(calls), **sent})

    async def kf_send_times(_request: web.Request) -> web.Response:
        times = fake.kf_send_times if isinstance(fake, BenchPlatform) else []
        return web.json_response({"times": times})

    app.router.add_post("/bench/kf_messages", kf_messages)
    app.router.add_get("/bench/stats", stats)
    app.router.add_get("/bench/kf_send_times", kf_send_times)
    return app


@asynccontextmanager
async def child(*argv: str) -> AsyncIterator[tuple[str, int]]:
    """Start ``python -m <argv>``; yield its URL (first stdout line) and pid; stop it at the end
    by closing its standard input."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", *argv, cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE
    )
    assert proc.stdin is not None
    assert proc.stdout is not None
    try:
        line = await asyncio.wait_for(proc.stdout.readline(), 600)
        if not line:
            raise RuntimeError(f"{argv[0]} exited before it listened")
        yield json.loads(line)["url"], proc.pid
    finally:
        proc.stdin.close()
        try:
            await asyncio.wait_for(proc.wait(), 30)
        except TimeoutError:
            proc.kill()
            await proc.wait()


async def until_stdin_closes() -> None:
    """Return when the parent closes our standard input (or exits)."""
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    while await reader.read(4096):
        pass


async def main() -> None:
    fake = BenchPlatform(clock=ManualClock(time.time()))
    runner = web.AppRunner(bench_app(fake), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    fake.url = f"http://127.0.0.1:{runner.addresses[0][1]}"
    print(json.dumps({"url": fake.url}), flush=True)
    try:
        await until_stdin_closes()
    finally:
        await runner.cleanup()


if __name__ == "__main__":
    asyncio.run(main())
