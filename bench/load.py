"""Offered load stepped past capacity on one real ``siyu serve`` process, beside a bare aiohttp
handler in the same run; an Official Account burst; half-sent bodies against the server's memory.

    .venv/bin/python -m bench.load [--rates 20,40,80] [--seconds 15] [--scenarios ...]
        [--oa-burst 300] [--oa-rate 300] [--llm-delay 2] [--half-sent 400] [--code DIR]

(run from the repository root). Processes, all on 127.0.0.1:

- **serve**: ``siyu serve`` (the real console script) with the local embedder and the demo FAQ
  (``siyu ingest``), a webhook bridge and a safe-mode Official Account; no LLM (extractive
  answers). ``oa_llm`` starts a second one whose LLM is the helper's chat endpoint.
- **helper** (this module with ``--helper``): ``POST /bare`` (reads the body, answers 200: the
  baseline) and ``POST /v1/chat/completions`` (an OpenAI-compatible answer after ``--llm-delay``
  seconds: a slow LLM).
- **fake platform** (``bench.fake_platform``): the Official Account's API (``custom/send``).
- **load generator** (this process): open loop, request ``n`` sent at ``start + n / rate`` whatever
  the answers do; client timeout 30 s.

Scenarios (``--scenarios``, default all):

- ``webhook``: each rate for ``--seconds`` to ``POST /hooks/bench`` (signed, each message new),
  then the same rates to the bare handler. Per step: ``answered`` (200), ``shed`` (503, with
  ``Retry-After``), ``errors`` (timeouts, resets), ``answered_per_s``, p50/p99 of the answered and
  of the shed.
- ``oa_burst`` / ``oa_llm``: ``--oa-burst`` Official Account text messages at ``--oa-rate``/s,
  extractive / through the slow LLM: acknowledgement p50/p99, passive replies vs ``success``, and
  how many answers reached the platform (passive + ``custom/send``) within 120 s.
- ``webhook_scaled``: the webhook steps again on ``--processes`` (default 1 and 2) ``siyu
  serve`` processes sharing a scratch PostgreSQL database (on ``--postgres``) and a Chroma
  server, load spread round robin: answered/s per process count.
- ``half_sent``: ``--half-sent`` connections each announcing a 1 MiB webhook body (valid signature
  headers) and sending half of it, held open; the server's RSS before, at its peak, and 5 s after
  they close; ``/healthz`` latency meanwhile.

``--code DIR`` runs the server processes from another checkout (``PYTHONPATH=DIR``), e.g. the
commit before these limits, with the same harness. Prints one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import sys
import tempfile
import time
from collections import Counter
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from adapters.webhook.signing import signed_headers
from adapters.wecom.crypto import CallbackCrypto
from bench.callback_ack import AES_KEY, OA_APP_ID, OA_SECRET, SIGN_TOKEN, oa_shot
from bench.fake_platform import QUESTIONS, child, until_stdin_closes
from bot.demo import DEMO_DIR
from tests.scale.cluster import SECRET as CLUSTER_SECRET
from tests.scale.cluster import cluster

ROOT = Path(__file__).resolve().parent.parent
SIYU = str(Path(sys.executable).with_name("siyu"))
SECRET = "bench-bridge-secret-0123456789"
CLIENT_TIMEOUT_S = 30.0
WARM_MSG_IDS = 1_000_000
DEFAULT_POSTGRES = "postgresql+asyncpg://postgres@127.0.0.1:5432/test"


# --- the helper process: bare handler and slow LLM -----------------------------------------------


async def helper(delay: float) -> None:
    async def bare(request: web.Request) -> web.Response:
        await request.read()
        return web.Response()

    async def chat(request: web.Request) -> web.Response:
        body = await request.json()
        await asyncio.sleep(delay)
        message = {"role": "assistant", "content": "积分一年有效，过期前会提醒您。"}
        choice = {"index": 0, "message": message, "finish_reason": "stop"}
        usage = {"prompt_tokens": 10, "completion_tokens": 10, "total_tokens": 20}
        return web.json_response({
            "id": "chatcmpl-bench", "object": "chat.completion", "created": 1_700_000_000,
            "model": body.get("model", "bench"), "choices": [choice], "usage": usage,
        })  # fmt: skip

    app = web.Application(client_max_size=2 * 1024**2)
    app.router.add_post("/bare", bare)
    app.router.add_post("/v1/chat/completions", chat)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0, backlog=1024).start()
    print(json.dumps({"url": f"http://127.0.0.1:{runner.addresses[0][1]}"}), flush=True)
    try:
        await until_stdin_closes()
    finally:
        await runner.cleanup()


# --- siyu serve ------------------------------------------------------------------------------


@dataclass
class Serve:
    url: str
    pid: int


def serve_env(data_dir: Path, platform: str, code: str | None, llm: str | None) -> dict[str, str]:
    oa = {
        "name": "bench", "token": SIGN_TOKEN, "encoding_aes_key": AES_KEY, "app_id": OA_APP_ID,
        "secret": OA_SECRET, "mode": "safe",
    }  # fmt: skip
    env = {
        **os.environ, "SIYU_DATA_DIR": str(data_dir), "SIYU_EMBEDDING": "local",
        "SIYU_WEB_PORT": "0", "SIYU_WEBHOOKS": json.dumps([{"name": "bench", "secret": SECRET}]),
        "SIYU_OFFICIAL_ACCOUNTS": json.dumps([oa]), "SIYU_WECHAT_API_BASE": platform,
        "SIYU_LLM_MODEL": "bench" if llm else "", "SIYU_LLM_BASE_URL": f"{llm}/v1" if llm else "",
        "SIYU_LLM_API_KEY": "bench", "SIYU_LLM_TIMEOUT": "20",
    }  # fmt: skip
    if code:
        env["PYTHONPATH"] = code
    return env


def siyu_argv(code: str | None, *args: str) -> list[str]:
    if code:  # the other checkout's modules, this virtualenv's packages
        return [sys.executable, "-c", "from bot.entry import main; main()", *args]
    return [SIYU, *args]


@contextlib.asynccontextmanager
async def serving(env: dict[str, str], code: str | None, cwd: Path) -> AsyncIterator[Serve]:
    ingest = await asyncio.create_subprocess_exec(
        *siyu_argv(code, "ingest", str(DEMO_DIR / "faq.csv")), env=env, cwd=cwd,
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    assert await ingest.wait() == 0, "siyu ingest failed"
    proc = await asyncio.create_subprocess_exec(
        *siyu_argv(code, "serve"), env=env, cwd=cwd, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    assert proc.stdout is not None
    try:
        output = ""
        while "Ctrl-C stops." not in output:
            line = await asyncio.wait_for(proc.stdout.readline(), 300)
            assert line, f"siyu serve exited early: {output}"
            output += line.decode()
        match = re.search(r"(http://127\.0\.0\.1:\d+/)", output)
        assert match, output
        yield Serve(match.group(1), proc.pid)
    finally:
        proc.terminate()
        await proc.wait()


# --- the load generator ----------------------------------------------------------------------


@dataclass
class Tally:
    latencies: dict[str, list[float]] = field(default_factory=dict)
    errors: Counter[str] = field(default_factory=Counter)
    timeline: list[tuple[int, float, float]] = field(default_factory=list)
    """(request number, ms after the first was due, latency ms) of each answered request."""

    def slowest(self, n: int = 5) -> list[list[float]]:
        """The ``n`` slowest requests as [number, sent at ms, latency ms]: a tail all sent at
        one moment is a stall, one spread over the run is queueing."""
        worst = sorted(self.timeline, key=lambda t: -t[2])[:n]
        return [[k, round(at, 1), round(ms, 1)] for k, at, ms in worst]

    def add(self, kind: str, seconds: float) -> None:
        self.latencies.setdefault(kind, []).append(seconds * 1000)


def pct(values: Sequence[float], p: float) -> float | None:
    ordered = sorted(values)
    if not ordered:
        return None
    return round(ordered[max(0, min(len(ordered) - 1, round(p * len(ordered)) - 1))], 1)


async def open_loop(
    http: aiohttp.ClientSession, rate: float, count: int, shot: Any, tally: Tally
) -> float:
    """Fire ``count`` requests at ``rate``/s (``shot(n)`` sends one, returns its kind)."""
    start = time.perf_counter()

    async def one(n: int) -> None:
        await asyncio.sleep(max(0.0, start + n / rate - time.perf_counter()))
        began = time.perf_counter()
        try:
            kind = await shot(http, n)
        except (aiohttp.ClientError, TimeoutError) as exc:
            tally.errors[type(exc).__name__] += 1
            return
        tally.add(kind, time.perf_counter() - began)
        tally.timeline.append((n, (began - start) * 1000, (time.perf_counter() - began) * 1000))

    await asyncio.gather(*(one(n) for n in range(count)))
    return time.perf_counter() - start


def hook_shot(url: str | Sequence[str], tag: str, secret: str = SECRET) -> Any:
    """Send message ``n`` to ``url`` (or, given several, to the ``n``-th one round robin)."""
    urls = [url] if isinstance(url, str) else list(url)

    async def shot(http: aiohttp.ClientSession, n: int) -> str:
        sender = {"id": f"wx-{n % 500}", "name": "会员"}
        message = {
            "id": f"{tag}-{n}", "conversation": f"c-{n % 500}", "sender": sender,
            "text": QUESTIONS[n % len(QUESTIONS)],
        }  # fmt: skip
        body = json.dumps(message, ensure_ascii=False).encode()
        headers = {**signed_headers(secret, body), "Content-Type": "application/json"}
        async with http.post(urls[n % len(urls)], data=body, headers=headers) as resp:
            await resp.read()
            return {200: "answered", 503: "shed"}.get(resp.status, f"http {resp.status}")

    return shot


def step_figures(rate: float, seconds: float, tally: Tally, wall: float) -> dict[str, Any]:
    answered, shed = tally.latencies.get("answered", []), tally.latencies.get("shed", [])
    other = {k: len(v) for k, v in tally.latencies.items() if k not in ("answered", "shed")}
    return {
        "offered_per_s": rate, "sent": int(rate * seconds), "answered": len(answered),
        "shed": len(shed), "errors": dict(tally.errors), "other": other,
        "answered_per_s": round(len(answered) / wall, 1),
        "answered_p50_ms": pct(answered, 0.5), "answered_p99_ms": pct(answered, 0.99),
        "shed_p50_ms": pct(shed, 0.5), "shed_p99_ms": pct(shed, 0.99), "wall_s": round(wall, 1),
    }  # fmt: skip


async def webhook_steps(serve: Serve, helper_url: str, args: argparse.Namespace) -> dict[str, Any]:
    out: dict[str, Any] = {"siyu": [], "bare": []}
    timeout = aiohttp.ClientTimeout(total=CLIENT_TIMEOUT_S)
    connector = aiohttp.TCPConnector(limit=2000)
    async with aiohttp.ClientSession(timeout=timeout, connector=connector) as http:
        for target, url in (("siyu", serve.url + "hooks/bench"), ("bare", helper_url + "/bare")):
            for rate in args.rates:
                tally, count = Tally(), int(rate * args.seconds)
                shot = hook_shot(url, f"{target}-{rate}")
                wall = await open_loop(http, rate, count, shot, tally)
                out[target].append(step_figures(rate, args.seconds, tally, wall))
                print(f"load: {target} {rate}/s done", file=sys.stderr)
                await asyncio.sleep(3)  # let a backlog drain before the next step
    return out


async def scaled_steps(args: argparse.Namespace) -> dict[str, Any]:
    """The webhook steps on 1, 2, … ``siyu serve`` processes sharing a fresh PostgreSQL database
    and a Chroma server (README "Scaling out"; :mod:`tests.scale.cluster`), load spread round
    robin, local embedder, extractive answers."""
    out: dict[str, Any] = {}
    timeout = aiohttp.ClientTimeout(total=CLIENT_TIMEOUT_S)
    for count in args.processes:
        with tempfile.TemporaryDirectory(prefix="siyu-bench-scaled-") as tmp:
            local = {"SIYU_EMBEDDING": "local"}
            async with cluster(Path(tmp), args.postgres, count, settings=local) as running:
                urls = [running.hook(i) for i in range(count)]
                steps = []
                async with aiohttp.ClientSession(
                    timeout=timeout, connector=aiohttp.TCPConnector(limit=2000)
                ) as http:
                    await open_loop(http, 5, 10, hook_shot(urls, "warm", CLUSTER_SECRET), Tally())
                    for rate in args.rates:
                        tally, sent = Tally(), int(rate * args.seconds)
                        shot = hook_shot(urls, f"p{count}-{rate}", CLUSTER_SECRET)
                        wall = await open_loop(http, rate, sent, shot, tally)
                        steps.append(step_figures(rate, args.seconds, tally, wall))
                        print(f"load: {count} processes {rate}/s done", file=sys.stderr)
                        await asyncio.sleep(3)
                out[f"{count}_processes"] = steps
    return out


async def warm_up(serve: Serve) -> None:
    """A few answers before measuring: the first ones load the embedding model and the LLM
    client, which would otherwise show as the burst's p99."""
    crypto = CallbackCrypto(SIGN_TOKEN, AES_KEY, OA_APP_ID)
    timeout = aiohttp.ClientTimeout(total=CLIENT_TIMEOUT_S)
    async with aiohttp.ClientSession(timeout=timeout) as http:
        hook = hook_shot(serve.url + "hooks/bench", "warm")
        for n in range(5):
            await hook(http, n)
            s = oa_shot(crypto, WARM_MSG_IDS + n)
            async with http.post(serve.url.rstrip("/") + s.path, params=s.params, data=s.body):
                pass


