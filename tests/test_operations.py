"""Operating ``siyu serve`` as a real process: SIGTERM drains it, and its logs are JSON lines.

Each test seeds a data dir (SQLite, embedded Chroma, hash embeddings, the brand FAQ of
``tests/bot/conftest.py``) in-process, then runs ``siyu serve`` on it with one JSON webhook bridge
and the fake OpenAI-compatible server as its LLM, which the test makes slow
(:mod:`tests.fakes.openai_server`). What each proves:

- **an answer in flight finishes**: SIGTERM while the LLM takes 3 s; meanwhile ``/readyz`` is 503
  naming ``draining``, ``/healthz`` stays 200 and a new webhook request gets 503 with
  ``Retry-After``; the request in flight gets its answer; the process exits 0 within the drain
  bound;
- **past the bound, the message is given back**: SIGTERM while the LLM takes 30 s and the bound
  is 2 s; the process exits 0 within the bound, the message is ``pending`` again with no owner
  (not lost, not held), and the bridge's retry to a restarted process gets the answer;
- **JSON logs**: with ``SIYU_LOG_JSON=1`` every stderr line is a JSON object with an ISO
  timestamp, level, logger and message, and a line logged while answering carries the message's
  id; the member's text is not in the log.
"""

from __future__ import annotations

import asyncio
import json
import signal
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import sqlalchemy as sa

from adapters.webhook.signing import signed_headers
from bot.app import App
from bot.db import create_engine
from bot.models import InboxMessage
from tests.bot.conftest import make_settings, seed
from tests.fakes.openai_server import FakeOpenAI, openai_server
from tests.siyu_proc import SiyuProc

__all__ = ["openai_server"]

SECRET = "s3cret-for-the-bridge"
QUESTION = "会员日是哪天？"
INBOX = InboxMessage.__table__  # type: ignore[attr-defined]
REQUEST_S = 90.0
"""Only stops a broken test from hanging."""
EXIT_SLACK_S = 5.0
"""Beyond the drain bound: the runner's last second, the inbox's give-back, closing Chroma."""


@pytest.fixture
async def seeded(data_dir: Path) -> Path:
    """A data dir holding the brand FAQ."""
    app = await App.build(make_settings(data_dir))
    try:
        await seed(app.knowledge)
    finally:
        await app.close()
    return data_dir


def serve_env(data_dir: Path, llm: FakeOpenAI, **extra: str) -> dict[str, str]:
    env = {
        "SIYU_DATA_DIR": str(data_dir), "SIYU_EMBEDDING": "hash", "SIYU_WEB_PORT": "0",
        "SIYU_LLM_BASE_URL": llm.base_url, "SIYU_LLM_MODEL": "fake-model",
        "SIYU_LLM_API_KEY": "sk-fake", "SIYU_WEBHOOKS": json.dumps([
            {"name": "bridge", "secret": SECRET}
        ]),
        "SIYU_ANSWER_DEADLINE": "60", "SIYU_INBOX_LEASE_SECONDS": "70",
        "SIYU_LLM_TIMEOUT": "60", "SIYU_LLM_MAX_RETRIES": "0",
    }  # fmt: skip
    return {**env, **extra}


async def ask(url: str, msg_id: str, text: str = QUESTION) -> tuple[int, Any, dict[str, str]]:
    """POST a signed webhook message; (status, JSON body, headers)."""
    body = json.dumps({
        "id": msg_id, "conversation": f"c-{msg_id}", "sender": {"id": f"u-{msg_id}"},
        "text": text,
    }).encode()  # fmt: skip
    headers = {"Content-Type": "application/json", **signed_headers(SECRET, body)}
    timeout = aiohttp.ClientTimeout(total=REQUEST_S)
    async with (
        aiohttp.ClientSession(timeout=timeout) as http,
        http.post(url + "hooks/bridge", data=body, headers=headers) as resp,
    ):
        return resp.status, await resp.json(), dict(resp.headers)


async def get(url: str, path: str) -> tuple[int, Any]:
    async with aiohttp.ClientSession() as http, http.get(url + path) as resp:
        return resp.status, await resp.json()


async def llm_called(llm: FakeOpenAI, times: int = 1) -> None:
    """Until the fake LLM has received ``times`` chat requests (an answer is in flight)."""
    async with asyncio.timeout(REQUEST_S):
        while True:
            if len(llm.chat_requests) >= times:
                return
            await asyncio.sleep(0.05)


async def stop_and_time(proc: SiyuProc) -> tuple[int, float]:
    started = time.monotonic()
    code = await proc.stop(signal.SIGTERM)
    return code, time.monotonic() - started


