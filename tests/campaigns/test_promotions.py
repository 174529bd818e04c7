"""Promotions for campaigns: chunks grouped back into documents, validity and store scope."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from campaigns.promotions import Promotion, day_window, promotions_from_chunks, valid_promotions
from knowledge.base import KnowledgeBase, chunk_id
from knowledge.config import EmbeddingConfig, KnowledgeConfig
from knowledge.loaders import load_path
from knowledge.metadata import MetaOverrides
from knowledge.types import Chunk, ChunkDraft, DocumentMeta, Kind
from tests.sql import migrated

SHANGHAI = ZoneInfo("Asia/Shanghai")
DEMO = Path(__file__).resolve().parents[2] / "bot" / "demo" / "promotions"


def local(
    year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0, us: int = 0
) -> datetime:
    return datetime(year, month, day, hour, minute, second, us, tzinfo=SHANGHAI)


def chunk(doc_id: str, ordinal: int, text: str, meta: DocumentMeta, heading: str = "") -> Chunk:
    draft = ChunkDraft(text=text, heading=heading)
    return Chunk(chunk_id(doc_id, 1, ordinal), doc_id, 1, ordinal, draft, meta)


def promo(
    doc_id: str,
    *,
    stores: tuple[str, ...] = (),
    valid_from: datetime | None = None,
    valid_to: datetime | None = None,
) -> Promotion:
    return Promotion(
        doc_id=doc_id, title=doc_id, text=f"{doc_id}的活动", stores=stores,
        valid_from=valid_from, valid_to=valid_to, tags=(), source=f"{doc_id}.md",
    )  # fmt: skip


ANNIVERSARY = DocumentMeta(
    source="anniversary.md", kind=Kind.PROMOTION, title="十周年店庆", tags=("店庆",),
    valid_from=local(2026, 12, 18), valid_to=local(2026, 12, 31, 23, 59, 59, 999999),
)  # fmt: skip


def test_chunks_of_one_document_are_joined_in_ordinal_order() -> None:
    faq = DocumentMeta(source="faq.md", kind=Kind.FAQ)
    eggs = DocumentMeta(source="eggs.md", kind=Kind.PROMOTION, stores=("hz-xihu",))
    chunks = [
        chunk("anniversary.md", 1, "全场满300减60。", ANNIVERSARY),
        chunk("faq.md", 0, "问：几点开门？\n答：10:00。", faq),
        chunk("eggs.md", 0, "鸡蛋特价29.90元。", eggs, heading="鸡蛋特价"),
        chunk("anniversary.md", 0, "活动时间：2026年12月18日起。", ANNIVERSARY),
    ]
    [anniversary, egg_deal] = promotions_from_chunks(chunks)
    assert anniversary == Promotion(
        doc_id="anniversary.md", title="十周年店庆",
        text="活动时间：2026年12月18日起。\n全场满300减60。", stores=(),
        valid_from=ANNIVERSARY.valid_from, valid_to=ANNIVERSARY.valid_to, tags=("店庆",),
        source="anniversary.md", citation=anniversary.citation,
    )  # fmt: skip
    assert (egg_deal.doc_id, egg_deal.title, egg_deal.stores) == (
        "eggs.md",
        "鸡蛋特价",
        ("hz-xihu",),
    )


def test_rows_with_their_own_metadata_are_separate_promotions() -> None:
    sheet = DocumentMeta(source="deals.csv", kind=Kind.PROMOTION, title="牛奶")
    other = DocumentMeta(
        source="deals.csv", kind=Kind.PROMOTION, title="面包", stores=("sh-xuhui",)
    )
    chunks = [
        chunk("deals.csv", 0, "牛奶第二件半价", sheet),
        chunk("deals.csv", 1, "面包满2件9折", other),
    ]
    promotions = promotions_from_chunks(chunks)
    assert [(p.doc_id, p.title, p.stores, p.text) for p in promotions] == [
        ("deals.csv#0", "牛奶", (), "牛奶第二件半价"),
        ("deals.csv#1", "面包", ("sh-xuhui",), "面包满2件9折"),
    ]


def test_long_sections_are_joined_without_repeated_headings_or_overlap(tmp_path: Path) -> None:
    sentences = [
        f"第{n}条：会员购买指定商品满{100 + n}元可以参加本次活动的抽奖。" for n in range(30)
    ]
    path = tmp_path / "long.md"
    path.write_text(
        "---\nkind: promotion\n---\n# 长活动\n\n## 活动规则\n\n" + "".join(sentences),
        encoding="utf-8",
    )
    doc = load_path(path, MetaOverrides())
    assert len(doc.chunks) > 2  # the chunker packed the section with overlap
    chunks = [
        Chunk(chunk_id("long.md", 1, i), "long.md", 1, i, draft, doc.meta)
        for i, draft in enumerate(doc.chunks)
    ]
    [promotion] = promotions_from_chunks(chunks)
    assert promotion.text.startswith("长活动 > 活动规则\n第0条")
    assert promotion.text.count("活动规则") == 1
    for sentence in sentences:
        assert promotion.text.count(sentence) == 1


@pytest.mark.parametrize(
    ("day", "valid"),
    [
        (date(2026, 12, 17), False),  # the day before it starts
        (date(2026, 12, 18), True),  # starts at local midnight
        (date(2026, 12, 31), True),  # its last day
        (date(2027, 1, 1), False),  # ended at 23:59:59.999999 the day before
    ],
)
def test_validity_at_the_day_boundaries(day: date, valid: bool) -> None:
    [anniversary] = promotions_from_chunks([chunk("a.md", 0, "店庆", ANNIVERSARY)])
    start, end = day_window(day, SHANGHAI)
    chosen = valid_promotions([anniversary], store_id=None, start=start, end=end)
    assert chosen == ([anniversary] if valid else [])


def test_bounds_are_inclusive_and_a_future_promotion_is_never_chosen() -> None:
    ends = local(2026, 12, 31, 23, 59, 59, 999999)
    deal = promo("deal", valid_from=local(2026, 12, 18, 10), valid_to=ends)
    assert valid_promotions([deal], store_id=None, start=local(2026, 12, 18, 10)) == [deal]
    assert valid_promotions([deal], store_id=None, start=ends) == [deal]
    late = ends + timedelta(microseconds=1)
    assert valid_promotions([deal], store_id=None, start=late) == []
    # Starts at 10:00: not one of the day's deals when the day starts at midnight.
    start, end = day_window(date(2026, 12, 18), SHANGHAI)
    assert valid_promotions([deal], store_id=None, start=start, end=end) == []


def test_store_scope() -> None:
    chain = promo("chain")
    xihu = promo("xihu", stores=("hz-xihu",))
    xuhui = promo("xuhui", stores=("sh-xuhui",))
    everything = [chain, xihu, xuhui]
    at = local(2026, 12, 20, 9)
    assert valid_promotions(everything, store_id="hz-xihu", start=at) == [chain, xihu]
    assert valid_promotions(everything, store_id="sh-xuhui", start=at) == [chain, xuhui]
    assert valid_promotions(everything, store_id=None, start=at) == [chain]
    assert valid_promotions(everything, store_id="bj-chaoyang", start=at) == [chain]


def test_bad_windows_are_refused() -> None:
    at = local(2026, 12, 20, 9)
    with pytest.raises(ValueError, match="aware"):
        valid_promotions([], store_id=None, start=datetime(2026, 12, 20, 9))
    with pytest.raises(ValueError, match="before it starts"):
        valid_promotions([], store_id=None, start=at, end=at - timedelta(hours=1))


def test_day_window_is_local_midnight_to_midnight_in_utc() -> None:
    assert day_window(date(2026, 12, 18), SHANGHAI) == (
        datetime(2026, 12, 17, 16, tzinfo=UTC),
        datetime(2026, 12, 18, 16, tzinfo=UTC),
    )
    # The day clocks spring forward in New York has 23 hours.
    start, end = day_window(date(2026, 3, 8), ZoneInfo("America/New_York"))
    assert (start, end - start) == (datetime(2026, 3, 8, 5, tzinfo=UTC), timedelta(hours=23))


@pytest.fixture
async def knowledge(data_dir: Path) -> AsyncIterator[KnowledgeBase]:
    """A real knowledge base (hash embeddings, SQLite, Chroma in data_dir) with the demo's
    promotions and one FAQ document."""
    engine = await migrated(f"sqlite+aiosqlite:///{data_dir / 'knowledge.db'}")
    config = KnowledgeConfig(data_dir=data_dir, embedding=EmbeddingConfig(backend="hash"))
    kb = await KnowledgeBase.open(config, engine)
    try:
        for path in sorted(DEMO.glob("*.md")):
            await kb.ingest_path(path)
        await kb.ingest_path(DEMO.parent / "membership.md")
        yield kb
    finally:
        await kb.close()
        await engine.dispose()


async def test_demo_promotions_from_a_real_knowledge_base(knowledge: KnowledgeBase) -> None:
    promotions = promotions_from_chunks(knowledge.active_chunks(kind=Kind.PROMOTION))
    assert len(promotions) == len(list(DEMO.glob("*.md")))
    by_id = {p.doc_id: p for p in promotions}
    wednesday = by_id["member-wednesday.md"]
    assert wednesday.title == "每周三会员日"
    assert wednesday.text.startswith("每周三会员日：全场 9.5 折\n禾町生活的会员日是每周三。")
    # the FAQ section comes last, its answer only: a push never reads "问：…答：…"
    assert wednesday.text.endswith("婴幼儿奶粉和特价商品不参与折扣。")
    assert "问：" not in wednesday.text

    start, end = day_window(date(2026, 12, 20), SHANGHAI)
    xihu = {p.doc_id for p in valid_promotions(promotions, store_id="hz-xihu", start=start)}
    assert "anniversary.md" in xihu  # 12-18 .. 12-31
    assert "xihu-saturday-eggs.md" in xihu  # that store's own deal
    assert "xuhui-evening-bakery.md" not in xihu  # another store's
    assert "grain-oil-festival.md" not in xihu  # ended 10-31
    chain = {p.doc_id for p in valid_promotions(promotions, store_id=None, start=start, end=end)}
    assert chain == xihu - {"xihu-saturday-eggs.md"}