async def oa_burst(serve: Serve, platform: str, count: int, rate: float) -> dict[str, Any]:
    crypto = CallbackCrypto(SIGN_TOKEN, AES_KEY, OA_APP_ID)
    base = serve.url.rstrip("/")
    shots = [oa_shot(crypto, n) for n in range(count)]
    await warm_up(serve)
    await asyncio.sleep(3)  # the warm-up's answers go out before the burst is counted
    before = (await platform_stats(platform)).get("custom_sent", 0)

    async def shot(http: aiohttp.ClientSession, n: int) -> str:
        s = shots[n]
        async with http.post(base + s.path, params=s.params, data=s.body) as resp:
            text = await resp.text()
        return "success" if text == "success" else "passive" if "<Encrypt>" in text else "bad"

    tally = Tally()
    timeout = aiohttp.ClientTimeout(total=CLIENT_TIMEOUT_S)
    async with aiohttp.ClientSession(timeout=timeout) as http:
        await open_loop(http, rate, count, shot, tally)
    acks = [v for values in tally.latencies.values() for v in values]
    passive = len(tally.latencies.get("passive", []))
    sent = await until_sent(platform, before, count - passive, 120.0)
    return {
        "messages": count, "rate_per_s": rate, "ack_p50_ms": pct(acks, 0.5),
        "ack_p99_ms": pct(acks, 0.99), "ack_max_ms": pct(acks, 1.0),
        "ack_slowest": tally.slowest(), "passive": passive,
        "success": len(tally.latencies.get("success", [])), "errors": dict(tally.errors),
        "answered_through_api": sent, "answers_total": passive + sent,
    }  # fmt: skip


