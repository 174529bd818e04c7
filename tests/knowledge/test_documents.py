"""PDF and DOCX documents that answer: sections by page and heading, table rows as entries, and
the extractive answer quoting them as plain text with one source line (real files, real Chroma
in a temp dir, the local embedding model)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.answer import extractive_answer
from bot.demo import DEMO_DIR
from knowledge.base import KnowledgeBase
from knowledge.config import EmbeddingConfig, KnowledgeConfig
from knowledge.loaders import load_bytes
from knowledge.types import Kind
from tests.knowledge.docmakers import Grid, Text, make_cjk_pdf, make_rich_docx

NOTICE_TITLE = "禾町生活门店营业公告"
HOLIDAY = "除夕（2月16日）营业时间为 9:00-18:00，18:00 准时关门。"
POINTS = (
    ("商品", "所需积分"),
    ("禾町环保购物袋", "500"),
    ("保温杯", "1500"),
    ("帆布托特包", "2000"),
)


def holiday_notice() -> bytes:
    """Normal hours on page 1; the Spring Festival hours under a heading on page 2."""
    return make_cjk_pdf(
        [
            [
                Text(NOTICE_TITLE, 20),
                Text("门店营业时间为每天 9:00-22:00，节假日照常营业。"),
                Text("会员凭手机号在收银台积分，积分可抵现。"),
            ],
            [
                Text("春节营业安排", 16),
                Text(HOLIDAY),
                Text("大年初一至初三营业时间为 10:00-20:00。"),
                Text("一、配送安排"),
                Text("春节期间暂停送货上门，初四恢复。"),
            ],
        ]
    )


def points_docx() -> bytes:
    return make_rich_docx(
        [
            ("heading0", "会员积分兑换"),
            ("para", "积分可兑换以下商品，请到门店服务台兑换。"),
            ("heading1", "兑换商品"),
            ("para", "积分兑换表："),
            ("table", POINTS),
            ("para", "兑换后的商品不退不换。"),
        ]
    )


# ---- loading -----------------------------------------------------------------------------------


def test_pdf_sections_follow_pages_and_headings() -> None:
    doc = load_bytes("notice.pdf", holiday_notice())
    assert doc.meta.title == NOTICE_TITLE  # the first heading: reportlab's "untitled" is ignored
    headings = [c.heading for c in doc.chunks]
    assert headings == [
        NOTICE_TITLE,
        f"{NOTICE_TITLE} > 春节营业安排",
        f"{NOTICE_TITLE} > 春节营业安排 > 一、配送安排",  # a numbered heading at the body size
    ]
    holiday = doc.chunks[1]
    assert holiday.text.startswith(f"{NOTICE_TITLE} > 春节营业安排\n")  # indexed with its path
    assert HOLIDAY in holiday.text
    assert "9:00-22:00" not in holiday.text  # normal hours stay on page 1


def test_pdf_metadata_title_wins_over_the_first_heading() -> None:
    pdf = make_cjk_pdf([[Text("春节营业安排", 16), Text(HOLIDAY)]], title="2027 春节公告")
    assert load_bytes("notice.pdf", pdf).meta.title == "2027 春节公告"


def test_pdf_table_rows_pair_header_and_cell() -> None:
    pdf = make_cjk_pdf([[Text("积分兑换", 16), Text("以下商品可用积分兑换。"), Grid(POINTS)]])
    doc = load_bytes("points.pdf", pdf)
    rows = [c for c in doc.chunks if c.answer]
    assert [c.answer for c in rows] == [
        "商品：禾町环保购物袋；所需积分：500",
        "商品：保温杯；所需积分：1500",
        "商品：帆布托特包；所需积分：2000",
    ]
    assert rows[1].heading == "积分兑换 > 保温杯"
    assert "保温杯" not in doc.chunks[0].text  # the table's text is not also prose


def test_docx_keeps_document_order_heading_styles_and_table_rows() -> None:
    doc = load_bytes("points.docx", points_docx())
    assert doc.meta.title == "会员积分兑换"
    table = "会员积分兑换 > 兑换商品 > 积分兑换表"
    assert [(c.heading, c.answer) for c in doc.chunks] == [
        ("会员积分兑换", ""),
        (f"{table} > 禾町环保购物袋", "商品：禾町环保购物袋；所需积分：500"),
        (f"{table} > 保温杯", "商品：保温杯；所需积分：1500"),
        (f"{table} > 帆布托特包", "商品：帆布托特包；所需积分：2000"),
        ("会员积分兑换 > 兑换商品", ""),
    ]
    assert doc.chunks[-1].text.endswith("兑换后的商品不退不换。")


def test_docx_core_title_and_a_record_table() -> None:
    data = make_rich_docx(
        [
            ("para", "本月新品如下。"),
            ("table", (("SKU", "商品名称", "售价"), ("SY-1024", "燕麦拿铁", "18元"))),
        ],
        title="新品速递",
    )
    doc = load_bytes("new.docx", data)
    assert doc.meta.title == "新品速递"
    [_, product] = doc.chunks
    assert product.meta is not None
    assert product.meta.kind is Kind.PRODUCT  # a product record
    assert product.value("price") == "18元"
    assert product.skus == ("SY-1024",)


def test_a_numbered_list_is_not_read_as_headings() -> None:
    pdf = make_cjk_pdf([[Text("退货须知", 16), Text("1. 签收后7天内可退"), Text("2. 凭小票办理")]])
    [chunk] = load_bytes("returns.pdf", pdf).chunks
    assert chunk.heading == "退货须知"
    assert chunk.text == "退货须知\n1. 签收后7天内可退\n2. 凭小票办理"


# ---- answering ---------------------------------------------------------------------------------


@pytest.fixture
async def kb(data_dir: Path, engine: AsyncEngine) -> AsyncIterator[KnowledgeBase]:
    config = KnowledgeConfig(data_dir=data_dir, embedding=EmbeddingConfig(backend="local"))
    base = await KnowledgeBase.open(config, engine)
    for other in ("membership.md", "returns-policy.md", "stores.md"):  # the brand's other texts
        await base.ingest_path(DEMO_DIR / other)
    yield base
    await base.close()


@pytest.mark.slow
async def test_new_years_eve_hours_come_from_the_holiday_section(kb: KnowledgeBase) -> None:
    await kb.ingest(load_bytes("门店公告.pdf", holiday_notice()))
    result = await kb.search("除夕几点关门")
    best = result.best
    assert best is not None
    assert result.found
    assert best.chunk.draft.heading == f"{NOTICE_TITLE} > 春节营业安排"
    answer = extractive_answer(result)
    text, source = answer.text.rsplit("\n", 1)
    assert HOLIDAY in text
    assert not text.startswith(NOTICE_TITLE)  # no breadcrumb in what the member reads
    assert source == f"（来源：{NOTICE_TITLE}）"
    assert ".pdf" not in answer.text


@pytest.mark.slow
async def test_the_holiday_section_beats_an_faq_variant_without_the_holiday(
    kb: KnowledgeBase,
) -> None:
    """The demo FAQ's 你们几点开门 lists 几点关门 as a variant: shorter and closer on both paths
    than the notice's section, but silent about 除夕, the word the member asks about."""
    await kb.ingest_path(DEMO_DIR / "faq.csv")
    await kb.ingest(load_bytes("门店公告.pdf", holiday_notice()))
    holiday = await kb.search("除夕几点关门")
    assert holiday.found
    assert holiday.best is not None
    assert holiday.best.chunk.draft.heading == f"{NOTICE_TITLE} > 春节营业安排"
    assert holiday.hits[1].chunk.draft.heading == "你们几点开门？"  # moved down, not dropped
    festival = await kb.search("春节几点关门")  # 春节 is in three chunks: the one with 关门 wins
    assert festival.best is not None
    assert festival.best.chunk.draft.heading == f"{NOTICE_TITLE} > 春节营业安排"
    everyday = await kb.search("几点关门")
    assert everyday.best is not None
    assert everyday.best.chunk.draft.heading == "你们几点开门？"


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["docx", "pdf"])
async def test_points_for_a_thermos_come_from_the_table_row(kb: KnowledgeBase, kind: str) -> None:
    if kind == "docx":
        data = points_docx()
    else:
        data = make_cjk_pdf([[Text("会员积分兑换", 18), Text("积分兑换规则如下。"), Grid(POINTS)]])
    await kb.ingest(load_bytes(f"积分兑换.{kind}", data))
    result = await kb.search("保温杯要多少积分")
    assert result.found
    assert result.best is not None
    assert result.best.chunk.draft.answer == "商品：保温杯；所需积分：1500"
    assert extractive_answer(result).text == "商品：保温杯；所需积分：1500\n（来源：会员积分兑换）"


