"""After "人工" the member is told when a person answers (inside or outside the service hours),
that the bot stays silent meanwhile, and how to leave the queue."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, time
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from pydantic import ValidationError

from bot.app import App
from bot.commands import Command, parse_command
from bot.hours import DEFAULT_HANDOFF_HOURS, ServiceHours
from bot.types import HandoffReply, NoReply, TextReply
from tests.bot.conftest import Chat, Clock, built_app, make_settings, pipeline_for

SH = ZoneInfo("Asia/Shanghai")


def at(hour: int, minute: int = 0, day: int = 10) -> datetime:
    """A Shanghai wall-clock time on 2026-06-``day``, as the pipeline's UTC clock reads it."""
    return datetime(2026, 6, day, hour, minute, tzinfo=SH).astimezone(UTC)


def handoff_text(reply: object) -> str:
    assert isinstance(reply, HandoffReply), reply
    return reply.text


def text_of(reply: object) -> str:
    assert isinstance(reply, TextReply), reply
    return reply.text


def test_service_hours_window() -> None:
    hours = ServiceHours.parse("09:00-21:00")
    assert hours == DEFAULT_HANDOFF_HOURS
    assert hours.label() == "09:00–21:00"
    assert hours.is_open(time(9, 0))
    assert hours.is_open(time(20, 59))
    assert not hours.is_open(time(21, 0))
    assert not hours.is_open(time(8, 59))
    night = ServiceHours.parse("20:00-02:00")
    assert night.is_open(time(23, 0))
    assert night.is_open(time(1, 30))
    assert not night.is_open(time(12, 0))
    always = ServiceHours.parse("00:00-00:00")
    assert always.always
    assert always.is_open(time(3, 0))
    with pytest.raises(ValueError, match="09:00-21:00"):
        ServiceHours.parse("9-21")


def test_next_opening_is_said_as_members_read_it() -> None:
    hours = ServiceHours.parse("09:00-21:00")
    assert "明早 9 点后会有同事回复您" in hours.handoff_notice(at(22, 30), SH)
    assert "今天 9 点后会有同事回复您" in hours.handoff_notice(at(7, 0), SH)
    assert hours.handoff_notice(at(12, 0), SH) == "客服同事会尽快回复您，请稍候"
    late = ServiceHours.parse("13:30-22:00")
    assert "明天 13:30 后" in late.handoff_notice(at(23, 0), SH)


def test_settings_carry_the_hours_and_refuse_bad_ones(data_dir: Path) -> None:
    config = make_settings(data_dir, bot={"handoff_hours": "10:00-18:30"}).bot.config()
    assert config.handoff_hours == ServiceHours(time(10, 0), time(18, 30))
    assert make_settings(data_dir).bot.config().handoff_hours == DEFAULT_HANDOFF_HOURS
    for bad in ("25:00-18:00", "9:00-18:00", "09:00"):
        with pytest.raises(ValidationError):
            make_settings(data_dir, bot={"handoff_hours": bad})


async def test_inside_service_hours_a_person_answers_soon(chat: Chat) -> None:
    text = handoff_text(await chat.say("人工"))  # 10:00 in Shanghai
    assert text.startswith("好的，正在为您转接人工客服。客服同事会尽快回复您，请稍候。")
    assert "转接期间智能客服不再回复" in text
    assert "回复“结束人工”可回到智能客服" in text
    assert "工作时间" not in text


async def test_outside_service_hours_the_next_opening_is_named(chat: Chat, clock: Clock) -> None:
    clock.now = at(22, 30)
    text = handoff_text(await chat.say("转人工"))
    assert "人工客服工作时间 09:00–21:00" in text
    assert "明早 9 点后会有同事回复您" in text
    assert "回复“结束人工”可回到智能客服" in text


async def test_early_morning_says_today(chat: Chat, clock: Clock) -> None:
    clock.now = at(7, 15)
    assert "今天 9 点后会有同事回复您" in handoff_text(await chat.say("人工"))


@pytest.fixture
async def evening_desk(data_dir: Path) -> AsyncIterator[App]:
    async for app in built_app(make_settings(data_dir, bot={"handoff_hours": "10:00-18:30"})):
        yield app


async def test_configured_hours_are_used(evening_desk: App) -> None:
    chat = Chat(pipeline_for(evening_desk, Clock(at(19, 0))))
    text = handoff_text(await chat.say("人工"))
    assert "人工客服工作时间 10:00–18:30" in text
    assert "明早 10 点后" in text


@pytest.mark.parametrize(
    "text",
    ["结束人工", "取消人工", "不要人工", "退出人工", "退出排队", "取消排队", "不用了", "不用了！",
     "不需要了", "机器人"],
)  # fmt: skip
def test_leave_the_queue_words(text: str) -> None:
    assert parse_command(text) is Command.END_HANDOFF


@pytest.mark.parametrize(
    "text", ["不用了，我想问会员日是哪天", "取消人工服务怎么操作", "排队要多久"]
)
def test_leave_words_count_only_as_the_whole_message(text: str) -> None:
    assert parse_command(text) is None


async def test_the_member_leaves_the_queue_with_a_natural_word(chat: Chat, app: App) -> None:
    assert isinstance(await chat.say("人工"), HandoffReply)
    assert await chat.say("会员日是哪天？") == NoReply("human serving")
    assert "已结束人工服务" in text_of(await chat.say("退出排队"))
    member = await app.store.get_member("web", "u1")
    assert member is not None
    assert not member.handoff
    assert isinstance(await chat.say("会员日是哪天？"), TextReply)
    # the web chat's "leave the queue" button sends 结束人工
    assert isinstance(await chat.say("人工"), HandoffReply)
    assert "已结束人工服务" in text_of(await chat.say("结束人工"))
