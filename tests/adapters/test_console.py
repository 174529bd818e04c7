"""The console channel: lines in, rendered replies out, through a real (tiny) handler."""

from __future__ import annotations

import io
import logging
from collections.abc import AsyncIterator

import pytest

from adapters.console import run_console
from bot.types import HandoffReply, InboundMessage, Reply, TextReply
from knowledge.types import Citation
from tests.adapters.conftest import FIXED_NOW, Recorder


async def lines(*items: str) -> AsyncIterator[str]:
    for item in items:
        yield item


def _rich(msg: InboundMessage) -> Reply:
    if msg.text == "人工":
        return HandoffReply("好的，正在为你转接人工客服。", summary="会员要求转人工")
    cites = (
        Citation("d1", "faq.md", "营业时间", 1, "c1"),
        Citation("d2", "promo-2026.md", "", 3, "c9"),
    )
    return TextReply("每天 9:00–22:00 营业。", citations=cites, answered_by="extractive")


async def test_echo_and_message_shape() -> None:
    out: list[str] = []
    handler = Recorder()
    await run_console(
        handler,
        input_lines=lines("你好\n", "   \n", "会员卡怎么办？\n"),
        write=out.append,
        member_id="m-9",
        store_id="sh-01",
        clock=lambda: FIXED_NOW,
    )
    assert out == ["echo:你好", "echo:会员卡怎么办？"]
    first, second = handler.seen
    assert (first.channel, first.conversation, first.sender.external_id) == (
        "console",
        "m-9",
        "m-9",
    )
    assert first.store_id == "sh-01"
    assert first.received_at == FIXED_NOW
    assert not first.is_group
    assert first.id != second.id


async def test_citations_handoff_and_silence_are_rendered() -> None:
    out: list[str] = []
    await run_console(
        Recorder(_rich), input_lines=lines("几点开门", "人工", "silent"), write=out.append
    )
    assert out == [
        "每天 9:00–22:00 营业。",
        "  [1] faq.md — 营业时间",
        "  [2] promo-2026.md",
        "好的，正在为你转接人工客服。",
    ]


async def test_quit_stops_before_later_lines() -> None:
    out: list[str] = []
    handler = Recorder()
    await run_console(handler, input_lines=lines("a", "/quit", "b"), write=out.append)
    assert out == ["echo:a"]
    assert [m.text for m in handler.seen] == ["a"]


async def test_bad_input_and_failing_handler_do_not_end_the_chat(
    caplog: pytest.LogCaptureFixture,
) -> None:
    def flaky(msg: InboundMessage) -> Reply:
        if msg.text == "boom":
            raise RuntimeError("pipeline exploded")
        return TextReply(f"ok:{msg.text}")

    out: list[str] = []
    handler = Recorder(flaky)
    with caplog.at_level(logging.ERROR, logger="adapters.console"):
        await run_console(
            handler,
            input_lines=lines("x" * 2001, "a\x07b", "boom", "\udcff会员", "still here"),
            write=out.append,
        )
    assert "最多 2000 字" in out[0]
    assert "控制字符" in out[1]
    assert "出错了" in out[2]
    assert "UTF-8" in out[3]  # b"\xff" read by a C-locale terminal
    assert out[4] == "ok:still here"
    assert [m.text for m in handler.seen] == ["boom", "still here"]
    assert "pipeline exploded" in caplog.text


async def test_reads_standard_input_until_eof(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO("第一句\n第二句\n"))
    out: list[str] = []
    await run_console(Recorder(), write=out.append)
    assert out == ["echo:第一句", "echo:第二句"]
