"""Retail answers written by the LLM with the skills as tools, against the fake OpenAI server.

Everything from the App down is real (SQLite, Chroma, hash embeddings, the retail records); only
the model is scripted. The brand is a small grocer in Guangzhou, as of :data:`NOW`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Protocol
from zoneinfo import ZoneInfo

import pytest

from bot.answer import NOT_FOUND_TEXT, Answer, Turn
from bot.app import App
from bot.retail.answerer import as_answer, skill
from bot.retail.router import route
from bot.retail.skills import Desk, Finding, Topic
from bot.retail.tools import TOOLS, Toolbox
from bot.retail.writer import unsupported_facts
from knowledge.base import KnowledgeBase
from knowledge.loaders.hashing import content_hash
from knowledge.loaders.markdown import qa_draft
from knowledge.types import ChunkDraft, DocumentMeta, Kind, SourceDocument
from tests.bot.conftest import make_settings
from tests.fakes.openai_server import FakeOpenAI

SH = ZoneInfo("Asia/Shanghai")
NOW = datetime(2026, 3, 10, 10, 0, tzinfo=SH)
DAY = timedelta(days=1)
TIMEOUT = 0.5
"""The LLM client's timeout and the writer's deadline in these tests (seconds)."""

STORES = (
    ("gz-th", "广州天河店", "广州市天河区体育西路1号", "每天08:00-22:00", "020-38880000",
     "地下停车场，消费满100元免费2小时"),
    ("gz-yx", "广州越秀店", "广州市越秀区北京路88号", "每天09:00-21:30", "020-83330000", ""),
)  # fmt: skip
PRODUCTS = (
    ("FR-001", "智利车厘子", "500g", "69.9", "水果"),
    ("BK-001", "全麦吐司", "400g", "18", "面包"),
    ("DR-001", "燕麦拿铁", "350ml", "22", "饮品"),
)
PROMOTIONS = (
    # (title, text, stores, from, to, skus)
    ("车厘子尝鲜价", "车厘子尝鲜价：智利车厘子特价49.9元，每人限购2盒。", (),
     NOW - 2 * DAY, NOW + 5 * DAY, ("FR-001",)),
    ("面包早市", "面包早市：每天08:00-10:00全场面包8折。", (), NOW - DAY, NOW + 20 * DAY, ()),
    ("天河店周年庆", "天河店周年庆：满100减20。", ("gz-th",), NOW - DAY, NOW + 3 * DAY, ()),
)  # fmt: skip
FAQ = (("怎么退货？", "购买后7天内凭小票可无理由退货。"),)


def _doc(meta: DocumentMeta, *drafts: ChunkDraft) -> SourceDocument:
    return SourceDocument(meta, drafts, content_hash(meta, drafts))


async def seed_grocer(kb: KnowledgeBase) -> None:
    """Two stores, three products, three promotions (one store-scoped) and an FAQ entry."""
    await kb.ingest(
        _doc(DocumentMeta(source="faq.csv", title="常见问题"), *(qa_draft(q, a) for q, a in FAQ))
    )
    store_keys = ("store_id", "name", "address", "hours", "phone", "parking")
    stores = [
        ChunkDraft("\n".join(r[1:]), (r[1],), fields=tuple(zip(store_keys, r, strict=True)))
        for r in STORES
    ]
    await kb.ingest(_doc(DocumentMeta(source="stores.csv", kind=Kind.STORE), *stores))
    product_keys = ("sku", "name", "spec", "price", "category")
    products = [
        ChunkDraft(
            f"{r[1]}（{r[0]}）{r[3]}元",
            (r[1], r[0]),
            skus=(r[0],),
            fields=tuple(zip(product_keys, r, strict=True)),
        )
        for r in PRODUCTS
    ]
    await kb.ingest(_doc(DocumentMeta(source="products.csv", kind=Kind.PRODUCT), *products))
    for title, text, scope, start, end, skus in PROMOTIONS:
        meta = DocumentMeta(
            source=f"{title}.md", kind=Kind.PROMOTION, title=title, stores=scope,
            valid_from=start, valid_to=end, skus=skus,
        )  # fmt: skip
        await kb.ingest(_doc(meta, ChunkDraft(text=text, heading=title)))


@pytest.fixture
async def grocer(data_dir: Path, openai_server: FakeOpenAI) -> AsyncIterator[App]:
    """An App answering with the fake LLM (0.5 s timeout, no retries), seeded with the grocer."""
    settings = make_settings(
        data_dir,
        llm={"base_url": openai_server.base_url, "model": "fake-chat", "timeout": TIMEOUT,
             "max_retries": 0},
        bot={"brand": "鲜丰超市"},
    )  # fmt: skip
    app = await App.build(settings)
    try:
        await seed_grocer(app.knowledge)
        yield app
    finally:
        await app.close()


class Ask(Protocol):
    """Asks the App's answerer a question at :data:`NOW`."""

    async def __call__(
        self, question: str, *, store_id: str | None = None, history: tuple[Turn, ...] = ()
    ) -> Answer: ...


