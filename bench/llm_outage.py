"""Answer latency while the LLM fails, per failure mode, on the shipped defaults.

    python -m bench.llm_outage [--questions 20] [--embedding hash|local]   (from the repo root)

For each mode of the fake OpenAI-compatible server (``tests/fakes/openai_server.py``): ``up``
(the baseline), ``down`` (HTTP 500), ``hang`` (never answers), ``drip`` (200 and headers, then one
byte a second), ``rate_limited`` (429, Retry-After: 60) and ``garbage`` (a 200 HTML page), a fresh
App (its own LLM breaker; SIYU_ANSWER_DEADLINE 8 s, SIYU_LLM_TIMEOUT 20 s, SIYU_LLM_MAX_RETRIES 1)
over the demo FAQ answers ``--questions`` FAQ questions one after another, each from a new member,
through ``App.inbox.handle``.

Prints one JSON object: per mode ``median_ms``, ``max_ms``, ``under_10s`` (answers that took
less than 10 s), ``answered_by`` (the mix) and ``llm_requests`` (what reached the server: the
breaker stops them after 3 failed questions). Before issue 11 the SDK's own timeouts and retries
made these answers take 41 s (hang), 61 s (drip) and 60 s (429 with Retry-After: 60).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bot.app import App
from bot.demo import DEMO_DIR
from bot.settings import Settings
from bot.types import InboundMessage, MemberRef
from tests.fakes.openai_server import FakeOpenAI, Outage, running_fake_openai

MODES: tuple[Outage, ...] = ("up", "down", "hang", "drip", "rate_limited", "garbage")
QUESTIONS = ("积分会过期吗？", "积分怎么算？", "积分可以抵现吗？", "怎么注册成为会员？")


def _settings(data_dir: Path, server: FakeOpenAI, embedding: str) -> Settings:
    return Settings(
        _env_file=None, data_dir=data_dir, database_url=None,
        knowledge={"embedding": embedding},
        llm={"base_url": server.base_url, "model": "fake-chat"},
    )  # fmt: skip


def _message(n: int) -> InboundMessage:
    member = f"bench-{n}"
    return InboundMessage(
        id=f"m-{n}", channel="web", conversation=member,
        sender=MemberRef("web", member, "会员"), text=QUESTIONS[n % len(QUESTIONS)],
        received_at=datetime.now(UTC),
    )  # fmt: skip


async def run_mode(mode: Outage, args: argparse.Namespace, server: FakeOpenAI) -> dict[str, Any]:
    """Answer ``args.questions`` questions on a fresh App while the LLM is in ``mode``."""
    server.outage(mode)
    sent_before = len(server.chat_requests)
    with tempfile.TemporaryDirectory(prefix="siyu-outage-") as tmp:
        app = await App.build(_settings(Path(tmp), server, args.embedding))
        try:
            await app.knowledge.ingest_path(DEMO_DIR / "faq.csv")
            took, by = [], Counter[str]()
            for n in range(args.questions):
                started = time.perf_counter()
                reply = await app.inbox.handle(_message(n))
                took.append(time.perf_counter() - started)
                by[str(getattr(reply, "answered_by", type(reply).__name__))] += 1
        finally:
            await app.close()
    return {
        "median_ms": round(statistics.median(took) * 1000, 1),
        "max_ms": round(max(took) * 1000, 1),
        "under_10s": sum(t < 10 for t in took),
        "answered_by": dict(by),
        "llm_requests": len(server.chat_requests) - sent_before,
    }


async def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--questions", type=int, default=20)
    parser.add_argument("--embedding", choices=("hash", "local"), default="hash")
    parser.add_argument("--modes", nargs="*", choices=MODES, default=list(MODES))
    args = parser.parse_args(argv)
    results: dict[str, Any] = {"questions": args.questions, "embedding": args.embedding}
    async with running_fake_openai() as server:
        server.responder = lambda _request: "会员积分的规则见资料 [1]。"
        for mode in args.modes:
            results[mode] = await run_mode(mode, args, server)
    print(json.dumps(results, ensure_ascii=False))


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1:]))