async def inbox_row(data_dir: Path, msg_id: str) -> Any:
    engine = create_engine(f"sqlite+aiosqlite:///{(data_dir / 'siyu.db').resolve()}")
    try:
        async with engine.connect() as conn:
            query = sa.select(INBOX).where(INBOX.c.message_id == msg_id)
            return (await conn.execute(query)).one()
    finally:
        await engine.dispose()


async def test_sigterm_lets_the_answer_in_flight_finish_and_refuses_new_work(
    seeded: Path, openai_server: FakeOpenAI, tmp_path: Path
) -> None:
    openai_server.delay(3.0, "会员日是每月8号。[1]", times=5)
    env = serve_env(seeded, openai_server, SIYU_WEB_DRAIN_SECONDS="20")
    proc = await SiyuProc.start("serve", "serve", env=env, cwd=tmp_path / "run")
    try:
        url = await proc.url()
        assert (await get(url, "readyz"))[0] == 200
        in_flight = asyncio.create_task(ask(url, "m-1"))
        await llm_called(openai_server)
        proc.proc.send_signal(signal.SIGTERM)
        started = time.monotonic()
        ready = await wait_until_not_ready(url)
        health = await get(url, "healthz")
        refused = await ask(url, "m-2")
        status, answer, _ = await in_flight
        code = await proc.exited()
        took = time.monotonic() - started
    finally:
        await proc.kill()
    assert ready == (503, {"status": "not ready", "failing": ["draining"], "checks": {
        "draining": {"ok": False, "detail": "the process is shutting down"}}})  # fmt: skip
    assert health == (200, {"status": "ok"})
    assert refused[0] == 503
    assert refused[2]["Retry-After"] == "2"
    assert (status, answer["status"]) == (200, "replied"), answer
    assert code == 0, proc.stderr()
    assert took < 20 + EXIT_SLACK_S
    assert "drained in" in proc.stderr()


async def wait_until_not_ready(url: str) -> tuple[int, Any]:
    """``/readyz`` asked until it answers 503 (the signal handler runs on the server's loop)."""
    async with asyncio.timeout(REQUEST_S):
        while True:
            answer = await get(url, "readyz")
            if answer[0] != 200:
                return answer
            await asyncio.sleep(0.05)


async def test_sigterm_past_the_bound_gives_the_message_back_for_another_process(
    seeded: Path, openai_server: FakeOpenAI, tmp_path: Path
) -> None:
    openai_server.delay(30.0, "太迟的回答")
    bound = 2.0
    env = serve_env(seeded, openai_server, SIYU_WEB_DRAIN_SECONDS=str(bound))
    first = await SiyuProc.start("first", "serve", env=env, cwd=tmp_path / "first")
    second: SiyuProc | None = None
    try:
        url = await first.url()
        in_flight = asyncio.create_task(ask(url, "m-9"))
        await llm_called(openai_server)
        code, took = await stop_and_time(first)
        outcome = (await asyncio.gather(in_flight, return_exceptions=True))[0]
        left = await inbox_row(seeded, "m-9")
        second = await SiyuProc.start("second", "serve", env=env, cwd=tmp_path / "second")
        retried = await ask(await second.url(), "m-9")
        done = await inbox_row(seeded, "m-9")
    finally:
        await first.kill()
        if second is not None:
            await second.kill()
    assert code == 0, first.stderr()
    assert took < bound + EXIT_SLACK_S
    assert isinstance(outcome, aiohttp.ClientError), outcome  # the bridge saw no answer: retries
    assert (left.state, left.owner, left.attempts) == ("pending", None, 1)
    assert "gave back" in first.stderr() or "drain bound" in first.stderr()
    assert retried[0] == 200
    assert retried[1]["status"] == "replied"
    assert (done.state, done.attempts) == ("delivered", 2)


async def test_json_logs_carry_timestamps_levels_and_the_message_id(
    seeded: Path, openai_server: FakeOpenAI, tmp_path: Path
) -> None:
    env = serve_env(seeded, openai_server, SIYU_LOG_JSON="1", SIYU_LOG_LEVEL="info")
    proc = await SiyuProc.start("serve", "serve", env=env, cwd=tmp_path / "run")
    try:
        status, answer, _ = await ask(await proc.url(), "log-me-42")
        assert await proc.stop(signal.SIGTERM) == 0
    finally:
        await proc.kill()
    assert (status, answer["status"]) == (200, "replied")
    lines = [json.loads(line) for line in proc.stderr().splitlines()]
    assert lines, "serve logged nothing at INFO"
    for line in lines:
        assert {"ts", "level", "logger", "message"} <= set(line), line
        assert datetime.fromisoformat(line["ts"]).utcoffset() is not None, line
    about = [line for line in lines if line.get("message_id") == "log-me-42"]
    assert any(line["logger"] == "bot.pipeline" for line in about), lines
    assert all(QUESTION not in json.dumps(line, ensure_ascii=False) for line in lines)