@pytest.fixture
def ask(grocer: App) -> Ask:
    """Ask the App's answerer a question at :data:`NOW` (optionally from a store, with history)."""

    async def asking(
        question: str, *, store_id: str | None = None, history: tuple[Turn, ...] = ()
    ) -> Answer:
        return await grocer.answerer.answer(question, history, store_id=store_id, at=NOW)

    return asking


def desk_of(app: App, store_id: str | None = None) -> Desk:
    """The skills as seen from ``store_id`` at :data:`NOW`."""
    return Desk(app.knowledge.catalogue(), store_id=store_id, now=NOW, tz=SH)


def offline_finding(app: App, question: str, store_id: str | None = None) -> Finding:
    """The records' own finding for a question the router takes."""
    desk = desk_of(app, store_id)
    found = route(question, desk.catalogue)
    assert found is not None, question
    return skill(desk, found)


def offline_answer(app: App, question: str, store_id: str | None = None) -> Answer:
    """What the records alone answer (the answer without an LLM)."""
    return as_answer(offline_finding(app, question, store_id))


def writer_warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "bot.retail.writer"]


# ---- tool calling ------------------------------------------------------------------------------


async def test_model_calls_product_info_then_quotes_the_promotion_price(
    grocer: App, ask: Ask, openai_server: FakeOpenAI
) -> None:
    openai_server.tool_call("product_info", {"name_or_sku": "车厘子"})
    openai_server.reply("智利车厘子现在特价49.9元（原价69.9元），活动到3月15日，每人限购2盒。")
    answer = await ask("车厘子多少钱？")
    assert (answer.answered_by, answer.found) == ("llm", True)
    written, sources = answer.text.split("\n")
    assert written == "智利车厘子现在特价49.9元（原价69.9元），活动到3月15日，每人限购2盒。"
    assert sources.startswith("（来源：")
    assert "车厘子尝鲜价" in sources
    assert {c.title for c in answer.citations} == {"商品信息", "车厘子尝鲜价"}  # untitled: kind
    first, second = openai_server.chat_requests
    assert first.tool_results == []
    [result] = second.tool_results
    assert result["tool_call_id"] == "call_0"
    cherries = grocer.knowledge.catalogue().product("FR-001")
    assert cherries is not None
    assert result["content"] == desk_of(grocer).products((cherries,)).text
    assert "49.9元" in result["content"]


async def test_request_offers_the_five_tools_and_the_records_answer_as_a_source(
    grocer: App, ask: Ask, openai_server: FakeOpenAI
) -> None:
    openai_server.reply("智利车厘子现价49.9元。")
    await ask("车厘子多少钱？")
    [request] = openai_server.chat_requests
    assert request.tool_names == [name for name, _schema, _text in TOOLS]
    assert request.tool_names == [
        "list_deals", "promotion_status", "product_info", "store_info", "list_stores",
    ]  # fmt: skip
    store_info = request.body["tools"][3]["function"]["parameters"]["properties"]
    assert store_info["attribute"]["anyOf"][0]["enum"] == ["hours", "address", "phone", "parking"]
    system = request.messages[0]
    assert system["role"] == "system"
    assert "鲜丰超市" in system["content"]
    assert "逐字引用" in system["content"]
    assert "今天是3月10日" in system["content"]
    source = offline_finding(grocer, "车厘子多少钱？").text
    assert request.last_user_text == f"资料：\n[1] {source}\n\n会员问题：车厘子多少钱？"


async def test_deals_question_answered_from_the_source_without_a_tool(
    grocer: App, ask: Ask, openai_server: FakeOpenAI
) -> None:
    openai_server.reply(
        "现在有两个优惠：[1]\n车厘子尝鲜价：智利车厘子特价49.9元，至3月15日。\n"
        "面包早市：每天08:00-10:00全场面包8折，至3月30号。"
    )
    answer = await ask("现在有什么优惠活动？")
    assert answer.answered_by == "llm"
    assert answer.text.startswith("现在有两个优惠：\n车厘子尝鲜价")  # the source number is dropped
    assert answer.citations == offline_answer(grocer, "现在有什么优惠活动？").citations
    assert len(openai_server.chat_requests) == 1


