"""Acknowledgement latency and throughput of the WeCom kf and Official Account callbacks under
concurrent load, side by side with a bare aiohttp handler on the same server in the same run.

    .venv/bin/python -m bench.callback_ack [--embedding hash,local] [--requests 4000]
        [--clients 200] [--rate R] [--scenarios bare,oa,kf] [--warmup 200] [--time-limit 60]
        [--drain 60] [--profile DIR]

(run from the repository root: the fake platform comes from ``tests.fakes``).

Three processes, so that neither the load generator's nor the platform's CPU sits in the server's
event loop:

- the **server** (this module with ``--serve``): the real core (``bot.app.App``: SQLite, Chroma,
  the chosen embedder, no LLM, the demo FAQ) behind ``create_kf_app`` at ``/wecom/kf/`` and
  ``create_official_app`` at ``/wechat/oa/``, plus ``POST /bare`` (reads the body, answers 200
  empty) on the same root application and event loop;
- the **fake platform** (``bench.fake_platform``) on 127.0.0.1 answering the server's
  ``gettoken`` / ``kf/sync_msg`` / ``kf/service_state/get`` / ``kf/send_msg`` / ``custom/send``;
- the **load generator** (this process): ``clients`` aiohttp workers over keep-alive connections,
  ``warmup`` unmeasured requests, then ``requests`` measured ones (or until ``time-limit``). By
  default a closed loop (each worker sends again as soon as it is answered: the throughput
  figure, and by Little's law latency ~ clients / throughput); ``--rate R`` makes it an open loop
  at R requests/s (at most ``clients`` in flight): the latency at a given offered load.

Scenarios, in this order per embedder (a fresh server and platform each):

- ``bare``: the same kf callback body to ``POST /bare``.
- ``oa``: safe-mode text messages, each with a fresh MsgId (1,000 users). The reply budget stays
  at its 4.5 s default, so each acknowledgement *is* the answer: the request waits for the
  pipeline and returns the encrypted passive reply (``success`` only if the budget runs out, the
  answer then going through ``custom/send``). ``answers`` counts both.
- ``kf``: valid encrypted ``kf_msg_or_event`` callbacks. ``requests + warmup`` customer messages
  wait on the platform; the callbacks nudge the sync loop, which pulls them, runs the pipeline and
  calls ``send_msg`` in the background while the acknowledgements are measured. After the run the
  bench waits (``--drain`` s at most) for the backlog and reports how many answers were sent.

Prints one JSON object: per embedder and scenario ``p50_ms``, ``p99_ms``, ``rps``, ``requests``,
``errors`` (plus CPU seconds of each process during the scenario), the ratios of throughput to
the bare handler's, and the targets (p99 < 100 ms, ratio >= 0.4). ``--profile DIR`` writes a
cProfile of the server's event-loop thread per scenario to ``DIR`` (slower; figures not comparable).
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import io
import json
import logging
import os
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web
from pydantic import SecretStr

from adapters.admission import MAX_ANSWERING_CPU, Admission
from adapters.wecom.config import KfAccount, OfficialAccountConfig
from adapters.wecom.crypto import CallbackCrypto
from adapters.wecom.kf import KF_RUNTIME, create_kf_app
from adapters.wecom.official import OA_CHANNEL, create_official_app
from adapters.wecom.xmlwire import build_xml
from bench.fake_platform import QUESTIONS, child, until_stdin_closes
from bot.app import App
from bot.demo import DEMO_DIR
from bot.settings import Settings

# The fake platform's credentials (tests.fakes.wecom_server.FakePlatform defaults).
CORP_ID, CORP_SECRET = "wwfakecorp", "corp-secret"
OA_APP_ID, OA_SECRET = "wxfakeoa", "oa-secret"
KF_CALLBACK_TOKEN = "kf-callback-token"
AES_KEY = "jWmYm7qr5nMoAUwZRjGtBxmz3KA1tkAj3ykkR6q2B2C"
SIGN_TOKEN = "bench-sign-token"
OURS = "gh_bench000001"
KFID = "wkbench"
OA_USERS = 1000
KF_USERS = 1000
CREATE_TIME, NONCE = "1772000000", "benchnonce"
REQUEST_TIMEOUT_S = 10.0
TARGET_P99_MS, TARGET_RATIO = 100.0, 0.4
CLK_TCK = os.sysconf("SC_CLK_TCK")


# --- the server process -------------------------------------------------------------------


def kf_account() -> KfAccount:
    """The one kf account the server serves at ``/wecom/kf/bench``."""
    return KfAccount(
        name="bench", token=SecretStr(SIGN_TOKEN), encoding_aes_key=SecretStr(AES_KEY),
        corp_id=CORP_ID, secret=SecretStr(CORP_SECRET),
    )  # fmt: skip


def oa_account() -> OfficialAccountConfig:
    """The safe-mode Official Account at ``/wechat/oa/bench`` (default reply budget)."""
    return OfficialAccountConfig(
        name="bench", token=SecretStr(SIGN_TOKEN), encoding_aes_key=SecretStr(AES_KEY),
        app_id=OA_APP_ID, secret=SecretStr(OA_SECRET), mode="safe",
    )  # fmt: skip


def settings(data_dir: Path, embedding: str) -> Settings:
    """The core's settings: a fresh data dir, no LLM (extractive answers), no external stores."""
    return Settings(
        _env_file=None, data_dir=data_dir, database_url=None,
        knowledge={"embedding": embedding, "refresh_seconds": 0}, llm={},
    )  # fmt: skip


