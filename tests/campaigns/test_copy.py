"""Copy per segment: templates, an LLM behind the fake OpenAI server, fallbacks and size limits."""

from __future__ import annotations

import re
import time
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from bot.config import LLMConfig
from campaigns.compliance import Violation, check_copy
from campaigns.config import OPT_OUT_HINT, CampaignsConfig
from campaigns.copy import (
    DEFAULT_TEMPLATES,
    Copy,
    CopyRejected,
    CopyWriter,
    render_template,
    shorten,
)
from campaigns.promotions import Promotion
from knowledge.breaker import CircuitBreaker
from tests.fakes.openai_server import FakeOpenAI, Outage, openai_server

__all__ = ["openai_server"]

SHANGHAI = ZoneInfo("Asia/Shanghai")
BRAND = "禾町生活"
SUFFIX = f"\n{OPT_OUT_HINT}"

ANNIVERSARY = Promotion(
    doc_id="anniversary.md", title="禾町十周年店庆",
    text="禾町十周年店庆\n活动时间：2026年12月18日至2026年12月31日，全部门店及小程序。\n"
    "- 全场单笔满 300 元减 60 元，每单限减一次。\n- 店庆期间金卡会员积分 3 倍。",
    stores=(), valid_from=datetime(2026, 12, 18, tzinfo=SHANGHAI),
    valid_to=datetime(2026, 12, 31, 23, 59, 59, 999999, tzinfo=SHANGHAI),
    tags=("店庆", "满减"), source="anniversary.md",
)  # fmt: skip
MILK = Promotion(
    doc_id="milk-subscription.md", title="鲜奶月卡",
    text="鲜奶月卡：每天一瓶禾町鲜牛奶\n- 月卡价格 399 元，含 30 瓶禾町鲜牛奶（950ml，HD-1001）。",
    stores=(), valid_from=None,
    valid_to=datetime(2027, 6, 30, 23, 59, 59, 999999, tzinfo=SHANGHAI),
    tags=("乳品",), source="milk-subscription.md",
)  # fmt: skip
GOOD_DRAFT = (
    "好久不见！禾町十周年店庆12月18日开始，全场单笔满300元减60元，金卡会员积分3倍，欢迎回来逛逛。"
)


def llm_config(server: FakeOpenAI, *, model: str | None = "fake-chat") -> LLMConfig:
    return LLMConfig(
        base_url=server.base_url, model=model, api_key=None, timeout=0.5, max_retries=0,
        temperature=0.2,
    )  # fmt: skip


@pytest.fixture
async def llm_writer(openai_server: FakeOpenAI) -> AsyncIterator[CopyWriter]:
    """A writer on the fake LLM (0.5 s timeout, no client retries, three drafts at most)."""
    writer = CopyWriter(CampaignsConfig(), llm_config(openai_server), brand=BRAND)
    yield writer
    await writer.aclose()


def rendered(template: str, promotions: list[Promotion], segment: str) -> str:
    body = render_template(
        template, brand=BRAND, promotions=promotions, segment=segment, interest=None, tz=SHANGHAI
    )
    return body.strip() + SUFFIX


# -- templates ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("segment", "template"),
    [
        ("new", "new"),
        ("active", "active"),
        ("at_risk", "at_risk"),
        ("dormant", "dormant"),
        ("lost", "lost"),
        ("vip", "default"),  # any other audience
    ],
)
async def test_without_an_llm_each_segment_gets_its_template(segment: str, template: str) -> None:
    writer = CopyWriter(CampaignsConfig(), None, brand=BRAND)
    copy = await writer.write(segment, [ANNIVERSARY, MILK])
    assert copy == Copy(rendered(DEFAULT_TEMPLATES[template], [ANNIVERSARY, MILK], segment),
                        f"template:{segment}", used_llm=False)  # fmt: skip
    assert "【禾町十周年店庆】\n活动时间：2026年12月18日至2026年12月31日" in copy.text
    assert "- 全场单笔满 300 元减 60 元，每单限减一次。" in copy.text  # verbatim
    assert "【鲜奶月卡】\n鲜奶月卡：每天一瓶禾町鲜牛奶" in copy.text  # title line kept: differs
    assert check_copy(copy.text, source=copy.text) == []
    await writer.aclose()