async def test_tool_resolves_the_askers_store(
    grocer: App, ask: Ask, openai_server: FakeOpenAI
) -> None:
    openai_server.tool_call("store_info", {"attribute": "parking"})
    openai_server.reply("天河店有地下停车场，消费满100元免费2小时。")
    answer = await ask("停车方便吗？", store_id="gz-th")
    assert answer.answered_by == "llm"
    [result] = openai_server.chat_requests[1].tool_results
    tianhe = desk_of(grocer, "gz-th")
    assert tianhe.store is not None
    assert result["content"] == tianhe.store_info((tianhe.store,), "parking").text
    assert answer.text.endswith("（来源：门店信息）")  # stores.csv, untitled: named by its kind


async def test_several_calls_in_one_reply_each_get_their_result(
    grocer: App, ask: Ask, openai_server: FakeOpenAI
) -> None:
    openai_server.tool_calls(
        ("list_stores", {"city": "广州"}), ("promotion_status", {"name": "周年庆"})
    )
    openai_server.reply("广州有2家门店。天河店周年庆仅限广州天河店，越秀店不参加。")
    answer = await ask("广州有几家店？", store_id="gz-yx")
    assert answer.answered_by == "llm"
    stores, status = openai_server.chat_requests[1].tool_results
    assert (stores["tool_call_id"], status["tool_call_id"]) == ("call_0", "call_1")
    yuexiu = desk_of(grocer, "gz-yx")
    assert stores["content"] == yuexiu.store_list("广州").text
    anniversary = [p for p in yuexiu.catalogue.promotions if p.title == "天河店周年庆"]
    assert status["content"] == yuexiu.status(anniversary).text


async def test_history_goes_to_the_model_as_turns(ask: Ask, openai_server: FakeOpenAI) -> None:
    openai_server.reply("全麦吐司售价18元。")
    history = (Turn("user", "你们有面包吗？"), Turn("bot", "有的，全麦吐司。"))
    await ask("全麦吐司多少钱？", history=history)
    roles = [(m["role"], m["content"]) for m in openai_server.chat_requests[0].messages[1:3]]
    assert roles == [("user", "你们有面包吗？"), ("assistant", "有的，全麦吐司。")]


# ---- the records' facts ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "written",
    ["智利车厘子现在只要99元！", "车厘子特价49.9元，活动到3月20日。", "车厘子打7折。"],
)
async def test_price_or_date_not_in_the_records_falls_back_to_them(
    grocer: App, ask: Ask, openai_server: FakeOpenAI, caplog: pytest.LogCaptureFixture,
    written: str,
) -> None:  # fmt: skip
    openai_server.reply(written)
    with caplog.at_level(logging.WARNING, logger="bot.retail.writer"):
        answer = await ask("车厘子多少钱？")
    assert answer == offline_answer(grocer, "车厘子多少钱？")
    assert answer.answered_by == "retail"
    [warning] = writer_warnings(caplog)
    assert "not in the records" in warning


def test_prices_and_dates_compare_in_one_spelling() -> None:
    source = ["车厘子特价49.90元，2026年3月15日截止；满100元减20元；全场8折。", "3月10日"]
    same = "车厘子￥４９.９，3月15号截止（2026-03-15），满100减20，8折，今天3/10。"
    assert unsupported_facts(same, source) == []
    assert unsupported_facts("2027年3月15日截止，9.9元，满100减30，7折", source) == [
        "2027年3月15日", "7折", "9.9元", "满100减30",
    ]  # fmt: skip
    assert unsupported_facts("至2026年3月10日", source) == []  # the source wrote no year
    assert unsupported_facts("营业时间08:00-22:00，电话020-38880000", source) == []


# ---- failures ----------------------------------------------------------------------------------


def _script(server: FakeOpenAI, failure: str) -> None:
    if failure == "http_500":
        server.fail(500)
    elif failure == "timeout":
        server.delay(5.0)
    elif failure == "malformed":
        server.malformed()
    elif failure == "empty":
        server.reply("  ")
    else:
        server.tool_call("list_deals", {}, times=10)


@pytest.mark.parametrize("failure", ["http_500", "timeout", "malformed", "empty", "endless_tools"])
async def test_llm_failure_answers_from_the_records_within_the_deadline(
    grocer: App, ask: Ask, openai_server: FakeOpenAI, caplog: pytest.LogCaptureFixture,
    failure: str,
) -> None:  # fmt: skip
    _script(openai_server, failure)
    started = time.monotonic()
    with caplog.at_level(logging.WARNING, logger="bot.retail.writer"):
        answer = await ask("车厘子多少钱？")
    assert time.monotonic() - started < TIMEOUT + 0.4
    assert answer == offline_answer(grocer, "车厘子多少钱？")
    assert len(writer_warnings(caplog)) == 1
    if failure == "endless_tools":
        assert len(openai_server.chat_requests) == 4  # three rounds of tools, then one more ask


