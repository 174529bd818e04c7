"""Small talk: greetings, thanks, "are you a bot?", goodbyes, answered briefly in the brand's
voice; a greeting in front of a question is stripped and the question answered; real questions
are never captured (checked against both test brands' questions)."""

from __future__ import annotations

from datetime import timedelta

import pytest

from bot.app import App
from bot.smalltalk import Kind, classify, strip_pleasantries
from bot.types import TextReply
from tests.bot import conftest, retail_brand
from tests.bot.conftest import Chat, Clock, pipeline_for

REAL_QUESTIONS = [
    *(q for q, _ in conftest.FAQ),
    *(q for q, _ in retail_brand.FAQ),
    "夏日满减活动", "现在有什么优惠活动？", "最近有啥活动", "水果有特价吗", "有半价的吗",
    "有没有满减", "年货大促的满200减40还能用吗？", "踏青节什么时候开始？",
    "朝阳店周年庆我在海淀店能参加吗", "早餐券天津店有吗", "蓝莓特价到哪天？", "枕头特惠到什么时候",
    "蓝莓多少钱？", "MB-102", "枕头多少钱", "面包多少钱", "燕麦拿铁什么价", "朝阳店几点关门？",
    "海淀店在哪里", "天津店电话多少", "你们几点开门", "停车收费吗", "你们一共有几家门店",
    "北京有门店吗", "会员卡怎么办", "早上几点开门", "你们是哪家公司", "好吃吗", "可以退吗",
    "在哪", "什么",
]  # fmt: skip
"""Questions the existing tests ask of the two test brands, and a few near misses."""


def text_of(reply: object) -> str:
    assert isinstance(reply, TextReply), reply
    return reply.text


@pytest.mark.parametrize(
    ("text", "kinds"),
    [
        ("你好", {Kind.GREETING}),
        ("您好！", {Kind.GREETING}),
        ("Hi", {Kind.GREETING}),
        ("hello~", {Kind.GREETING}),
        ("早上好呀", {Kind.GREETING}),
        ("在吗？", {Kind.GREETING}),
        ("小域你好", {Kind.GREETING}),
        ("谢谢", {Kind.THANKS}),
        ("多谢！", {Kind.THANKS}),
        ("谢了", {Kind.THANKS}),
        ("Thank you", {Kind.THANKS}),
        ("好的谢谢", {Kind.ACK, Kind.THANKS}),
        ("你是机器人吗", {Kind.IDENTITY}),
        ("你是谁", {Kind.IDENTITY}),
        ("是真人吗？", {Kind.IDENTITY}),
        ("你是AI吗", {Kind.IDENTITY}),
        ("你是真人还是机器人", {Kind.IDENTITY}),
        ("你好，你是机器人吗", {Kind.GREETING, Kind.IDENTITY}),
        ("再见", {Kind.BYE}),
        ("拜拜～", {Kind.BYE}),
        ("没事了", {Kind.BYE}),
        ("谢谢，再见", {Kind.THANKS, Kind.BYE}),
        ("好的", {Kind.ACK}),
    ],
)
def test_small_talk_variants(text: str, kinds: set[Kind]) -> None:
    talk = classify(text, "小域")
    assert talk is not None
    assert talk.kinds == kinds


@pytest.mark.parametrize("question", REAL_QUESTIONS)
def test_real_questions_are_not_small_talk_and_are_left_alone(question: str) -> None:
    assert classify(question, "小域") is None
    assert strip_pleasantries(question, "小域") == question.strip()


@pytest.mark.parametrize(
    ("text", "question"),
    [
        ("你好，车厘子多少钱", "车厘子多少钱"),
        ("您好！请问会员日是哪天？", "请问会员日是哪天？"),
        ("hi，蓝莓多少钱", "蓝莓多少钱"),
        ("在吗 朝阳店几点关门", "朝阳店几点关门"),
        ("你好你好蓝莓多少钱", "蓝莓多少钱"),
        ("小域，会员日是哪天？谢谢！", "会员日是哪天？"),
        ("早，几点开门", "几点开门"),
        ("你好吃吗", "你好吃吗"),
    ],
)
def test_pleasantries_around_a_question_are_stripped(text: str, question: str) -> None:
    assert strip_pleasantries(text, "小域") == question