async def test_the_dormant_template_reads_as_a_win_back() -> None:
    copy = await CopyWriter(CampaignsConfig(), None, brand=BRAND).write("dormant", [MILK])
    assert copy.text.startswith("禾町生活想念您了！为您挑了这些优惠，欢迎回来看看：\n【鲜奶月卡】")


async def test_operator_templates_fill_every_placeholder() -> None:
    templates = {
        "dormant": "{brand}·{segment}：{title}，截至{valid_to}。{interest}\n{promotions}",
        "default": "{brand}本周活动：{title}（{valid_to}）",
    }
    writer = CopyWriter(CampaignsConfig(templates=templates), None, brand=BRAND)
    copy = await writer.write("dormant", [MILK, ANNIVERSARY], interest="乳品")
    assert copy.text.startswith(  # interest first, the earliest end date
        "禾町生活·dormant：鲜奶月卡、禾町十周年店庆，截至2026年12月31日。乳品\n【鲜奶月卡】"
    )
    # The operator's default wins over the built-in template of a segment they did not write.
    forever = replace(MILK, valid_to=None)
    active = await writer.write("active", [forever])
    assert active == Copy(
        f"禾町生活本周活动：鲜奶月卡（长期有效）{SUFFIX}", "template:active", False
    )


@pytest.mark.parametrize(
    ("template", "error"),
    [
        ("{brand}送您{coupon}", r"unknown placeholder \{coupon\}"),
        ("{}{promotions}", r"unknown placeholder \{\}"),
        ("{brand 优惠 {promotions}", "not a valid format string"),
        ("优惠}{promotions}", "not a valid format string"),
        ("{brand!r}{promotions}", "takes no format"),
        ("全城最低价！{promotions}", "not compliant.*最低价"),
        ("加微信转账有优惠{promotions}", "not compliant.*微信转账"),
        ("好" * 700 + "{promotions}", "leaves no room"),
    ],
)
def test_bad_operator_templates_fail_when_the_writer_is_built(template: str, error: str) -> None:
    config = CampaignsConfig(templates={"dormant": template}, sensitive_words=("微信转账",))
    with pytest.raises(ValueError, match=error) as raised:
        CopyWriter(config, None, brand=BRAND)
    assert "'dormant'" in str(raised.value)


async def test_an_absolute_term_in_the_promotion_text_is_rejected_at_write() -> None:
    bad = replace(MILK, doc_id="bad.md", text="全城最低价鲜奶月卡，月卡价格 399 元。")
    writer = CopyWriter(CampaignsConfig(), None, brand=BRAND)
    with pytest.raises(CopyRejected) as first:
        await writer.write("dormant", [bad])
    assert first.value.violations == (Violation("absolute", "最低价"),)
    with pytest.raises(CopyRejected):  # cached, still refused
        await writer.write("dormant", [bad])


async def test_the_brand_name_is_not_an_absolute_claim() -> None:
    copy = await CopyWriter(CampaignsConfig(), None, brand="第一百货").write("active", [MILK])
    assert copy.text.startswith("第一百货今日优惠：")


async def test_write_needs_a_promotion() -> None:
    with pytest.raises(ValueError, match="at least one promotion"):
        await CopyWriter(CampaignsConfig(), None, brand=BRAND).write("active", [])


# -- size --------------------------------------------------------------------------------------


def filler(doc_id: str, tag: str) -> Promotion:
    text = f"{doc_id}活动：会员购买指定商品可以享受会员价，每单限享一次，详情请咨询门店店员。" * 3
    return replace(MILK, doc_id=doc_id, title=doc_id, text=text, tags=(tag,))


async def test_promotions_are_dropped_from_the_end_to_fit_the_byte_limit() -> None:
    promotions = [filler(f"活动{n}", "其他") for n in range(5)] + [filler("牛奶节", "乳品")]
    writer = CopyWriter(CampaignsConfig(), None, brand=BRAND, max_bytes=1200)
    copy = await writer.write("active", promotions, interest="乳品")
    assert len(copy.text.encode()) <= 1200
    assert copy.text.endswith(SUFFIX)
    kept = re.findall(r"【(.+?)】", copy.text)
    assert kept == ["牛奶节", "活动0", "活动1"]  # the interest first, then in order, while they fit
    assert copy.text.endswith(promotions[1].text + SUFFIX)  # whole promotions, none cut