async def bare(request: web.Request) -> web.Response:
    """The baseline: read the body, answer 200 with an empty body."""
    await request.read()
    return web.Response()


@dataclass
class Control:
    """The server's bench endpoints: wait for background answers, profile the event loop."""

    kf: web.Application
    oa: web.Application
    profile_dir: Path | None
    profiler: cProfile.Profile | None = field(default=None)

    async def drain(self, request: web.Request) -> web.Response:
        started = time.perf_counter()
        try:
            async with asyncio.timeout(float(request.query.get("timeout", "60"))):
                await self.kf[KF_RUNTIME].channel.drain()
                await self.oa[OA_CHANNEL].tasks.drain()
        except TimeoutError:
            return web.json_response({"drained": False, "seconds": _since(started)})
        return web.json_response({"drained": True, "seconds": _since(started)})

    async def profile(self, request: web.Request) -> web.Response:
        if request.query["action"] == "start" and self.profile_dir is not None:
            self.profiler = cProfile.Profile()
            self.profiler.enable()
        elif self.profiler is not None and self.profile_dir is not None:
            self.profiler.disable()
            self.profiler.dump_stats(self.profile_dir / f"{request.query['name']}.prof")
            self.profiler = None
        return web.json_response({})


async def serve(args: argparse.Namespace) -> None:
    """Run the server until standard input closes; print its URL once it listens."""
    logging.basicConfig(level=logging.WARNING, format="server %(levelname)s %(name)s %(message)s")
    with tempfile.TemporaryDirectory(prefix="siyu-bench-ack-") as tmp:
        core = await App.build(settings(Path(tmp) / "data", args.embedding))
        try:
            await core.knowledge.ingest_path(DEMO_DIR / "faq.csv")
            kf = create_kf_app(
                core.inbox, [kf_account()], api_base=args.platform, engine=core.engine
            )
            # No LLM here: extractive answers, CPU-bound, as `siyu serve` configures them.
            oa = create_official_app(
                core.inbox,
                [oa_account()],
                api_base=args.platform,
                admission=Admission(MAX_ANSWERING_CPU),
                ledger=core.store.contacts,
            )
            control = Control(kf, oa, Path(args.profile) if args.profile else None)
            root = web.Application(client_max_size=1024**2)
            root.router.add_post("/bare", bare)
            root.router.add_post("/bench/drain", control.drain)
            root.router.add_post("/bench/profile", control.profile)
            root.add_subapp("/wecom/kf/", kf)
            root.add_subapp("/wechat/oa/", oa)
            runner = web.AppRunner(root, access_log=None)
            await runner.setup()
            core.settle()  # as `siyu serve` does
            await web.TCPSite(runner, "127.0.0.1", 0, backlog=1024).start()
            print(json.dumps({"url": f"http://127.0.0.1:{runner.addresses[0][1]}"}), flush=True)
            try:
                await until_stdin_closes()
            finally:
                await runner.cleanup()
        finally:
            await core.close()


