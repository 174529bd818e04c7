"""Follow-ups without an LLM: "这个有优惠吗", "能退吗", "那个店几点关门" resolved against the
session's recent turns (read back from the message log), through the real pipeline."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import pytest

from bot.answer import Turn
from bot.app import App
from bot.followups import focus, resolve
from bot.types import TextReply
from knowledge.loaders.markdown import qa_draft
from knowledge.types import DocumentMeta
from tests.bot.conftest import Chat, Clock, document, make_settings, pipeline_for
from tests.bot.retail_brand import NOW, seed_brand

RETURNS = (
    (
        "水果生鲜能退货吗？",
        "水果等生鲜商品不支持无理由退货；有质量问题请在24小时内凭小票申请退款。",
    ),
    ("其他商品怎么退货？", "非生鲜商品7天内凭小票可无理由退货。"),
)


@pytest.fixture
async def shop(data_dir: Path) -> AsyncIterator[App]:
    """The bakery brand (tests/bot/retail_brand.py) plus a returns FAQ."""
    app = await App.build(make_settings(data_dir))
    try:
        await seed_brand(app.knowledge)
        meta = DocumentMeta(source="returns.md", title="退换货政策")
        await app.knowledge.ingest(document(meta, *(qa_draft(q, a) for q, a in RETURNS)))
        yield app
    finally:
        await app.close()


@pytest.fixture
def shop_clock() -> Clock:
    return Clock(NOW)


@pytest.fixture
def shopper(shop: App, shop_clock: Clock) -> Chat:
    return Chat(pipeline_for(shop, shop_clock), store_id="bj-hd")


def text_of(reply: object) -> str:
    assert isinstance(reply, TextReply), reply
    return reply.text


async def test_product_then_its_deal_then_returns(shopper: Chat) -> None:
    first = text_of(await shopper.say("MB-302"))
    assert first.startswith("丹东草莓（MB-302，500g）：现价29.9元（原价59元）")
    deal = text_of(await shopper.say("这个有优惠吗？"))
    assert deal.startswith("丹东草莓（MB-302，500g）：现价29.9元（原价59元）")
    assert "莓果季" in deal
    returns = text_of(await shopper.say("能退吗"))
    assert returns.startswith("关于丹东草莓：\n水果等生鲜商品不支持无理由退货")
    assert returns.endswith("（来源：退换货政策）")


async def test_a_product_without_a_deal_says_so(shopper: Chat) -> None:
    await shopper.say("燕麦拿铁什么价")
    reply = text_of(await shopper.say("有优惠吗"))
    assert reply.startswith("燕麦拿铁（MB-401，350ml）：售价22元")
    assert "燕麦拿铁目前没有优惠活动。" in reply
    assert "售价22元" in text_of(await shopper.say("那多少钱"))


async def test_a_promotion_then_until_when(shopper: Chat) -> None:
    await shopper.say("莓果季还有吗")
    assert "「莓果季」进行中，至3月22日" in text_of(await shopper.say("这个活动到哪天"))


async def test_the_store_named_before_is_that_store(shop: App, shop_clock: Clock) -> None:
    # The member's own store (the channel's) is Tianjin; the conversation is about Haidian.
    chat = Chat(pipeline_for(shop, shop_clock), store_id="tj-hp")
    assert "中关村大街27号" in text_of(await chat.say("海淀店在哪里"))
    reply = text_of(await chat.say("那个店几点关门"))
    assert reply.startswith("北京海淀店营业时间：周一至周五08:00-21:00")
    assert "天津和平店" not in reply
    assert "010-62002222" in text_of(await chat.say("这家店电话多少"))


async def test_an_unrelated_new_question_is_not_rewritten(shopper: Chat, shop: App) -> None:
    await shopper.say("MB-302")
    reply = text_of(await shopper.say("会员卡怎么办"))
    assert reply.startswith("在收银台报手机号即可免费办理会员卡")
    assert "草莓" not in reply
    deals = text_of(await shopper.say("现在有什么优惠活动？"))
    assert deals.startswith("北京海淀店现在优惠活动")
    history = [Turn("user", "MB-302"), Turn("bot", "丹东草莓（MB-302，500g）：售价59元")]
    catalogue = shop.knowledge.catalogue()
    for question in ("会员卡怎么办", "现在有什么优惠活动？", "怎么办会员卡？", "蓝莓多少钱",
                     "朝阳店几点关门", "这个月有什么活动", "生日蛋糕可以提前预订吗"):  # fmt: skip
        assert resolve(question, history, catalogue) is None, question


async def test_follow_ups_survive_a_restart(shop: App, shop_clock: Clock) -> None:
    """Nothing is kept in memory: a new pipeline (another process) reads the log back."""
    await Chat(pipeline_for(shop, shop_clock), store_id="bj-hd").say("MB-201")
    other = Chat(pipeline_for(shop, shop_clock), store_id="bj-hd", _ids=iter(range(100, 200)))
    reply = text_of(await other.say("这款多少钱"))
    assert reply.startswith("记忆棉枕头（MB-201，1个）：现价99元（原价129元）")


async def test_an_old_conversation_is_not_followed_up(shopper: Chat, shop_clock: Clock) -> None:
    await shopper.say("MB-302")
    shop_clock.advance(timedelta(minutes=31))  # past the session idle window
    reply = text_of(await shopper.say("这个有优惠吗"))
    assert reply.startswith("北京海淀店现在优惠活动")  # a plain deals question, not the product


async def test_a_list_is_ambiguous(shop: App) -> None:
    catalogue = shop.knowledge.catalogue()
    deals = await shop.answerer.answer("现在有什么优惠活动？", (), store_id="bj-hd", at=NOW)
    history = [Turn("user", "现在有什么优惠活动？"), Turn("bot", deals.text)]
    assert focus(history, catalogue).product is None
    assert focus(history, catalogue).promotion is None
    assert resolve("这个有优惠吗", history, catalogue) is None


async def test_the_newest_exchange_decides(shop: App) -> None:
    catalogue = shop.knowledge.catalogue()
    history = [
        Turn("user", "MB-302"), Turn("bot", "丹东草莓（MB-302，500g）：售价59元"),
        Turn("user", "谢谢"), Turn("bot", "不客气！"),
        Turn("user", "全麦吐司多少钱"), Turn("bot", "全麦吐司（MB-101，400g）：售价18元"),
    ]  # fmt: skip
    resolved = resolve("这个有优惠吗", history, catalogue)
    assert resolved is not None
    assert (resolved.question, resolved.about) == ("MB-101有优惠吗", "全麦吐司")
    returns = resolve("能退吗？", history, catalogue)
    assert returns is not None
    assert (returns.question, returns.about) == ("面包能退吗", "全麦吐司")
    keep = resolve("这个能放几天", history, catalogue)
    assert keep is not None
    assert keep.question == "全麦吐司能放几天"
    assert resolve("那个，会员日是哪天", history, catalogue) is None  # a hesitation
