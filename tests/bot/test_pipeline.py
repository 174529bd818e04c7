"""The pipeline end to end without an LLM: real SQLite, real Chroma, hash embeddings."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import pytest

from bot.answer import NOT_FOUND_TEXT
from bot.app import App
from bot.commands import (
    ALREADY_OPTED_OUT_TEXT,
    OPTED_IN_TEXT,
    OPTED_OUT_TEXT,
)
from bot.contact import SENDS_PER_WINDOW
from bot.types import Address, HandoffReply, NoReply, TextReply
from knowledge.loaders.markdown import qa_draft
from knowledge.types import DocumentMeta
from tests.bot.conftest import (
    NOW,
    Chat,
    Clock,
    built_app,
    document,
    make_settings,
    pipeline_for,
)

LONG_RULES = "".join(
    f"会员规则第{i}条：消费满{i * 100}元可获得{i * 10}积分。" for i in range(1, 40)
)


@pytest.fixture
async def small_limit_chat(data_dir: Path, clock: Clock) -> AsyncIterator[Chat]:
    """A bot whose replies may be at most 300 bytes, with one very long answer."""
    async for app in built_app(make_settings(data_dir, bot={"reply_max_bytes": 300})):
        rules = DocumentMeta(source="rules.md", title="会员规则")
        await app.knowledge.ingest(document(rules, qa_draft("会员规则有哪些？", LONG_RULES)))
        yield Chat(pipeline_for(app, clock))


def text_of(reply: object) -> str:
    assert isinstance(reply, TextReply), reply
    return reply.text


async def test_repeated_message_id_is_answered_once(chat: Chat, app: App) -> None:
    first = await chat.say("会员日是哪天？", msg_id="wx-1")
    again = await chat.say("会员日是哪天？", msg_id="wx-1")
    assert isinstance(first, TextReply)
    assert again == NoReply("duplicate")
    assert len(await app.store.session_log("web:c1")) == 2  # one question, one answer


async def test_concurrent_duplicates_get_exactly_one_answer(chat: Chat, app: App) -> None:
    msg = chat.message("会员日是哪天？", msg_id="wx-2")
    replies = await asyncio.gather(chat.pipeline.handle(msg), chat.pipeline.handle(msg))
    assert sorted(type(r).__name__ for r in replies) == ["NoReply", "TextReply"]
    assert NoReply("duplicate") in replies
    assert len(await app.store.session_log("web:c1")) == 2


async def test_member_is_created_and_last_active_moves(chat: Chat, app: App, clock: Clock) -> None:
    await chat.say("你好")
    clock.advance(timedelta(hours=3))
    await chat.say("会员日是哪天？")
    member = await app.store.get_member("web", "u1")
    assert member is not None
    assert member.display_name == "小明"
    assert member.first_seen == NOW
    assert member.last_active == NOW + timedelta(hours=3)


async def test_the_address_a_member_writes_from_is_recorded_and_opens_its_window(
    chat: Chat, app: App
) -> None:
    address = Address("oa", "main", "u1")
    msg = replace(chat.message("会员日是哪天？", msg_id="oa-1"), address=address)
    await chat.pipeline.handle(msg)
    member = await app.store.get_member("web", "u1")
    assert member is not None
    assert member.id is not None
    contacts = app.store.contacts
    assert (await contacts.reach([member.id], NOW))[member.id].address == address
    assert await contacts.consume(address, SENDS_PER_WINDOW, NOW)  # the bot's sends use it up
    assert await chat.pipeline.handle(msg) == NoReply("duplicate")  # a retry does not refill it
    assert await contacts.remaining(address, NOW) == 0


async def test_help_explains_what_the_bot_does(chat: Chat) -> None:
    reply = await chat.say("帮助")
    assert isinstance(reply, TextReply)
    assert reply.answered_by == "command"
    assert "示例咖啡" in reply.text
    assert "小域" in reply.text
    assert "“人工”" in reply.text
    assert "“退订”" in reply.text
    assert await chat.say("？") == reply


async def test_extractive_answer_quotes_the_entry_and_cites_it(chat: Chat) -> None:
    reply = await chat.say("会员日是哪天？")
    assert isinstance(reply, TextReply)
    assert reply.answered_by == "extractive"
    assert reply.text == "每月8号是会员日，会员全场9折。\n（来源：常见问题）"
    assert [(c.source, c.title) for c in reply.citations] == [("faq.md", "常见问题")]
    assert reply.quote is None


async def test_promotion_is_quoted_verbatim_and_only_while_valid(chat: Chat, clock: Clock) -> None:
    reply = text_of(await chat.say("夏日满减活动"))
    assert "夏日满减：6月1日至6月30日，全场满199减30，限线下门店。（至6月30日）" in reply
    assert reply.endswith("（来源：夏日满减）")
    clock.advance(timedelta(days=30))  # July: the promotion has ended
    ended = text_of(await chat.say("夏日满减活动"))
    assert "满199减30" not in ended
    assert "没有进行中的优惠活动" in ended
    status = text_of(await chat.say("夏日满减还能用吗"))
    assert status.startswith("「夏日满减」已结束（6月30日截止）")


async def test_below_threshold_says_not_found_and_offers_a_person(chat: Chat) -> None:
    reply = await chat.say("量子力学是什么")
    assert isinstance(reply, TextReply)
    assert reply.answered_by == "not_found"
    assert reply.text == NOT_FOUND_TEXT
    assert "人工" in reply.text
    assert reply.citations == ()


async def test_exchange_is_stored_with_answered_by_and_citations(chat: Chat, app: App) -> None:
    await chat.say("会员日是哪天？")
    await chat.say("量子力学是什么")
    log = await app.store.session_log("web:c1")
    assert [(row.role, row.answered_by) for row in log] == [
        ("user", None), ("bot", "extractive"), ("user", None), ("bot", "not_found"),
    ]  # fmt: skip
    assert log[0].text == "会员日是哪天？"
    assert log[1].text.startswith("每月8号是会员日")
    assert log[1].citations[0]["source"] == "faq.md"
    assert log[3].citations == []
    member = await app.store.get_member("web", "u1")
    assert member is not None
    assert {row.member_id for row in log} == {member.id}


async def test_handoff_silences_the_bot_until_it_ends(chat: Chat, app: App) -> None:
    await chat.say("会员日是哪天？")
    reply = await chat.say("转人工")
    assert isinstance(reply, HandoffReply)
    assert reply.text.startswith("好的，正在为您转接人工客服。客服同事会尽快回复您")
    assert "回复“结束人工”可回到智能客服" in reply.text
    assert "小明" in reply.summary
    assert "会员：会员日是哪天？" in reply.summary
    assert "小域：每月8号是会员日" in reply.summary
    member = await app.store.get_member("web", "u1")
    assert member is not None
    assert member.handoff

    assert await chat.say("营业时间是几点？") == NoReply("human serving")
    assert await chat.say("人工") == NoReply("human serving")
    assert await chat.say("帮助") == NoReply("human serving")

    assert "已结束人工服务" in text_of(await chat.say("结束人工"))
    assert text_of(await chat.say("会员日是哪天？")).startswith("每月8号")
    assert "当前由小域为您服务" in text_of(await chat.say("机器人"))


async def test_adapters_end_a_handoff_through_the_store(chat: Chat, app: App) -> None:
    assert isinstance(await chat.say("人工"), HandoffReply)
    member = await app.store.get_member("web", "u1")
    assert member is not None
    assert await app.store.end_handoff(member)  # the human closed the session
    assert text_of(await chat.say("会员日是哪天？")).startswith("每月8号")


async def test_opt_out_is_confirmed_once_and_opt_in_restores(chat: Chat, app: App) -> None:
    assert text_of(await chat.say("退订")) == OPTED_OUT_TEXT
    assert text_of(await chat.say("TD")) == ALREADY_OPTED_OUT_TEXT
    member = await app.store.get_member("web", "u1")
    assert member is not None
    assert member.opted_out
    assert member.opted_out_at == NOW
    assert text_of(await chat.say("订阅")) == OPTED_IN_TEXT
    member = await app.store.get_member("web", "u1")
    assert member is not None
    assert not member.opted_out
    assert member.opted_in_at == NOW


async def test_opt_out_works_while_a_person_serves(chat: Chat, app: App) -> None:
    await chat.say("人工")
    assert text_of(await chat.say("退订")) == OPTED_OUT_TEXT
    member = await app.store.get_member("web", "u1")
    assert member is not None
    assert member.opted_out
    assert member.handoff


async def test_group_message_not_addressed_gets_no_reply(app: App, clock: Clock) -> None:
    group = Chat(pipeline_for(app, clock), conversation="room-1", group=True)
    assert await group.say("会员日是哪天？") == NoReply("not addressed")
    assert await app.store.session_log("web:room-1:u1") == []


async def test_group_mention_gets_a_quoted_answer(app: App, clock: Clock) -> None:
    group = Chat(pipeline_for(app, clock), conversation="room-1", group=True)
    reply = await group.say("@小域 会员日是哪天？", mentioned=True)
    assert isinstance(reply, TextReply)
    assert reply.quote == "小明"
    assert reply.text.startswith("每月8号是会员日")
    log = await app.store.session_log("web:room-1:u1")
    assert log[0].text == "会员日是哪天？"  # stored without the address


async def test_group_addressed_by_name_is_answered(app: App, clock: Clock) -> None:
    group = Chat(pipeline_for(app, clock), conversation="room-1", group=True)
    reply = await group.say("小域，会员日是哪天？")
    assert isinstance(reply, TextReply)
    assert reply.text.startswith("每月8号是会员日")
    assert reply.quote == "小明"
    opted = await group.say("小域 退订")
    assert isinstance(opted, TextReply)
    assert opted.text == OPTED_OUT_TEXT
    assert opted.quote == "小明"


async def test_group_sessions_are_per_member(app: App, clock: Clock) -> None:
    pipeline = pipeline_for(app, clock)
    alice = Chat(pipeline, member="a", name="阿丽", conversation="room-1", group=True)
    bob = Chat(pipeline, member="b", name="", conversation="room-1", group=True)
    await alice.say("小域，人工")
    assert await alice.say("小域，会员日是哪天？") == NoReply("human serving")
    reply = await bob.say("小域，会员日是哪天？")
    assert isinstance(reply, TextReply)
    assert reply.quote == "b"


async def test_long_answers_fit_the_byte_limit(small_limit_chat: Chat) -> None:
    reply = await small_limit_chat.say("会员规则有哪些？")
    assert isinstance(reply, TextReply)
    assert len(reply.text.encode()) <= 300
    assert reply.text.startswith("会员规则第1条：消费满100元可获得10积分。")
    assert reply.text.endswith("。…")  # cut at a sentence end


async def test_quoted_group_replies_leave_room_for_the_quote(data_dir: Path, clock: Clock) -> None:
    async for app in built_app(make_settings(data_dir, bot={"reply_max_bytes": 300})):
        rules = DocumentMeta(source="rules.md", title="会员规则")
        await app.knowledge.ingest(document(rules, qa_draft("会员规则有哪些？", LONG_RULES)))
        group = Chat(pipeline_for(app, clock), conversation="room-1", group=True)
        reply = await group.say("@小域 会员规则有哪些？", mentioned=True)
        assert isinstance(reply, TextReply)
        assert reply.quote == "小明"
        assert len(f"@{reply.quote} {reply.text}".encode()) <= 300