# --- the load generator ---------------------------------------------------------------------


@dataclass(frozen=True)
class Shot:
    """One request to send: path, query and body."""

    path: str
    params: dict[str, str]
    body: bytes


@dataclass
class Tally:
    """What the workers saw."""

    latencies_ms: list[float] = field(default_factory=list)
    errors: Counter[str] = field(default_factory=Counter)
    answers: Counter[str] = field(default_factory=Counter)


def kf_shot() -> Shot:
    """A valid, signed and encrypted ``kf_msg_or_event`` callback."""
    crypto = CallbackCrypto(SIGN_TOKEN, AES_KEY, CORP_ID)
    inner = {
        "ToUserName": CORP_ID, "CreateTime": CREATE_TIME, "MsgType": "event",
        "Event": "kf_msg_or_event", "Token": KF_CALLBACK_TOKEN, "OpenKfId": KFID,
    }  # fmt: skip
    encrypt = crypto.encrypt(build_xml(inner))
    body = build_xml({"ToUserName": CORP_ID, "Encrypt": encrypt, "AgentID": ""}).encode()
    signed_at = str(int(time.time()))  # the channels refuse a timestamp 5 minutes off
    query = {"msg_signature": crypto.signature(signed_at, NONCE, encrypt)}
    return Shot("/wecom/kf/bench", {**query, "timestamp": signed_at, "nonce": NONCE}, body)


def oa_shot(crypto: CallbackCrypto, n: int) -> Shot:
    """Safe-mode text message number ``n`` (its own MsgId), as WeChat posts it."""
    inner = {
        "ToUserName": OURS, "FromUserName": f"oBenchUser{n % OA_USERS:04d}",
        "CreateTime": CREATE_TIME, "MsgType": "text", "Content": QUESTIONS[n % len(QUESTIONS)],
        "MsgId": str(24_000_000_000_000_000 + n),
    }  # fmt: skip
    encrypt = crypto.encrypt(build_xml(inner))
    signed_at = str(int(time.time()))  # the channels refuse a timestamp 5 minutes off
    params = {
        "signature": "unused-in-safe-mode", "timestamp": signed_at, "nonce": NONCE,
        "openid": inner["FromUserName"], "encrypt_type": "aes",
        "msg_signature": crypto.signature(signed_at, NONCE, encrypt),
    }  # fmt: skip
    body = build_xml({"ToUserName": OURS, "Encrypt": encrypt}).encode()
    return Shot("/wechat/oa/bench", params, body)


def classify(path: str, status: int, text: str) -> str | None:
    """The answer's kind, or None when it is not a valid acknowledgement."""
    if status != 200:
        return None
    if path.startswith("/wechat/oa/"):
        return "success" if text == "success" else "passive" if "<Encrypt>" in text else None
    return "empty" if text == "" else None


@dataclass(frozen=True)
class Pace:
    """When to stop, and (open loop) when shot ``n`` is due: ``start + n / rate``."""

    start: float
    deadline: float
    rate: float  # requests/s; 0: closed loop, each worker sends as soon as it got its answer

    async def wait_turn(self, n: int) -> None:
        if self.rate > 0:
            await asyncio.sleep(max(0.0, self.start + n / self.rate - time.perf_counter()))


