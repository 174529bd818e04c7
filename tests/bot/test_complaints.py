"""Complaints: read offline, apologised for, handed to a person flagged 【投诉】 and recorded as a
complaint; a question with mild dissatisfaction is still answered."""

from __future__ import annotations

import pytest

from bot.app import App
from bot.commands import COMPLAINT_FLAG
from bot.complaints import complaint_score, is_complaint
from bot.types import HandoffReply, NoReply, TextReply
from tests.bot.conftest import Chat

ANGRY = "你们这什么破超市！三文鱼是臭的，我要投诉！！"


@pytest.mark.parametrize(
    "text",
    [
        ANGRY,
        "我要投诉",
        "三文鱼是臭的！！",
        "买的牛奶过期了，退钱！！！",
        "你们就是骗子",
        "垃圾超市，再也不来了",
        "给你们差评",
        "再不处理我就打12315",
        "面包发霉了，必须赔偿",
        "店员态度差，恶心",
    ],
)
def test_complaints_are_recognised(text: str) -> None:
    assert is_complaint(text), complaint_score(text)


@pytest.mark.parametrize(
    "text",
    [
        "退货政策是什么",
        "东西坏了能退吗",
        "买的草莓坏了怎么办？",
        "怎么投诉？",
        "投诉电话是多少",
        "垃圾袋多少钱",
        "不是投诉，想问下会员日是哪天",
        "优惠券过期了吗",
        "能退钱吗",
        "会员日是哪天！",
    ],
)
def test_questions_with_mild_dissatisfaction_are_not_complaints(text: str) -> None:
    assert not is_complaint(text), complaint_score(text)


def test_score_adds_signals_once_each() -> None:
    assert complaint_score("臭") == 1
    assert complaint_score("臭臭臭") == 1
    assert complaint_score("臭！！") == 2
    assert complaint_score(ANGRY) == 2 + 2 + 1 + 1  # escalation, abuse, problem, intensity


async def test_a_complaint_is_apologised_for_and_handed_off_flagged(chat: Chat, app: App) -> None:
    await chat.say("会员日是哪天？")
    reply = await chat.say(ANGRY)
    assert isinstance(reply, HandoffReply)
    assert reply.complaint
    assert reply.text.startswith("非常抱歉")
    assert "示例咖啡" in reply.text
    assert "投诉" in reply.text
    assert "客服同事会尽快回复您" in reply.text  # 10:00 in Shanghai: within service hours
    assert "回复“结束人工”可回到智能客服" in reply.text
    assert reply.summary.startswith(f"{COMPLAINT_FLAG}会员：小明（web:u1）")
    assert f"投诉内容：{ANGRY}" in reply.summary
    assert "会员：会员日是哪天？" in reply.summary  # the conversation before it
    member = await app.store.get_member("web", "u1")
    assert member is not None
    assert member.handoff
    log = await app.store.session_log("web:c1")
    assert [(row.role, row.answered_by) for row in log[-2:]] == [
        ("user", None), ("bot", "complaint"),
    ]  # fmt: skip
    assert log[-2].text == ANGRY
    # A person serves now: the bot is silent until the member leaves the queue.
    assert await chat.say("还有人吗") == NoReply("human serving")
    assert "已结束人工服务" in _text(await chat.say("结束人工"))


async def test_a_complaint_in_a_group_is_quoted(app: App, chat: Chat) -> None:
    group = Chat(chat.pipeline, conversation="room-1", group=True)
    reply = await group.say("@小域 面包发霉了，必须赔偿！！", mentioned=True)
    assert isinstance(reply, HandoffReply)
    assert reply.quote == "小明"
    assert reply.summary.startswith(COMPLAINT_FLAG)


async def test_a_question_with_mild_dissatisfaction_is_answered(chat: Chat, app: App) -> None:
    reply = await chat.say("东西坏了能退吗")
    assert isinstance(reply, TextReply)
    assert reply.answered_by != "complaint"
    member = await app.store.get_member("web", "u1")
    assert member is not None
    assert not member.handoff
    answered = await chat.say("怎么退货？")
    assert _text(answered).startswith("购买后7天内凭小票可无理由退货")


async def test_asking_for_a_person_is_not_a_complaint(chat: Chat) -> None:
    reply = await chat.say("人工")
    assert isinstance(reply, HandoffReply)
    assert not reply.complaint
    assert not reply.summary.startswith(COMPLAINT_FLAG)


def _text(reply: object) -> str:
    assert isinstance(reply, TextReply), reply
    return reply.text
