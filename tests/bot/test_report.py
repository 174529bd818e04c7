"""``siyu report``: conversation counts over a period, after a scripted conversation through the
real pipeline."""

from __future__ import annotations

import asyncio
import json
from datetime import timedelta
from pathlib import Path

import pytest
from typer.testing import CliRunner

from bot.app import App
from bot.cli import cli
from bot.report_cli import period, report_dict
from bot.settings import Settings
from tests.bot.conftest import NOW, Chat, Clock, built_app, make_settings, pipeline_for

SH_TZ = "Asia/Shanghai"


async def script(app: App, clock: Clock) -> None:
    """Two members: small talk, answers of every offline kind, a handoff and a complaint."""
    alice = Chat(pipeline_for(app, clock), member="alice", conversation="a")
    bob = Chat(pipeline_for(app, clock), member="bob", conversation="b")
    for text in ("你好", "会员日是哪天？", "夏日满减活动", "量子力学是什么", "谢谢"):
        await alice.say(text)  # smalltalk, extractive, retail, not_found, smalltalk
    await alice.say("人工")  # handoff
    await alice.say("还在吗")  # silent: a person serves (logged, no reply)
    await alice.say("结束人工")  # command
    await bob.say("你们这什么破超市！三文鱼是臭的，我要投诉！！")  # complaint


async def test_counts_after_a_scripted_conversation(app: App, clock: Clock) -> None:
    clock.now = NOW - timedelta(days=3)
    await Chat(pipeline_for(app, clock), member="early", conversation="e").say("你好")
    clock.now = NOW
    await script(app, clock)
    tz = app.settings.bot.timezone
    since, until = NOW - timedelta(days=1), NOW + timedelta(hours=1)
    report = report_dict(await app.store.counts(since, until), since, until, tz)
    assert report == {
        "since": "2026-06-09T10:00:00+08:00",
        "until": "2026-06-10T11:00:00+08:00",
        "messages": 9,
        "members": 2,
        "answered": {
            "llm": 0, "extractive": 1, "retail": 1, "smalltalk": 2, "not_found": 1,
            "command": 1, "error": 0,
        },
        "handoffs": 2,
        "complaints": 1,
    }  # fmt: skip
    week = await app.store.counts(NOW - timedelta(days=7), until)
    assert (week.messages, week.members, week.replies["smalltalk"]) == (10, 3, 3)
    assert (await app.store.counts(until, until + timedelta(days=1))).messages == 0


def test_period_from_since_or_up_to_now() -> None:
    tz = Settings(_env_file=None).bot.timezone
    start, end = period("2026-06-01", 7, tz, NOW)
    assert (start.isoformat(), end.isoformat()) == (
        "2026-06-01T00:00:00+08:00",
        "2026-06-08T00:00:00+08:00",
    )
    assert period(None, 2, tz, NOW) == (NOW - timedelta(days=2), NOW)


def test_siyu_report_prints_json(
    data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def seed() -> None:
        async for app in built_app(make_settings(data_dir)):
            await script(app, Clock())

    asyncio.run(seed())
    monkeypatch.chdir(tmp_path)  # no developer .env
    monkeypatch.setenv("SIYU_DATA_DIR", str(data_dir))
    monkeypatch.setenv("SIYU_TIMEZONE", SH_TZ)
    result = CliRunner().invoke(cli, ["report", "--since", "2026-06-10", "--days", "1"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["since"] == "2026-06-10T00:00:00+08:00"
    assert (report["messages"], report["handoffs"], report["complaints"]) == (9, 2, 1)
    assert report["answered"]["smalltalk"] == 2
    bad = CliRunner().invoke(cli, ["report", "--since", "next tuesday"])
    assert bad.exit_code != 0