async def worker(
    http: aiohttp.ClientSession, base: str, shots: Sequence[Shot], cursor: list[int],
    pace: Pace, tally: Tally,
) -> None:  # fmt: skip
    """Send the next unsent shot until none is left or the deadline passes."""
    while cursor[0] < len(shots) and time.perf_counter() < pace.deadline:
        shot = shots[cursor[0]]
        cursor[0] += 1
        await pace.wait_turn(cursor[0] - 1)
        started = time.perf_counter()
        try:
            data = io.BytesIO(shot.body)
            async with http.post(base + shot.path, params=shot.params, data=data) as response:
                kind = classify(shot.path, response.status, await response.text())
        except (aiohttp.ClientError, TimeoutError) as exc:
            tally.errors[type(exc).__name__] += 1
            continue
        tally.latencies_ms.append((time.perf_counter() - started) * 1000)
        if kind is None:
            tally.errors[f"http {response.status}"] += 1
        else:
            tally.answers[kind] += 1


async def fire(
    base: str, shots: Sequence[Shot], clients: int, limit_s: float, rate: float = 0.0
) -> tuple[Tally, float]:
    """Send ``shots`` from ``clients`` concurrent workers (at ``rate`` per second if set); the
    tally and the wall time."""
    connector = aiohttp.TCPConnector(limit=clients)
    timeout = aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_S)
    tally, cursor = Tally(), [0]
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as http:
        started = time.perf_counter()
        pace = Pace(started, started + limit_s, rate)
        await asyncio.gather(
            *(worker(http, base, shots, cursor, pace, tally) for _ in range(clients))
        )
        return tally, time.perf_counter() - started


@dataclass(frozen=True)
class Procs:
    """The child processes whose CPU time is reported."""

    server: int
    platform: int


def cpu_seconds(procs: Procs) -> dict[str, float]:
    """User + system CPU seconds so far of the client (this process), server and platform."""
    own = os.times()
    out = {"client": own.user + own.system}
    for name, pid in (("server", procs.server), ("platform", procs.platform)):
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        out[name] = (int(fields[11]) + int(fields[12])) / CLK_TCK
    return out


async def scenario(
    base: str, label: str, shots: Sequence[Shot], args: argparse.Namespace, procs: Procs
) -> dict[str, Any]:
    """Warm up, then measure ``shots[warmup:]``; the scenario's figures. ``label`` names the
    profile file."""
    await fire(base, shots[: args.warmup], args.clients, args.time_limit)
    await control(base, "profile", action="start", name=label)
    before = cpu_seconds(procs)
    measured = shots[args.warmup :]
    tally, wall = await fire(base, measured, args.clients, args.time_limit, args.rate)
    after = cpu_seconds(procs)
    await control(base, "profile", action="stop", name=label)
    cpu = {k: round(after[k] - before[k], 1) for k in after}
    return {**summary(tally, wall), "cpu_s": cpu}


def summary(tally: Tally, wall: float) -> dict[str, Any]:
    ordered = sorted(tally.latencies_ms)

    def pct(p: float) -> float:  # nearest rank
        return round(ordered[max(0, min(len(ordered) - 1, round(p * len(ordered)) - 1))], 1)

    done = len(ordered)
    return {
        "p50_ms": pct(0.50) if ordered else None,
        "p99_ms": pct(0.99) if ordered else None,
        "rps": round(done / wall, 1),
        "requests": done,
        "errors": sum(tally.errors.values()),
        "error_kinds": dict(tally.errors),
        "answers": dict(tally.answers),
        "wall_s": round(wall, 2),
    }


async def control(base: str, what: str, **params: str) -> dict[str, Any]:
    """Call one of the server's (or platform's) bench endpoints."""
    async with (
        aiohttp.ClientSession() as http,
        http.post(f"{base}/bench/{what}", params=params) as response,
    ):
        result: dict[str, Any] = await response.json()
        return result


async def platform_call(url: str, method: str, path: str, body: Any = None) -> dict[str, Any]:
    async with (
        aiohttp.ClientSession() as http,
        http.request(method, url + path, json=body) as response,
    ):
        result: dict[str, Any] = await response.json()
        return result