async def test_one_long_promotion_is_cut_at_a_sentence_boundary() -> None:
    sentences = [f"第{n}周购买鲜奶月卡立减{n + 10}元，仅限门店。" for n in range(1, 40)]
    long = replace(MILK, text="".join(sentences))
    writer = CopyWriter(CampaignsConfig(), None, brand=BRAND, max_bytes=600)
    copy = await writer.write("active", [long])
    assert len(copy.text.encode()) <= 600
    body = copy.text.removesuffix(SUFFIX)
    kept = body.split("\n", 2)[-1]
    assert kept.endswith("。…")
    assert long.text.startswith(kept.removesuffix("…"))
    assert len(kept) > len(sentences[0])  # as much as fits, not just one sentence
    assert [v for v in check_copy(copy.text, source=long.text) if v.kind == "fact"] == []


def test_shorten_prefers_sentences_then_clauses_and_never_splits_a_fact() -> None:
    text = "第一句话很短。第二句话也很短。第三句"
    assert shorten(text, 1000) == text
    assert shorten(text, len("第一句话很短。第二句".encode())) == "第一句话很短。…"
    clauses = "甲乙丙丁，戊己庚辛，壬癸"
    assert shorten(clauses, len("甲乙丙丁，戊己".encode())) == "甲乙丙丁，…"
    glued = "甲乙丙丁满300减60元好好好好"
    assert shorten(glued, len("甲乙丙丁满300…".encode())) == "甲乙丙丁…"
    assert shorten(glued, 2) == ""


# -- with an LLM -------------------------------------------------------------------------------


async def test_a_good_llm_draft_is_used(llm_writer: CopyWriter, openai_server: FakeOpenAI) -> None:
    openai_server.reply(GOOD_DRAFT)
    copy = await llm_writer.write("dormant", [ANNIVERSARY])
    assert copy == Copy(GOOD_DRAFT + SUFFIX, "llm:dormant", used_llm=True)
    [request] = openai_server.chat_requests
    assert request.body["model"] == "fake-chat"
    assert "禾町生活的会员营销文案助手" in request.text  # brand voice
    assert "逐字照抄" in request.text  # copy prices, dates and codes exactly
    assert "绝对化用语" in request.text
    assert "沉睡会员" in request.last_user_text  # the segment's win-back tone
    assert "- 全场单笔满 300 元减 60 元，每单限减一次。" in request.last_user_text
    assert "\n活动截止：2026年12月31日" in request.last_user_text


async def test_a_draft_with_an_absolute_term_is_regenerated(
    llm_writer: CopyWriter, openai_server: FakeOpenAI
) -> None:
    openai_server.reply("十周年店庆，全场最低价！满300减60。", GOOD_DRAFT)
    copy = await llm_writer.write("dormant", [ANNIVERSARY])
    assert copy.text == GOOD_DRAFT + SUFFIX
    first, second = openai_server.chat_requests
    assert "上一稿没有通过检查" not in first.last_user_text
    assert "上一稿没有通过检查" in second.last_user_text
    assert "绝对化用语“最低价”" in second.last_user_text


async def test_a_changed_price_three_times_falls_back_to_the_template(
    llm_writer: CopyWriter, openai_server: FakeOpenAI
) -> None:
    openai_server.reply(*["店庆全场满300元减50元，快来！"] * 3)
    copy = await llm_writer.write("dormant", [ANNIVERSARY])
    assert copy == Copy(rendered(DEFAULT_TEMPLATES["dormant"], [ANNIVERSARY], "dormant"),
                        "template:dormant", used_llm=False)  # fmt: skip
    assert len(openai_server.chat_requests) == 3
    assert all("满300减50" in r.last_user_text for r in openai_server.chat_requests[1:])


async def test_an_llm_timeout_falls_back_to_the_template(
    llm_writer: CopyWriter, openai_server: FakeOpenAI
) -> None:
    openai_server.delay(2.0, GOOD_DRAFT)
    copy = await llm_writer.write("lost", [MILK])
    assert (copy.variant, copy.used_llm) == ("template:lost", False)
    assert copy.text.endswith(SUFFIX)
    assert len(openai_server.chat_requests) == 1  # an error is not retried draft by draft


