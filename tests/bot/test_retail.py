"""Retail answers from records, offline: deals, promotion status, products and prices, stores.

A real App (SQLite, Chroma in a temp dir, hash embeddings, no LLM) holding a bakery brand's
stores, products, promotions and FAQ (tests/bot/retail_brand.py); questions go through the same
answerer every channel uses.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import pytest

from bot.answer import NOT_FOUND_TEXT
from bot.app import App
from bot.retail import RetailAnswerer
from bot.retail.exemplars import ExemplarIntents
from tests.bot.conftest import make_settings
from tests.bot.retail_brand import NOW, seed_brand


async def ask(app: App, question: str, store: str | None = "bj-hd", at: datetime = NOW) -> str:
    answer = await app.answerer.answer(question, (), store_id=store, at=at)
    return answer.text


async def test_current_deals_are_this_stores_valid_ones_with_end_dates(shop: App) -> None:
    reply = await ask(shop, "现在有什么优惠活动？", store="bj-hd")
    assert "北京海淀店" in reply
    assert "莓果季" in reply
    assert "至3月22日" in reply
    assert "北京门店早餐券" in reply  # scoped to both Beijing stores
    assert "记忆棉枕头今天仅需99元" in reply
    assert "仅限今天（3月10日）" in reply
    assert "朝阳店周年庆" not in reply  # another store's
    assert "春节年货大促" not in reply
    assert "满200减40" not in reply
    assert "即将开始：清明踏青节（3月30日开始）" in reply  # future: only its start
    assert "饮品全场8折" not in reply


async def test_a_scoped_store_sees_its_own_promotion(shop: App) -> None:
    assert "朝阳店周年庆" in await ask(shop, "最近有啥活动", store="bj-cy")
    tianjin = await ask(shop, "最近有啥活动", store="tj-hp")
    assert "北京门店早餐券" not in tianjin
    assert "莓果季" in tianjin


async def test_deals_narrow_to_a_category_product_or_mechanic(shop: App) -> None:
    fruit = await ask(shop, "水果有特价吗")
    assert "莓果季" in fruit
    assert "枕头" not in fruit
    assert "早餐券" not in fruit
    half = await ask(shop, "有半价的吗")
    assert "莓果季" in half
    assert "早餐券" not in half
    none = await ask(shop, "有没有满减")
    assert none.startswith("暂时没有满减相关的优惠活动")
    assert "莓果季" in none


async def test_status_of_an_ended_promotion_says_when_and_offers_what_is_on(shop: App) -> None:
    reply = await ask(shop, "年货大促的满200减40还能用吗？")
    assert "已结束（3月1日截止）" in reply
    assert "现在的优惠有" in reply
    assert "莓果季" in reply
    assert "进行中" not in reply


async def test_status_of_a_future_promotion_gives_its_start(shop: App) -> None:
    reply = await ask(shop, "踏青节什么时候开始？")
    assert "将于3月30日开始" in reply
    assert "3月30日至4月6日" in reply


async def test_status_of_another_stores_promotion_names_its_stores(shop: App) -> None:
    reply = await ask(shop, "朝阳店周年庆我在海淀店能参加吗", store="bj-hd")
    assert "仅限北京朝阳店" in reply
    assert "北京海淀店不参加" in reply
    assert "可以参加" not in reply
    city = await ask(shop, "早餐券天津店有吗", store="bj-hd")
    assert "仅限北京朝阳店、北京海淀店" in city
    assert "天津和平店不参加" in city


async def test_until_when_gives_the_end_date(shop: App) -> None:
    assert "至3月22日" in await ask(shop, "蓝莓特价到哪天？")
    assert "仅限今天" in await ask(shop, "枕头特惠到什么时候")


async def test_price_shows_the_promotion_price_beside_the_list_price(shop: App) -> None:
    reply = await ask(shop, "蓝莓多少钱？")
    assert "云南蓝莓（MB-301，125g×2盒）：现价29.9元（原价39.9元）" in reply
    assert "莓果季" in reply


async def test_price_by_sku_partial_name_and_several_matches(shop: App) -> None:
    assert "售价12.5元" in await ask(shop, "MB-102")
    assert "现价99元（原价129元）" in await ask(shop, "枕头多少钱")
    several = await ask(shop, "面包多少钱")
    assert several.startswith("找到2款相关商品")
    assert "全麦吐司" in several
    assert "法式长棍面包" in several
    assert "售价22元" in await ask(shop, "燕麦拿铁什么价")


async def test_store_hours_address_phone_parking(shop: App) -> None:
    assert "北京朝阳店营业时间：每天07:30-21:00" in await ask(shop, "朝阳店几点关门？")
    assert "中关村大街27号" in await ask(shop, "海淀店在哪里")
    assert "022-23003333" in await ask(shop, "天津店电话多少")
    assert "周末08:00-22:00" in await ask(shop, "你们几点开门", store="bj-hd")
    parking = await ask(shop, "停车收费吗", store="bj-hd")
    assert "北京海淀店的停车信息暂未登记" in parking
    assert "010-62002222" in parking


async def test_store_list_and_city(shop: App) -> None:
    every = await ask(shop, "你们一共有几家门店")
    assert every.startswith("我们共有3家门店")
    assert "天津和平店" in every
    beijing = await ask(shop, "北京有门店吗")
    assert beijing.startswith("北京有2家门店")
    assert "天津" not in beijing


async def test_faq_and_out_of_scope_still_go_through_retrieval(shop: App) -> None:
    assert "免费办理会员卡" in await ask(shop, "会员卡怎么办")
    assert await ask(shop, "帮我写一首关于春天的诗") == NOT_FOUND_TEXT


async def test_a_near_exact_faq_entry_beats_a_bare_deals_question(shop: App) -> None:
    await shop.knowledge.ingest_path(_faq_file(shop))
    reply = await ask(shop, "会员日有什么优惠？")
    assert "每周二会员日" in reply


def _faq_file(app: App) -> Path:
    path = app.settings.data_dir / "member-day.csv"
    path.write_text("问题,答案\n会员日有什么优惠？,每周二会员日全场95折。\n", "utf-8")
    return path


async def test_an_unrouted_unanswered_question_goes_to_its_nearest_exemplar(shop: App) -> None:
    fallback = shop.answerer.fallback
    tz = shop.settings.bot.timezone
    question = "最近有啥好康的"  # no cue word, no FAQ entry
    assert await ask(shop, question) == NOT_FOUND_TEXT  # hash backend: exemplars off
    anything = ExemplarIntents(shop.knowledge, floor=-1.0)
    near = RetailAnswerer(shop.knowledge, fallback, tz=tz, exemplars=anything)
    answer = await near.answer(question, (), store_id="bj-hd", at=NOW)
    assert answer.answered_by == "retail"
    never = ExemplarIntents(shop.knowledge, floor=1.01)
    far = RetailAnswerer(shop.knowledge, fallback, tz=tz, exemplars=never)
    assert (await far.answer(question, (), store_id="bj-hd", at=NOW)).text == NOT_FOUND_TEXT
    # a question retrieval answers never reaches the exemplars
    assert "免费办理会员卡" in (await near.answer("会员卡怎么办", (), store_id=None, at=NOW)).text


@pytest.mark.slow
async def test_local_model_exemplars_catch_deals_without_cue_words(data_dir: Path) -> None:
    app = await App.build(make_settings(data_dir, knowledge={"embedding": "local"}))
    try:
        await seed_brand(app.knowledge)
        deals = await ask(app, "最近有啥好康的", store="bj-hd")
        assert deals.startswith("北京海淀店现在优惠活动")
        assert "莓果季" in deals
        for off_topic in ("明天北京天气怎么样", "推荐几只股票", "怎么办理护照"):
            assert await ask(app, off_topic) == NOT_FOUND_TEXT, off_topic
    finally:
        await app.close()