async def run_embedder(args: argparse.Namespace, embedding: str) -> dict[str, Any]:
    """Every scenario against a fresh platform and server using ``embedding``."""
    total = args.warmup + args.requests
    crypto = CallbackCrypto(SIGN_TOKEN, AES_KEY, OA_APP_ID)
    kf = kf_shot()
    plans = {
        "bare": [Shot("/bare", kf.params, kf.body)] * total,
        "oa": [oa_shot(crypto, n) for n in range(total)],
        "kf": [kf] * total,
    }
    serve_argv = ["bench.callback_ack", "--serve", "--embedding", embedding]
    async with child("bench.fake_platform") as (platform, platform_pid):
        serve_argv += ["--platform", platform] + (["--profile", args.profile] * bool(args.profile))
        async with child(*serve_argv) as (base, server_pid):
            procs = Procs(server_pid, platform_pid)
            figures: dict[str, Any] = {}
            for name in args.scenarios.split(","):
                shots = plans[name]
                if name == "kf":
                    body = {"count": total, "open_kfid": KFID, "users": KF_USERS}
                    await platform_call(platform, "POST", "/bench/kf_messages", body)
                figures[name] = await scenario(base, f"{embedding}-{name}", shots, args, procs)
                figures[name]["drain"] = await control(base, "drain", timeout=str(args.drain))
            stats = await platform_call(platform, "GET", "/bench/stats")
    return {"scenarios": figures, "ratios": ratios(figures), "platform": stats}


def ratios(figures: dict[str, Any]) -> dict[str, float]:
    if "bare" not in figures:
        return {}
    bare = figures["bare"]["rps"]
    return {
        f"{name}_rps_vs_bare": round(figures[name]["rps"] / bare, 3)
        for name in ("kf", "oa")
        if name in figures
    }


def verdict(runs: dict[str, Any]) -> dict[str, dict[str, bool]]:
    """Per embedder and callback: p99 under target, throughput ratio over target."""
    out: dict[str, dict[str, bool]] = {}
    for embedding, run in runs.items():
        for name in ("kf", "oa"):
            if name not in run["scenarios"]:
                continue
            p99 = run["scenarios"][name]["p99_ms"]
            ratio = run["ratios"].get(f"{name}_rps_vs_bare")
            out[f"{embedding}.{name}"] = {
                "p99_ok": p99 is not None and p99 < TARGET_P99_MS,
                "ratio_ok": ratio is not None and ratio >= TARGET_RATIO,
            }
    return out


async def main(args: argparse.Namespace) -> dict[str, Any]:
    runs: dict[str, Any] = {}
    for embedding in args.embedding.split(","):
        print(f"callback_ack: embedding={embedding}", file=sys.stderr)
        runs[embedding] = await run_embedder(args, embedding)
    return {
        "clients": args.clients,
        "rate": args.rate or "closed loop",
        "requests_per_scenario": args.requests,
        "warmup": args.warmup,
        "cpus": os.cpu_count(),
        "processes": "load generator, server, fake platform: three processes on 127.0.0.1",
        "runs": runs,
        "targets": {"p99_ms_below": TARGET_P99_MS, "rps_ratio_at_least": TARGET_RATIO},
        "met": verdict(runs),
    }


def _since(started: float) -> float:
    return round(time.perf_counter() - started, 2)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--embedding", default="hash,local", help="comma-separated embedders")
    parser.add_argument("--requests", type=int, default=4000, help="measured, per scenario")
    parser.add_argument("--clients", type=int, default=200)
    parser.add_argument("--rate", type=float, default=0.0, help="open loop: requests/s")
    parser.add_argument("--scenarios", default="bare,oa,kf", help="comma-separated, in order")
    parser.add_argument("--warmup", type=int, default=200)
    parser.add_argument("--time-limit", type=float, default=60.0, help="seconds per scenario")
    parser.add_argument("--drain", type=float, default=60.0, help="max wait for the backlog (s)")
    parser.add_argument("--profile", default=None, help="write server cProfiles to this dir")
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--platform", default="", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


if __name__ == "__main__":
    arguments = parse_args()
    if arguments.serve:
        asyncio.run(serve(arguments))
    else:
        if arguments.profile:
            arguments.profile = str(Path(arguments.profile).resolve())
            Path(arguments.profile).mkdir(parents=True, exist_ok=True)
        print(json.dumps(asyncio.run(main(arguments)), ensure_ascii=False, indent=2))