async def test_greeting_is_answered_in_the_brands_voice(chat: Chat, app: App) -> None:
    replies = [await chat.say(text) for text in ("你好", "您好", "hello", "在吗", "早上好")]
    for reply in replies:
        assert isinstance(reply, TextReply)
        assert reply.answered_by == "smalltalk"
        assert "示例咖啡" in reply.text
        assert "早上好" in reply.text  # 10:00 in Shanghai
    assert len({text_of(r) for r in replies}) > 1  # not one canned line
    log = await app.store.session_log("web:c1")
    assert [row.answered_by for row in log if row.role == "bot"] == ["smalltalk"] * 5


async def test_greeting_follows_the_brands_local_time(chat: Chat, clock: Clock) -> None:
    clock.advance(timedelta(hours=10))  # 20:00 in Shanghai
    assert "晚上好" in text_of(await chat.say("你好"))


async def test_thanks_identity_and_goodbye(chat: Chat) -> None:
    for text in ("谢谢", "多谢", "谢了", "好的谢谢"):
        reply = text_of(await chat.say(text))
        assert reply.startswith(("不客气", "不用谢")), reply
        assert "示例咖啡" in reply
    for text in ("你是机器人吗", "你是谁", "是真人吗", "你是AI吗"):
        reply = text_of(await chat.say(text))
        assert "示例咖啡的智能客服小域" in reply
        assert "AI机器人，不是真人" in reply
        assert "“人工”" in reply
    for text in ("再见", "拜拜", "没事了"):
        reply = text_of(await chat.say(text))
        assert "示例咖啡" in reply
        assert "抱歉" not in reply


async def test_a_greeting_with_a_question_answers_the_question(chat: Chat, app: App) -> None:
    reply = await chat.say("你好，会员日是哪天？")
    assert isinstance(reply, TextReply)
    assert reply.answered_by == "extractive"
    assert reply.text.startswith("每月8号是会员日")
    log = await app.store.session_log("web:c1")
    assert log[0].text == "你好，会员日是哪天？"  # logged as the member sent it


async def test_a_greeting_in_front_of_a_retail_question(shop: App) -> None:
    chat = Chat(pipeline_for(shop, Clock(retail_brand.NOW)), store_id="bj-hd")
    reply = text_of(await chat.say("你好，蓝莓多少钱"))
    assert "云南蓝莓（MB-301，125g×2盒）：现价29.9元（原价39.9元）" in reply


async def test_small_talk_in_a_group_is_quoted(app: App, clock: Clock) -> None:
    group = Chat(pipeline_for(app, clock), conversation="room-1", group=True)
    reply = await group.say("@小域 你好", mentioned=True)
    assert isinstance(reply, TextReply)
    assert reply.quote == "小明"
    assert "示例咖啡" in reply.text


async def test_real_questions_route_as_before(shop: App) -> None:
    """Every question of the test brands gets through the pipeline exactly the answerer's own
    answer (no small talk, no stripping, no rewriting: each is the first of its session)."""
    for n, question in enumerate(REAL_QUESTIONS):
        clock = Clock(retail_brand.NOW)
        chat = Chat(pipeline_for(shop, clock), f"m{n}", conversation=f"q{n}", store_id="bj-hd")
        reply = await chat.say(question)
        direct = await shop.answerer.answer(question, (), store_id="bj-hd", at=retail_brand.NOW)
        assert isinstance(reply, TextReply), question
        assert reply.answered_by != "smalltalk", question
        assert reply.text == direct.text, question