async def platform_stats(platform: str) -> dict[str, Any]:
    async with aiohttp.ClientSession() as http, http.get(platform + "/bench/stats") as resp:
        result: dict[str, Any] = await resp.json()
        return result


async def until_sent(platform: str, before: int, expected: int, limit: float) -> int:
    deadline = time.monotonic() + limit
    sent = 0
    while time.monotonic() < deadline:
        sent = (await platform_stats(platform)).get("custom_sent", 0) - before
        if sent >= expected:
            break
        await asyncio.sleep(0.5)
    return int(sent)


# --- half-sent bodies ----------------------------------------------------------------------------


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return round(int(line.split()[1]) / 1024, 1)
    return 0.0


async def half_sent(serve: Serve, count: int) -> dict[str, Any]:
    host, port = "127.0.0.1", int(serve.url.rstrip("/").rsplit(":", 1)[1])
    before, peak = rss_mb(serve.pid), [0.0]
    body_size, sent_size = 1024 * 1024, 512 * 1024
    head = {**signed_headers(SECRET, b"x"), "Content-Length": str(body_size)}
    request = "POST /hooks/bench HTTP/1.1\r\nHost: b\r\n" + "".join(
        f"{k}: {v}\r\n" for k, v in head.items()
    )
    writers: list[asyncio.StreamWriter] = []
    refused = Counter[str]()

    async def attack() -> None:
        with contextlib.suppress(OSError):
            reader, writer = await asyncio.open_connection(host, port)
            writers.append(writer)
            writer.write(request.encode() + b"\r\n" + b"x" * sent_size)
            with contextlib.suppress(OSError, TimeoutError):
                await asyncio.wait_for(writer.drain(), 10)
                line = await asyncio.wait_for(reader.readline(), 10)
                refused[line.decode().strip()[:12] or "closed"] += 1

    sampler = asyncio.create_task(sample_rss(serve.pid, peak))
    health_ms = await healthz_during(serve.url, asyncio.gather(*(attack() for _ in range(count))))
    for writer in writers:
        writer.close()
    await asyncio.sleep(5)
    sampler.cancel()
    return {
        "connections": count, "announced_bytes": body_size, "sent_bytes": sent_size,
        "rss_before_mb": before, "rss_peak_mb": max(peak[0], before),
        "rss_after_mb": rss_mb(serve.pid), "answers": dict(refused), "healthz_ms": health_ms,
    }  # fmt: skip


