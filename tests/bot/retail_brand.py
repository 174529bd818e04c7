"""A small bakery-and-grocery brand as records, for the retail answer tests.

Built directly as documents (store and product rows with their fields, promotions with their
metadata) so these tests do not depend on the file loaders; tests/knowledge covers those. Dates
are relative to :data:`NOW` (Shanghai time): expired, current, future, today-only and
store-scoped promotions.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from knowledge.base import KnowledgeBase
from knowledge.loaders.hashing import content_hash
from knowledge.loaders.markdown import qa_draft
from knowledge.types import ChunkDraft, DocumentMeta, Kind, SourceDocument

SH = ZoneInfo("Asia/Shanghai")
NOW = datetime(2026, 3, 10, 10, 0, tzinfo=SH)
DAY = timedelta(days=1)

STORES = [
    ("bj-cy", "北京朝阳店", "北京市朝阳区建国路8号", "每天07:30-21:00", "010-65001111", "商场停车场，消费满80元免费停车1小时"),
    ("bj-hd", "北京海淀店", "北京市海淀区中关村大街27号", "周一至周五08:00-21:00，周末08:00-22:00", "010-62002222", ""),
    ("tj-hp", "天津和平店", "天津市和平区南京路120号", "每天09:00-20:30", "022-23003333", "路边停车位，按时收费"),
]  # fmt: skip
PRODUCTS = [
    ("MB-101", "全麦吐司", "400g", "18", "面包"),
    ("MB-102", "法式长棍面包", "1根", "12.5", "面包"),
    ("MB-201", "记忆棉枕头", "1个", "129", "家居"),
    ("MB-301", "云南蓝莓", "125g×2盒", "39.9", "水果"),
    ("MB-302", "丹东草莓", "500g", "59", "水果"),
    ("MB-401", "燕麦拿铁", "350ml", "22", "饮品"),
]
FAQ = [
    ("怎么办会员卡？", "在收银台报手机号即可免费办理会员卡。"),
    ("蛋糕可以提前预订吗？", "生日蛋糕需提前24小时在小程序预订，门店自提。"),
    ("会员积分怎么用？", "每100积分抵1元，结账时告诉收银员即可。"),
]


def _promos() -> list[tuple[str, str, tuple[str, ...], datetime, datetime, tuple[str, ...]]]:
    # (title, text, stores, from, to, skus)
    return [
        ("春节年货大促", "春节年货大促：全场满200减40。", (), NOW - 40 * DAY, NOW - 9 * DAY, ()),
        ("莓果季", "莓果季：云南蓝莓限时特价29.9元，丹东草莓第二盒半价。", (), NOW - 2 * DAY, NOW + 12 * DAY, ("MB-301", "MB-302")),
        ("朝阳店周年庆", "朝阳店周年庆：仅限北京朝阳店，面包满50元送燕麦拿铁一杯。", ("bj-cy",), NOW - DAY, NOW + 5 * DAY, ()),
        ("北京门店早餐券", "北京门店早餐券：07:00-10:00 购买全麦吐司立减5元。", ("bj-cy", "bj-hd"), NOW - 3 * DAY, NOW + 20 * DAY, ("MB-101",)),
        ("清明踏青节", "清明踏青节：饮品全场8折。", (), NOW + 20 * DAY, NOW + 27 * DAY, ()),
        ("今日枕头特惠", "今日枕头特惠：记忆棉枕头今天仅需99元。", (), NOW.replace(hour=0), NOW.replace(hour=23, minute=59), ("MB-201",)),
    ]  # fmt: skip


def _doc(meta: DocumentMeta, *drafts: ChunkDraft) -> SourceDocument:
    return SourceDocument(meta, drafts, content_hash(meta, drafts))


def store_doc() -> SourceDocument:
    keys = ("store_id", "name", "address", "hours", "phone", "parking")
    drafts = [
        ChunkDraft(
            text="\n".join(row[1:]),
            index_texts=(row[1],),
            fields=tuple(zip(keys, row, strict=False)),
        )
        for row in STORES
    ]
    return _doc(DocumentMeta(source="stores.csv", kind=Kind.STORE), *drafts)


def product_doc() -> SourceDocument:
    keys = ("sku", "name", "spec", "price", "category")
    drafts = [
        ChunkDraft(
            text=f"商品：{row[1]}（货号 {row[0]}），价格：{row[3]}元",
            index_texts=(row[1], row[0]),
            heading=row[1],
            skus=(row[0],),
            fields=tuple(zip(keys, row, strict=False)),
        )
        for row in PRODUCTS
    ]
    return _doc(DocumentMeta(source="products.csv", kind=Kind.PRODUCT), *drafts)


def promotion_docs() -> list[SourceDocument]:
    docs = []
    for title, text, stores, start, end, skus in _promos():
        meta = DocumentMeta(
            source=f"{title}.md", kind=Kind.PROMOTION, title=title, stores=stores,
            valid_from=start, valid_to=end, skus=skus,
        )  # fmt: skip
        docs.append(_doc(meta, ChunkDraft(text=text, heading=title)))
    return docs


async def seed_brand(kb: KnowledgeBase) -> None:
    """Stores, products, promotions and a few FAQ entries."""
    faq = DocumentMeta(source="faq.csv", title="常见问题")
    await kb.ingest(_doc(faq, *(qa_draft(q, a) for q, a in FAQ)))
    await kb.ingest(store_doc())
    await kb.ingest(product_doc())
    for doc in promotion_docs():
        await kb.ingest(doc)
