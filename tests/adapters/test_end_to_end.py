"""The channels on the real core: ``bot.app.App`` (real SQLite, real Chroma, hash embedder, no
LLM: extractive answers) over the demo brand's FAQ, reached through the web chat and the console."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp

from adapters.console import run_console
from adapters.web import create_web_app, start_web
from adapters.web.config import WebSettings
from bot.app import App
from bot.demo import DEMO_DIR
from bot.settings import Settings
from tests.adapters.conftest import join, receive

EXPIRY = "积分有效期到获得积分的次年 12 月 31 日"
REDEEM = "每 100 积分抵 1 元"


async def _lines(*items: str) -> AsyncIterator[str]:
    for item in items:
        yield item


async def test_web_chat_and_console_answer_from_the_knowledge_base(
    tmp_path: Path, session: aiohttp.ClientSession
) -> None:
    settings = Settings(
        _env_file=None,
        data_dir=tmp_path / "data",
        knowledge={"embedding": "hash"},
        llm={},
        bot={"name": "小域", "brand": "禾町生活"},
        web=WebSettings(port=0),
    )
    app = await App.build(settings)
    runner = None
    try:
        await app.knowledge.ingest_path(DEMO_DIR / "faq.csv")
        web_app = create_web_app(app.inbox.handle, settings.web, bot_name="小域", brand="禾町生活")
        runner, url = await start_web(web_app, settings.web)

        direct = await join(session, url, "m-1", "阿花")
        await direct.send_json({"type": "message", "text": "积分会过期吗？"})
        answer = await receive(direct)
        assert answer["kind"] == "answer"
        assert EXPIRY in answer["text"]
        assert answer["citations"]
        assert all(set(c) == {"title"} for c in answer["citations"])
        assert "faq.csv" not in json.dumps(answer, ensure_ascii=False)

        alice = await join(session, url, "m-a", "阿花", room="会员群")
        bob = await join(session, url, "m-b", "阿宝", room="会员群")
        await receive(alice)  # 阿宝 joined
        await bob.send_json({"type": "message", "text": "积分会过期吗？"})  # not addressed
        await bob.send_json({"type": "message", "text": "@小域 积分可以抵现吗？"})
        texts = [(await receive(alice))["text"] for _ in range(2)]
        assert texts == ["积分会过期吗？", "@小域 积分可以抵现吗？"]
        reply = await receive(alice)
        assert reply["kind"] == "answer"
        assert REDEEM in reply["text"]
        assert reply["quote"] == "阿宝"

        out: list[str] = []
        await run_console(app.inbox.handle, input_lines=_lines("积分会过期吗？"), write=out.append)
        assert EXPIRY in out[0]
        assert out[1].startswith("  [1] ")
    finally:
        if runner is not None:
            await runner.cleanup()
        await app.close()
