"""Group addressing and command parsing: pure functions over plain values."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from bot.commands import Command, normalise, parse_command
from bot.groups import Addressing, quote_for
from bot.types import InboundMessage, MemberRef

NOW = datetime(2026, 6, 1, 10, 0, tzinfo=UTC)


def group_msg(text: str, *, mentioned: bool = False, name: str = "小明") -> InboundMessage:
    return InboundMessage(
        id="m1", channel="web", conversation="room-1",
        sender=MemberRef("web", "u-1", name), text=text, received_at=NOW,
        is_group=True, mentioned_bot=mentioned,
    )  # fmt: skip


@pytest.mark.parametrize(
    ("text", "question"),
    [
        ("小域，会员日是哪天？", "会员日是哪天？"),
        ("小域 会员日是哪天", "会员日是哪天"),
        ("小域：会员日是哪天", "会员日是哪天"),
        ("@小域 会员日是哪天", "会员日是哪天"),
        ("@小域\u2005会员日是哪天", "会员日是哪天"),
        ("你好小域，会员日是哪天", "会员日是哪天"),
        ("请问下小域，会员日是哪天", "请问下会员日是哪天"),
        ("会员日是哪天，小域？", "会员日是哪天？"),
        ("小域", ""),
    ],
)
def test_addressed_by_name(text: str, question: str) -> None:
    assert Addressing("小域").question(group_msg(text)) == question


@pytest.mark.parametrize("text", ["会员日是哪天？", "小域的客服电话是多少", "大家好", ""])
def test_not_addressed_stays_silent(text: str) -> None:
    assert Addressing("小域").question(group_msg(text)) is None


def test_mention_flag_addresses_and_strips_the_mention() -> None:
    addressing = Addressing("小域")
    assert addressing.question(group_msg("会员日是哪天", mentioned=True)) == "会员日是哪天"
    assert addressing.question(group_msg("@小域 退订", mentioned=True)) == "退订"


def test_one_to_one_is_always_addressed() -> None:
    msg = InboundMessage("m", "web", "c", MemberRef("web", "u"), "  会员日？ ", NOW)
    assert Addressing("小域").question(msg) == "会员日？"
    assert quote_for(msg) is None


def test_quote_names_the_asker() -> None:
    assert quote_for(group_msg("x")) == "小明"
    assert quote_for(group_msg("x", name="")) == "u-1"


def test_empty_bot_name_is_rejected() -> None:
    with pytest.raises(ValueError, match="name"):
        Addressing("  ")


@pytest.mark.parametrize(
    ("text", "command"),
    [
        ("帮助", Command.HELP),
        ("HELP", Command.HELP),
        ("?", Command.HELP),
        ("？", Command.HELP),
        ("", Command.HELP),
        ("人工", Command.HANDOFF),
        (" 转人工！", Command.HANDOFF),
        ("人工客服。", Command.HANDOFF),
        ("找人工", Command.HANDOFF),
        ("客服", Command.HANDOFF),
        ("结束人工", Command.END_HANDOFF),
        ("机器人", Command.END_HANDOFF),
        ("退订", Command.OPT_OUT),
        ("TD", Command.OPT_OUT),
        ("ＴＤ", Command.OPT_OUT),  # full-width letters
        ("td.", Command.OPT_OUT),
        ("取消订阅", Command.OPT_OUT),
        ("Unsubscribe", Command.OPT_OUT),
        ("订阅", Command.OPT_IN),
        ("subscribe!", Command.OPT_IN),
    ],
)
def test_command_words(text: str, command: Command) -> None:
    assert parse_command(text) is command


@pytest.mark.parametrize("text", ["人工客服电话是多少", "怎么退订短信", "会员日是哪天？", "td123"])
def test_questions_are_not_commands(text: str) -> None:
    assert parse_command(text) is None


def test_normalise() -> None:
    assert normalise("  ＨＥＬＰ！！ ") == "help"
    assert normalise("？") == "?"