# ---- questions the router does not take --------------------------------------------------------


async def test_unrouted_unfound_question_is_answered_through_a_tool(
    ask: Ask, openai_server: FakeOpenAI
) -> None:
    openai_server.tool_call("list_deals", {})
    openai_server.reply("最近车厘子尝鲜价很划算：智利车厘子特价49.9元，至3月15日。")
    answer = await ask("最近有什么好东西推荐吗")
    assert (answer.answered_by, answer.found) == ("llm", True)
    sources = answer.text.split("\n")[-1]
    assert "车厘子尝鲜价" in sources
    assert "面包早市" in sources
    first = openai_server.chat_requests[0]
    assert "资料：" not in first.last_user_text  # no records' answer to offer
    assert len(first.tool_names) == 5


async def test_unrouted_question_without_a_tool_call_is_not_found(
    ask: Ask, openai_server: FakeOpenAI
) -> None:
    openai_server.reply("推荐您看看我们的水果。")
    answer = await ask("最近有什么好东西推荐吗")
    assert (answer.text, answer.answered_by, answer.found) == (NOT_FOUND_TEXT, "not_found", False)


async def test_unknown_product_gives_a_not_found_result_and_the_follow_up_is_used(
    ask: Ask, openai_server: FakeOpenAI
) -> None:
    openai_server.tool_call("product_info", {"name_or_sku": "榴莲"})
    openai_server.reply("抱歉，我们暂时没有榴莲。")
    answer = await ask("有没有榴莲？")
    assert (answer.text, answer.answered_by, answer.citations) == (
        "抱歉，我们暂时没有榴莲。", "llm", (),
    )  # fmt: skip
    [result] = openai_server.chat_requests[1].tool_results
    assert result["content"] == "没有找到商品「榴莲」。"


async def test_arguments_outside_the_schema_give_an_error_result(
    ask: Ask, openai_server: FakeOpenAI
) -> None:
    openai_server.tool_call("store_info", {"attribute": "weather"})
    openai_server.tool_call("opening_soon", {})
    openai_server.reply("天河店每天08:00-22:00营业。")
    answer = await ask("天河店几点关门？")
    assert answer.answered_by == "llm"
    bad_arguments, unknown_tool = openai_server.chat_requests[2].tool_results
    assert bad_arguments["content"] == "参数不正确，请按工具说明重新调用。"
    assert unknown_tool["content"] == "没有名为opening_soon的工具。"


# ---- the tools on their own --------------------------------------------------------------------


def test_tools_resolve_names_like_the_router(grocer: App) -> None:
    desk = desk_of(grocer, "gz-yx")
    catalogue = desk.catalogue
    tools = Toolbox(desk)
    cherries, bread = catalogue.product("FR-001"), catalogue.product("BK-001")
    assert cherries is not None
    assert bread is not None
    assert tools.product_info("fr-001") == desk.products((cherries,)).text
    assert tools.product_info("吐司") == desk.products((bread,)).text
    assert (
        tools.list_deals(category="面包")
        == desk.deals(Topic(categories=("面包",), label="面包")).text
    )
    assert (
        tools.list_deals(product="车厘子")
        == desk.deals(Topic((cherries,), label="智利车厘子")).text
    )
    by_product = [p for p in catalogue.promotions if p.title == "车厘子尝鲜价"]
    assert tools.promotion_status("车厘子") == desk.status(by_product).text
    tianhe = catalogue.stores.get("gz-th")
    assert tianhe is not None
    assert tools.store_info("天河", "hours") == desk.store_info((tianhe,), "hours").text
    assert tools.list_stores("广州") == desk.store_list("广州").text
    assert len(tools.findings) == 7  # one per call
    assert all(f.citations for f in tools.findings)


def test_unknown_names_give_not_found_texts(grocer: App) -> None:
    tools = Toolbox(desk_of(grocer, "gz-yx"))
    assert tools.list_deals(category="零食") == "没有找到「零食」相关的商品或品类。"
    assert tools.list_deals(product="榴莲") == "没有找到「榴莲」相关的商品或品类。"
    assert tools.promotion_status("双十一") == "没有找到名为「双十一」的活动。"
    assert tools.product_info("ZZ-999") == "没有找到商品「ZZ-999」。"
    assert (
        tools.store_info("深圳店")
        == "没有找到门店「深圳店」。我们的门店有：广州天河店、广州越秀店。"
    )
    assert [f.citations for f in tools.findings] == [(), (), (), (), ()]