@pytest.mark.parametrize("mode", ["drip", "rate_limited", "garbage"])
async def test_an_llm_outage_falls_back_to_the_template_in_time(
    llm_writer: CopyWriter, openai_server: FakeOpenAI, mode: Outage
) -> None:
    """Copy calls the LLM the way answers do: one 0.5 s deadline for the whole call (a drip
    does not stretch it), no 60 s wait for a Retry-After, an HTML page read as a failure."""
    openai_server.outage(mode)
    started = time.monotonic()
    copy = await llm_writer.write("active", [MILK])
    assert time.monotonic() - started < 3.0
    assert (copy.variant, copy.used_llm) == ("template:active", False)


async def test_an_open_llm_breaker_writes_templates_without_asking(
    openai_server: FakeOpenAI,
) -> None:
    """The app's LLM breaker, opened by failing answers, also spares the campaign planner."""
    breaker = CircuitBreaker("the LLM", failures=1)
    breaker.failed()
    writer = CopyWriter(CampaignsConfig(), llm_config(openai_server), brand=BRAND, breaker=breaker)
    try:
        copy = await writer.write("active", [MILK])
    finally:
        await writer.aclose()
    assert copy.used_llm is False
    assert openai_server.chat_requests == []


async def test_an_llm_error_falls_back_to_the_template(
    llm_writer: CopyWriter, openai_server: FakeOpenAI
) -> None:
    openai_server.fail(500)
    copy = await llm_writer.write("at_risk", [MILK])
    assert (copy.variant, copy.used_llm) == ("template:at_risk", False)


async def test_the_opt_out_hint_is_added_once_by_the_writer(
    llm_writer: CopyWriter, openai_server: FakeOpenAI
) -> None:
    openai_server.reply(f"{GOOD_DRAFT}\n{OPT_OUT_HINT}", "", GOOD_DRAFT)
    with_hint = await llm_writer.write("dormant", [ANNIVERSARY])
    assert with_hint.text == GOOD_DRAFT + SUFFIX
    # An empty draft is refused and regenerated; the hint alone is never a message.
    retried = await llm_writer.write("active", [ANNIVERSARY])
    assert retried.text == GOOD_DRAFT + SUFFIX
    assert "内容为空" in openai_server.chat_requests[-1].last_user_text


async def test_copies_are_cached_per_segment_interest_and_promotions(
    llm_writer: CopyWriter, openai_server: FakeOpenAI
) -> None:
    milk_draft = "鲜奶月卡月卡价格399元，含30瓶禾町鲜牛奶，欢迎回来看看。"
    openai_server.reply(GOOD_DRAFT, milk_draft)
    first = await llm_writer.write("dormant", [ANNIVERSARY, MILK])
    again = await llm_writer.write("dormant", [ANNIVERSARY, MILK])
    assert first == again
    assert len(openai_server.chat_requests) == 1
    for_milk_lovers = await llm_writer.write("dormant", [ANNIVERSARY, MILK], interest="乳品")
    assert for_milk_lovers == Copy(milk_draft + SUFFIX, "llm:dormant:乳品", used_llm=True)
    request = openai_server.chat_requests[-1].last_user_text
    assert "会员兴趣：乳品" in request
    assert request.index("【鲜奶月卡】") < request.index("【禾町十周年店庆】")


async def test_an_llm_config_without_a_model_writes_templates(openai_server: FakeOpenAI) -> None:
    writer = CopyWriter(CampaignsConfig(), llm_config(openai_server, model=None), brand=BRAND)
    copy = await writer.write("new", [MILK])
    await writer.aclose()
    assert copy.variant == "template:new"
    assert openai_server.chat_requests == []


async def test_a_template_names_three_promotions_in_short() -> None:
    page = "活动时间：2026年12月18日至2026年12月31日。全场满300元减60元，每单限减一次。" + (
        "问：可以叠加吗？答：可以与会员日折扣同时使用，不与其他满减券同时使用。" * 6
    )
    titles = ["店庆", "年货", "鲜奶", "烘焙", "粮油"]
    promotions = [replace(MILK, doc_id=t, title=t, text=page) for t in titles]
    copy = await CopyWriter(CampaignsConfig(), None, brand=BRAND).write("active", promotions)
    assert re.findall(r"【(.+?)】", copy.text) == titles[:3]
    for block in copy.text.removesuffix(SUFFIX).split("【")[1:]:
        summary = block.split("\n", 1)[1].strip()
        assert summary.startswith("活动时间：2026年12月18日至2026年12月31日。全场满300元减60元")
        assert summary.endswith("…")
        assert len(summary.encode()) <= 360
    assert [v for v in check_copy(copy.text, source=page) if v.kind == "fact"] == []