WINTER_FAQ = """---
kind: faq
---
# 冬季常见问题

## 下雪天还送货吗？
大雪**橙色预警**时暂停配送，其余时间照常送货，可能延迟 30 分钟。详见[配送说明](https://example.com/d)。
"""

MEMBER_DAY = """---
kind: promotion
title: 会员日
---
# 会员日

## 会员日有哪些活动？
每月8号会员日当天：
- **全场9折**（特价商品除外）
- 积分双倍
* 满199元送环保袋
"""


@pytest.mark.slow
async def test_markdown_answers_show_the_content_as_plain_text(kb: KnowledgeBase) -> None:
    await kb.ingest(load_bytes("winter-faq.md", WINTER_FAQ.encode()))
    await kb.ingest(load_bytes("member-day.md", MEMBER_DAY.encode()))
    snow = extractive_answer(await kb.search("下雪天还送货吗"))
    assert snow.text == (
        "大雪橙色预警时暂停配送，其余时间照常送货，可能延迟 30 分钟。详见配送说明。\n"
        "（来源：冬季常见问题）"
    )  # no breadcrumb, no bold, the link's text only
    deals = extractive_answer(await kb.search("会员日有什么活动"))
    assert deals.text == (
        "每月8号会员日当天：\n· 全场9折（特价商品除外）\n· 积分双倍\n· 满199元送环保袋\n"
        "（来源：会员日）"
    )
    for text in (snow.text, deals.text):
        assert text.count("（来源：") == 1
        assert not any(mark in text for mark in ("- ", "#", "**", " > ", ".md", "http"))
