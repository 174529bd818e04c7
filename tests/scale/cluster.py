"""Siyu as README "Scaling out" runs it, for tests: N ``siyu serve`` processes on one PostgreSQL
database and one Chroma server, each a real process started from the console script.

:func:`cluster` makes a fresh PostgreSQL database (dropped afterwards), starts ``chroma run``,
upgrades the schema and loads the demo FAQ once (``siyu db upgrade``, ``siyu ingest``), then
starts the serve processes with a signed webhook bridge. :class:`Cluster` can kill, terminate
and restart one of them; a restarted process gets a new port (its URL is updated).

:func:`bridge_send` is what a bridge does: sign the message, post it, and on a refusal it may
retry (503 with ``Retry-After``, a reset connection, a timeout) send it again, to the next process.

The local embedding model would make every start take seconds; the tests use the hash embedder
(the retrieval itself is not what they test, and the answers are still the real pipeline's).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import shutil
import signal
import socket
import sys
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from adapters.webhook.signing import signed_headers
from bot.demo import DEMO_DIR
from tests.fakes.tcp_proxy import TcpProxy
from tests.sql import postgres_admin, scratch_database_name

SIYU = str(Path(sys.executable).with_name("siyu"))
CHROMA = shutil.which("chroma") or str(Path(sys.executable).with_name("chroma"))
BRIDGE = "shop"
SECRET = "scale-bridge-secret-0123456789"
START_GUARD_S = 120.0
"""Only stops a broken start from hanging a test."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.asynccontextmanager
async def fresh_postgres(url: str) -> AsyncIterator[str]:
    """The URL of a new, empty PostgreSQL database beside ``url``'s, dropped afterwards."""
    name = scratch_database_name()
    await postgres_admin(url, f"CREATE DATABASE {name}")
    try:
        yield f"{url.rsplit('/', 1)[0]}/{name}"
    finally:
        await postgres_admin(url, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@contextlib.asynccontextmanager
async def chroma_server(path: Path) -> AsyncIterator[str]:
    """``chroma run`` on a free port; its URL once it listens."""
    port = free_port()
    proc = await asyncio.create_subprocess_exec(
        CHROMA, "run", "--path", str(path), "--host", "127.0.0.1", "--port", str(port),
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    try:
        async with asyncio.timeout(START_GUARD_S):
            while True:
                try:
                    _, writer = await asyncio.open_connection("127.0.0.1", port)
                except OSError:
                    await asyncio.sleep(0.1)
                    continue
                writer.close()
                await writer.wait_closed()
                break
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        await proc.wait()


async def run_siyu(env: dict[str, str], cwd: Path, *args: str) -> None:
    proc = await asyncio.create_subprocess_exec(
        SIYU, *args, env=env, cwd=cwd, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    output, _ = await asyncio.wait_for(proc.communicate(), START_GUARD_S)
    assert proc.returncode == 0, f"siyu {' '.join(args)} failed: {output.decode()[-2000:]}"


@dataclass
class Serve:
    """One ``siyu serve`` process; ``log`` is where its stderr goes."""

    proc: asyncio.subprocess.Process
    url: str
    log: Path


@dataclass
class Cluster:
    env: dict[str, str]
    cwd: Path
    database_url: str
    """The database itself (``env`` may reach it through a proxy)."""
    serves: list[Serve] = field(default_factory=list)
    restarts: int = 0

    def hook(self, index: int) -> str:
        return self.serves[index].url + f"hooks/{BRIDGE}"

    async def start(self) -> Serve:
        """A new serve process, appended to :attr:`serves`, once it announced its URL."""
        log = self.cwd / f"serve-{len(self.serves) + self.restarts}.log"
        with log.open("wb") as err:
            proc = await asyncio.create_subprocess_exec(
                SIYU, "serve", env=self.env, cwd=self.cwd, stdout=asyncio.subprocess.PIPE,
                stderr=err,
            )  # fmt: skip
        assert proc.stdout is not None
        output = ""
        async with asyncio.timeout(START_GUARD_S):
            while "Ctrl-C stops." not in output:
                line = await proc.stdout.readline()
                assert line, f"siyu serve exited early: {output}\n{log.read_text()[-3000:]}"
                output += line.decode()
        match = re.search(r"web chat: (http://127\.0\.0\.1:\d+/)", output)
        assert match, output
        serve = Serve(proc, match.group(1), log)
        self.serves.append(serve)
        return serve

    async def stop(self, index: int, sig: signal.Signals = signal.SIGKILL) -> int:
        """Send ``sig`` to serve ``index`` and wait for it to exit; its exit code."""
        proc = self.serves[index].proc
        if proc.returncode is None:
            proc.send_signal(sig)
        return await asyncio.wait_for(proc.wait(), START_GUARD_S)

    async def restart(self, index: int) -> None:
        """Start serve ``index`` again (after :meth:`stop`), on a new port."""
        self.restarts += 1
        serve = await self.start()
        self.serves[index] = self.serves.pop()
        assert serve is self.serves[index]

    async def close(self) -> None:
        for serve in self.serves:
            if serve.proc.returncode is None:
                serve.proc.terminate()
        for serve in self.serves:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(serve.proc.wait(), 30)
            if serve.proc.returncode is None:
                serve.proc.kill()
                await serve.proc.wait()


def serve_env(database_url: str, chroma_url: str, data_dir: Path, **extra: str) -> dict[str, str]:
    return {
        **os.environ, "SIYU_DATA_DIR": str(data_dir), "SIYU_DATABASE_URL": database_url,
        "SIYU_CHROMA_URL": chroma_url, "SIYU_EMBEDDING": "hash", "SIYU_LLM_MODEL": "",
        "SIYU_WEB_PORT": "0", "SIYU_WEBHOOKS": json.dumps([{"name": BRIDGE, "secret": SECRET}]),
        **extra,
    }  # fmt: skip


@contextlib.asynccontextmanager
async def cluster(
    tmp_path: Path,
    postgres_url: str,
    processes: int = 2,
    *,
    proxy: TcpProxy | None = None,
    settings: Mapping[str, str] | None = None,
) -> AsyncIterator[Cluster]:
    """``processes`` serve processes on a fresh PostgreSQL database and a Chroma server, the
    demo FAQ loaded; ``settings`` are more ``SIYU_*`` variables. With ``proxy`` (started, in front
    of PostgreSQL) the serve processes reach the database through it; the set-up does not."""
    async with fresh_postgres(postgres_url) as db, chroma_server(tmp_path / "chroma") as chroma:
        env = serve_env(db, chroma, tmp_path / "data", **(settings or {}))
        await run_siyu(env, tmp_path, "db", "upgrade")
        await run_siyu(env, tmp_path, "ingest", str(DEMO_DIR / "faq.csv"))
        if proxy is not None:
            env = {**env, "SIYU_DATABASE_URL": proxy.url(db)}
        running = Cluster(env, tmp_path, database_url=db)
        try:
            for _ in range(processes):
                await running.start()
            yield running
        finally:
            await running.close()


@dataclass(frozen=True)
class Outcome:
    """The bridge's last answer to one message: ``status`` is the response's ``status`` field
    (``replied`` / ``silent``), ``reason`` a silent one's reason, ``tries`` how many posts."""

    status: str
    reason: str | None
    tries: int
    text: str | None = None


def message(msg_id: str, member: str, text: str) -> bytes:
    body = {
        "id": msg_id, "conversation": member, "sender": {"id": member, "name": "会员"},
        "text": text,
    }  # fmt: skip
    return json.dumps(body, ensure_ascii=False).encode()


async def post(http: aiohttp.ClientSession, url: str, body: bytes) -> tuple[int, Any]:
    """One signed post; (HTTP status, parsed JSON or None)."""
    headers = {**signed_headers(SECRET, body), "Content-Type": "application/json"}
    async with http.post(url, data=body, headers=headers) as resp:
        payload = await resp.json() if resp.content_type == "application/json" else None
        return resp.status, payload


async def bridge_send(
    http: aiohttp.ClientSession, urls: list[str] | Any, body: bytes, *, within: float = 240.0
) -> Outcome:
    """Post ``body`` until it is answered, as a bridge does: a 503 (after its ``Retry-After``,
    capped at 2 s), a reset or a timeout is retried on the next URL of ``urls()`` (a callable:
    the cluster's current URLs, which change when a process restarts). ``within`` seconds only
    stop a broken test: a loaded machine answers slowly, and slowness is the benchmarks' to
    measure."""
    seen: list[str] = []
    give_up = asyncio.get_running_loop().time() + within
    attempt = -1
    while asyncio.get_running_loop().time() < give_up:
        attempt += 1
        current = urls() if callable(urls) else urls
        url = current[attempt % len(current)]
        try:
            status, payload = await post(http, url, body)
        except (aiohttp.ClientError, TimeoutError) as exc:
            seen.append(type(exc).__name__)
            await asyncio.sleep(0.2)
            continue
        seen.append(f"{status} {(payload or {}).get('error', '')}")
        if status == 503:
            await asyncio.sleep(min(2.0, float((payload or {}).get("retry_after", 1))))
            continue
        assert status == 200, (status, payload)
        reply = payload.get("reply") or {}
        return Outcome(payload["status"], payload.get("reason"), attempt + 1, reply.get("text"))
    raise AssertionError(f"no answer within {within} s: {seen[-20:]}")