async def sample_rss(pid: int, peak: list[float]) -> None:
    while True:
        peak[0] = max(peak[0], rss_mb(pid))
        await asyncio.sleep(0.1)


async def healthz_during(url: str, attack: Any) -> list[float | str]:
    task = asyncio.ensure_future(attack)
    times: list[float | str] = []
    timeout = aiohttp.ClientTimeout(total=10)
    async with aiohttp.ClientSession(timeout=timeout) as http:
        for _ in range(5):
            await asyncio.sleep(0.5)
            began = time.perf_counter()
            try:
                async with http.get(url + "healthz") as resp:
                    await resp.read()
                times.append(round((time.perf_counter() - began) * 1000, 1))
            except (aiohttp.ClientError, TimeoutError) as exc:
                times.append(type(exc).__name__)
    await task
    return times


# --- main ------------------------------------------------------------------------------------


async def main(args: argparse.Namespace) -> dict[str, Any]:
    wanted = set(args.scenarios.split(","))
    out: dict[str, Any] = {"cpus": os.cpu_count(), "code": args.code or str(ROOT)}
    with tempfile.TemporaryDirectory(prefix="siyu-bench-load-") as tmp:
        async with (
            child("bench.load", "--helper", "--llm-delay", str(args.llm_delay)) as (helper_url, _),
            child("bench.fake_platform") as (platform, _),
        ):
            env = serve_env(Path(tmp) / "data", platform, args.code, None)
            async with serving(env, args.code, Path(tmp)) as serve:
                if "webhook" in wanted:
                    out["webhook"] = await webhook_steps(serve, helper_url, args)
                if "oa_burst" in wanted:
                    out["oa_burst"] = await oa_burst(serve, platform, args.oa_burst, args.oa_rate)
                if "half_sent" in wanted:
                    out["half_sent"] = await half_sent(serve, args.half_sent)
            if "oa_llm" in wanted:
                env = serve_env(Path(tmp) / "data-llm", platform, args.code, helper_url)
                async with serving(env, args.code, Path(tmp)) as serve:
                    out["oa_llm"] = await oa_burst(serve, platform, args.oa_burst, args.oa_rate)
                    out["oa_llm"]["llm_delay_s"] = args.llm_delay
    if "webhook_scaled" in wanted:
        out["webhook_scaled"] = await scaled_steps(args)
    return out


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rates", default="20,40,80", help="webhook requests/s, per step")
    parser.add_argument("--seconds", type=float, default=15.0, help="per step")
    parser.add_argument("--scenarios", default="webhook,oa_burst,oa_llm,half_sent,webhook_scaled")
    parser.add_argument("--oa-burst", type=int, default=300)
    parser.add_argument("--oa-rate", type=float, default=300.0, help="the burst's messages/s")
    parser.add_argument("--llm-delay", type=float, default=2.0)
    parser.add_argument("--half-sent", type=int, default=400)
    parser.add_argument("--code", default=None, help="run the servers from this checkout")
    parser.add_argument("--processes", default="1,2", help="webhook_scaled: serve processes")
    parser.add_argument(
        "--postgres",
        default=os.environ.get("SIYU_TEST_POSTGRES_URL", DEFAULT_POSTGRES),
        help="webhook_scaled: a PostgreSQL server to create a scratch database on",
    )
    parser.add_argument("--helper", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.rates = [float(r) for r in args.rates.split(",")]
    args.processes = [int(p) for p in args.processes.split(",")]
    return args


if __name__ == "__main__":
    arguments = parse_args()
    if arguments.helper:
        asyncio.run(helper(arguments.llm_delay))
    else:
        print(json.dumps(asyncio.run(main(arguments)), ensure_ascii=False, indent=2))
