"""Operators' retail files load as store, product and promotion records, or are refused clearly.

Every file is written to ``tmp_path`` (CSV in UTF-8 and GBK, XLSX through openpyxl, Markdown with
front matter and with pipe tables) and loaded from disk; the records are read back with
:mod:`knowledge.records`, the way the knowledge base builds its catalogue.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import AsyncIterator, Sequence
from datetime import date, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from knowledge.base import KnowledgeBase
from knowledge.config import EmbeddingConfig, KnowledgeConfig
from knowledge.errors import KnowledgeError, LoaderError, MetadataError
from knowledge.loaders import MetaOverrides, load_path
from knowledge.records import (
    Product,
    Promotion,
    Store,
    StoreDirectory,
    product_of,
    promotions_from_chunks,
    store_of,
)
from knowledge.types import Chunk, Kind, SourceDocument
from tests.knowledge.filemakers import write_xlsx
from tests.sql import migrated

SH = ZoneInfo("Asia/Shanghai")

STORES_CSV = """门店编号,门店名称,地址,营业时间,电话,停车
sz-nanshan,深圳南山店,深圳市南山区科技园南路88号,每天08:00-22:00,0755-86001234,地下停车场，购物满100元免费停车2小时
sz-futian,深圳福田店,深圳市福田区福华三路168号,周一至周五09:00-22:00，周六日09:00-22:30,0755-83005678,本店无停车场
gz-tianhe,广州天河店,广州市天河区天河路385号,每天09:00-22:00,020-38001122,商场停车场
"""

PRODUCTS_CSV = """SKU,商品名称,规格,售价（元）,类目
YJ-F-1001,智利车厘子,2斤装,159,水果
YJ-F-1002,海南香蕉,1斤,3.99,水果
"""

PROMOTIONS_CSV = """活动名称,活动内容,开始日期,结束日期,适用门店,SKU,类目
冬日鲜享周,全场生鲜满88减15。,2026-12-03,2026-12-12,全部门店,,生鲜
深圳门店包邮周,线上订单满150元免运费。,2026/11/30,2026年12月15日,深圳南山店、深圳福田店,,
车厘子限时特价,智利车厘子限时特价129元。,2026-12-02,2026-12-08,sz-nanshan,YJ-F-1001,水果
"""


def write(tmp_path: Path, name: str, text: str, encoding: str = "utf-8") -> Path:
    path = tmp_path / name
    path.write_bytes(text.encode(encoding))
    return path


def chunks(doc: SourceDocument) -> list[Chunk]:
    """The document's chunks as the knowledge base would store them."""
    return [
        Chunk(f"{doc.meta.source}#{i}", doc.meta.source, 1, i, d, d.meta or doc.meta)
        for i, d in enumerate(doc.chunks)
    ]


def stores_of(doc: SourceDocument) -> list[Store]:
    return [s for c in chunks(doc) if c.meta.kind is Kind.STORE and (s := store_of(c))]


def values(store: Store) -> tuple[str | tuple[str, ...], ...]:
    """A store record's values (not where it came from, which records.py may describe)."""
    return (
        store.store_id, store.name, store.city, store.address, store.hours, store.phone,
        store.parking, store.notes, store.aliases,
    )  # fmt: skip


def products_of(doc: SourceDocument) -> list[tuple[str, str, str, str, str, tuple[str, ...]]]:
    found: list[Product] = [
        p for c in chunks(doc) if c.meta.kind is Kind.PRODUCT and (p := product_of(c))
    ]
    return [(p.sku, p.name, p.price, p.spec, p.category, p.aliases) for p in found]


def promotions_of(*docs: SourceDocument) -> list[Promotion]:
    return promotions_from_chunks([c for doc in docs for c in chunks(doc)])


def day(y: int, m: int, d: int, *, end: bool = False) -> datetime:
    if end:
        return datetime(y, m, d, 23, 59, 59, 999999, tzinfo=SH)
    return datetime(y, m, d, tzinfo=SH)


@pytest.fixture
def directory(tmp_path: Path) -> StoreDirectory:
    return StoreDirectory(stores_of(load_path(write(tmp_path, "stores.csv", STORES_CSV))))


# --- stores ---------------------------------------------------------------------------------


@pytest.mark.parametrize("encoding", ["utf-8", "utf-8-sig", "gbk"])
def test_store_csv_becomes_store_records(tmp_path: Path, encoding: str) -> None:
    doc = load_path(write(tmp_path, "stores.csv", STORES_CSV, encoding))
    assert doc.meta.kind is Kind.STORE
    nanshan, futian, tianhe = stores_of(doc)
    assert (nanshan.store_id, nanshan.name, nanshan.city, nanshan.hours, nanshan.phone) == (
        "sz-nanshan",
        "深圳南山店",
        "深圳",  # from the address
        "每天08:00-22:00",
        "0755-86001234",
    )
    assert futian.parking == "本店无停车场"
    assert tianhe.address == "广州市天河区天河路385号"
    assert doc.chunks[0].text == (
        "深圳南山店\n地址：深圳市南山区科技园南路88号\n营业时间：每天08:00-22:00\n"
        "电话：0755-86001234\n停车：地下停车场，购物满100元免费停车2小时"
    )
    assert doc.chunks[0].index_texts[0] == "深圳南山店"
    assert doc.chunks[0].skus == ()  # a phone number is not a product code


def test_store_table_with_english_headers_aliases_and_notes(tmp_path: Path) -> None:
    text = (
        "Store ID,Store Name,Aliases,City,Address,Opening Hours,Tel,Parking,备注,服务\n"
        "hz-xihu,西湖店,文三路店|西湖旗舰店,杭州,文三路478号,08:00-21:30,0571-88012203,,"
        "周一闭店盘点,现烤烘焙\n"
    )
    (store,) = stores_of(load_path(write(tmp_path, "门店.csv", text)))
    assert values(store) == values(
        Store(
            store_id="hz-xihu",
            name="西湖店",
            city="杭州",
            address="文三路478号",
            hours="08:00-21:30",
            phone="0571-88012203",
            notes="周一闭店盘点\n现烤烘焙",  # two free-text columns, one per line
            aliases=("文三路店", "西湖旗舰店"),
        )
    )
    assert StoreDirectory([store]).resolve("西湖旗舰店") == "hz-xihu"


def test_store_xlsx_with_a_title_row_and_a_number_column(tmp_path: Path) -> None:
    path = write_xlsx(
        tmp_path / "门店信息.xlsx",
        {
            "门店": [
                ["柚见生活门店信息表"],
                ["序号", "店名", "门店地址", "联系电话", "停车信息"],
                [1, "佛山千灯湖店", "佛山市南海区灯湖东路1号", "0757-86661234", "免费停车"],
            ]
        },
    )
    doc = load_path(path)
    (store,) = stores_of(doc)
    assert (store.store_id, store.name, store.city, store.parking) == (
        "佛山千灯湖店",  # no id column: the name is the id
        "佛山千灯湖店",
        "佛山",
        "免费停车",
    )
    assert doc.chunks[0].meta is not None
    assert doc.chunks[0].meta.source == "门店信息.xlsx"


# --- products -------------------------------------------------------------------------------


@pytest.mark.parametrize("encoding", ["utf-8", "gbk"])
def test_product_csv_one_record_per_row_with_prices(tmp_path: Path, encoding: str) -> None:
    doc = load_path(write(tmp_path, "products.csv", PRODUCTS_CSV, encoding))
    assert doc.meta.kind is Kind.PRODUCT
    assert products_of(doc) == [
        ("YJ-F-1001", "智利车厘子", "159", "2斤装", "水果", ()),
        ("YJ-F-1002", "海南香蕉", "3.99", "1斤", "水果", ()),
    ]
    cherry = doc.chunks[0]
    assert cherry.text == "商品：智利车厘子（货号 YJ-F-1001），价格：159元，规格：2斤装，类别：水果"
    assert (cherry.index_texts, cherry.skus) == (("智利车厘子", "YJ-F-1001"), ("YJ-F-1001",))


def test_product_xlsx_numbers_aliases_and_chinese_synonyms(tmp_path: Path) -> None:
    path = write_xlsx(
        tmp_path / "商品.xlsx",
        {
            "商品": [
                ["货号", "品名", "别名", "零售价", "品类", "产地"],
                ["yj-d-2001", "柚见鲜牛奶", "鲜奶、牛奶", 16.8, "乳品", "内蒙古"],
                [690123, "东北五常大米", None, 69.0, "粮油", None],
            ]
        },
    )
    doc = load_path(path)
    assert products_of(doc) == [
        ("YJ-D-2001", "柚见鲜牛奶", "16.8", "", "乳品", ("鲜奶", "牛奶")),
        ("690123", "东北五常大米", "69", "", "粮油", ()),
    ]
    milk = doc.chunks[0]
    assert milk.text == (
        "商品：柚见鲜牛奶（货号 YJ-D-2001），价格：16.8元，类别：乳品，产地：内蒙古，"
        "别名：鲜奶、牛奶"
    )
    assert milk.index_texts == ("柚见鲜牛奶", "鲜奶", "牛奶", "YJ-D-2001")
    assert milk.value("origin") == "内蒙古"


def test_product_rows_may_carry_a_store_scope(tmp_path: Path, directory: StoreDirectory) -> None:
    text = "门店,SKU,商品名称,售价\n南山店,YJ-F-1001,智利车厘子,149\n,YJ-F-1001,智利车厘子,159\n"
    doc = load_path(write(tmp_path, "价目.csv", text), stores=directory)
    nanshan, everywhere = doc.chunks
    assert nanshan.meta is not None
    assert everywhere.meta is not None
    assert (nanshan.meta.stores, nanshan.meta.kind) == (("sz-nanshan",), Kind.PRODUCT)
    assert everywhere.meta.stores == ()


# --- promotions -----------------------------------------------------------------------------


def test_promotion_csv_scopes_resolve_to_store_ids(
    tmp_path: Path, directory: StoreDirectory
) -> None:
    doc = load_path(write(tmp_path, "promotions.csv", PROMOTIONS_CSV), stores=directory)
    assert doc.meta.kind is Kind.PROMOTION
    winter, shenzhen, cherry = promotions_of(doc)
    assert (winter.title, winter.text, winter.stores, winter.category) == (
        "冬日鲜享周",
        "全场生鲜满88减15。",
        (),  # 全部门店
        "生鲜",
    )
    assert (winter.valid_from, winter.valid_to) == (day(2026, 12, 3), day(2026, 12, 12, end=True))
    assert shenzhen.stores == ("sz-nanshan", "sz-futian")
    assert (shenzhen.valid_from, shenzhen.valid_to) == (
        day(2026, 11, 30),
        day(2026, 12, 15, end=True),
    )
    assert (cherry.stores, cherry.skus, cherry.category) == (
        ("sz-nanshan",),
        ("YJ-F-1001",),
        "水果",
    )
    assert doc.chunks[0].heading == "冬日鲜享周"


def test_without_a_directory_scopes_are_kept_as_written(tmp_path: Path) -> None:
    doc = load_path(write(tmp_path, "promotions.csv", PROMOTIONS_CSV))
    assert [p.stores for p in promotions_of(doc)] == [
        (),
        ("深圳南山店", "深圳福田店"),
        ("sz-nanshan",),
    ]


def test_promotion_xlsx_date_cells_and_a_period_column(tmp_path: Path) -> None:
    path = write_xlsx(
        tmp_path / "活动.xlsx",
        {
            "活动": [
                ["活动", "内容", "开始", "结束", "门店"],
                ["年货节", "礼盒8折", datetime(2027, 1, 10), date(2027, 1, 20), "all"],
                ["早市", None, datetime(2027, 1, 1, 7, 30), datetime(2027, 1, 2, 9, 0), None],
            ],
            "活动2": [
                ["活动名称", "活动时间", "标签"],
                ["周末特惠", "2027-01-02 至 2027-01-03", "周末、特价"],
            ],
        },
    )
    festival, market, weekend = promotions_of(load_path(path))
    assert (festival.text, festival.valid_from, festival.valid_to) == (
        "礼盒8折",
        day(2027, 1, 10),
        day(2027, 1, 20, end=True),  # a date cell means the whole day
    )
    assert (market.title, market.text) == ("早市", "早市")  # no text: the title is the text
    assert market.valid_to == datetime(2027, 1, 2, 9, 0, tzinfo=SH)
    assert (weekend.valid_from, weekend.valid_to, weekend.tags) == (
        day(2027, 1, 2),
        day(2027, 1, 3, end=True),
        ("周末", "特价"),
    )


def test_a_kind_column_makes_a_promotion_table(tmp_path: Path) -> None:
    text = "标题,内容,类型\n会员日,每周三95折。,活动\n退货,7天无理由。,政策\n"
    doc = load_path(write(tmp_path, "rules.csv", text))
    (member_day,) = promotions_of(doc)
    assert (member_day.title, member_day.text) == ("会员日", "每周三95折。")
    policy = doc.chunks[1].meta
    assert policy is not None
    assert policy.kind is Kind.POLICY


def test_a_workbook_with_stores_products_and_an_instructions_sheet(tmp_path: Path) -> None:
    path = write_xlsx(
        tmp_path / "全部资料.xlsx",
        {
            "填写说明": [["请按模板填写，不要修改表头。"]],
            "门店": [["门店编号", "门店名称", "营业时间"], ["sz-nanshan", "深圳南山店", "8-22"]],
            "商品": [["SKU", "名称", "价格"], ["YJ-F-1001", "智利车厘子", 159]],
        },
    )
    doc = load_path(path)
    assert doc.meta.kind is Kind.STORE  # the first table's kind
    assert [s.store_id for s in stores_of(doc)] == ["sz-nanshan"]
    assert products_of(doc) == [("YJ-F-1001", "智利车厘子", "159", "", "", ())]


def test_a_workbook_names_its_own_stores_in_its_promotions(tmp_path: Path) -> None:
    sheets: dict[str, list[list[object]]] = {
        "活动": [["活动名称", "适用门店"], ["南山夜市", "南山店"]],
        "门店": [
            ["门店编号", "门店名称", "地址"],
            ["sz-nanshan", "深圳南山店", "深圳市南山区科技园"],
        ],
    }
    doc = load_path(write_xlsx(tmp_path / "book.xlsx", sheets))  # no directory loaded yet
    (night,) = promotions_of(doc)
    assert night.stores == ("sz-nanshan",)
    assert doc.meta.kind is Kind.PROMOTION  # the first sheet's kind, though stores load first
    sheets["活动"].append(["宝安夜市", "宝安店"])
    with pytest.raises(MetadataError, match=r"book\.xlsx 活动 row 3, column 适用门店: unknown"):
        load_path(write_xlsx(tmp_path / "book.xlsx", sheets))


def test_json_store_list(tmp_path: Path) -> None:
    text = '[{"store_id": "sz-nanshan", "name": "南山店", "phone": "0755-1", "aliases": ["南山"]}]'
    (store,) = stores_of(load_path(write(tmp_path, "stores.json", text)))
    assert (store.store_id, store.phone, store.aliases) == ("sz-nanshan", "0755-1", ("南山",))


# --- Markdown -------------------------------------------------------------------------------

STORE_MD = """---
kind: store
store_id: sz-nanshan
name: 深圳南山店
address: 深圳市南山区科技园南路88号
hours: 每天08:00-22:00
phone: 0755-86001234
parking: 地下停车场
aliases: [南山旗舰店, 科技园店]
city: 深圳
---
# 深圳南山店

店内有现烤烘焙区。
"""


def test_markdown_front_matter_store_record(tmp_path: Path) -> None:
    doc = load_path(write(tmp_path, "sz-nanshan.md", STORE_MD))
    assert doc.meta.kind is Kind.STORE
    (store,) = stores_of(doc)
    assert values(store) == values(
        Store(
            store_id="sz-nanshan",
            name="深圳南山店",
            city="深圳",
            address="深圳市南山区科技园南路88号",
            hours="每天08:00-22:00",
            phone="0755-86001234",
            parking="地下停车场",
            aliases=("南山旗舰店", "科技园店"),
        )
    )
    assert doc.chunks[1].text == "深圳南山店\n店内有现烤烘焙区。"  # the body stays prose


def test_markdown_front_matter_product_record_with_chinese_keys(tmp_path: Path) -> None:
    text = "---\n类型: 商品\n货号: YJ-S-5001\n商品名称: 每日坚果礼盒\n售价: 168\n规格: 1.2kg\n---\n"
    doc = load_path(write(tmp_path, "nuts.md", text))
    assert products_of(doc) == [("YJ-S-5001", "每日坚果礼盒", "168", "1.2kg", "", ())]


@pytest.mark.parametrize(
    "scope",
    [
        "store_id: sz-nanshan,sz-futian",
        "stores: [sz-nanshan, 深圳福田店]",
        "适用门店: 深圳南山店、深圳福田店",
        "门店: 南山店 福田",
    ],
)
def test_markdown_promotion_scope_is_a_list(
    tmp_path: Path, directory: StoreDirectory, scope: str
) -> None:
    text = (
        f"---\nkind: promotion\ntitle: 包邮周\n{scope}\n开始日期: 2026-11-30\n"
        "结束日期: 2026-12-15\n类目: 配送\n---\n# 包邮周\n\n满150元免运费。\n"
    )
    doc = load_path(write(tmp_path, "p-shenzhen.md", text), stores=directory)
    (promotion,) = promotions_of(doc)
    assert (promotion.title, promotion.stores, promotion.category) == (
        "包邮周",
        ("sz-nanshan", "sz-futian"),
        "配送",
    )
    assert (promotion.valid_from, promotion.valid_to) == (
        day(2026, 11, 30),
        day(2026, 12, 15, end=True),
    )


MENU_MD = """---
kind: policy
tags: [价目]
---
# 本周价目

下面是本周的商品：

| 货号 | 商品名称 | 售价 | 规格 |
| --- | --- | ---: | --- |
| YJ-F-1001 | 智利车厘子 | 159 | 2斤装 |
| YJ-F-1002 | 海南香蕉 | 3.99 | 1斤 |

## 门店

| 门店名称 | 地址 | 营业时间 |
|---|---|---|
| 深圳南山店 | 科技园南路88号 | 08:00-22:00 |

## 常见问题

问题 | 答案
--- | ---
能开发票吗？ | 可以，在小程序申请。

## 运费

| 项目 | 费用 |
|---|---|
| 配送费 | 5元 |

```
| 货号 | 商品名称 | 售价 |
| --- | --- | --- |
| X-100 | 代码示例 | 1 |
```
"""


def test_markdown_pipe_tables_of_records_and_other_tables(tmp_path: Path) -> None:
    doc = load_path(write(tmp_path, "menu.md", MENU_MD))
    assert doc.meta.kind is Kind.POLICY
    assert products_of(doc) == [
        ("YJ-F-1001", "智利车厘子", "159", "2斤装", "", ()),
        ("YJ-F-1002", "海南香蕉", "3.99", "1斤", "", ()),
    ]
    assert [s.name for s in stores_of(doc)] == ["深圳南山店"]
    product_meta = doc.chunks[1].meta
    assert product_meta is not None
    assert (product_meta.kind, product_meta.tags) == (Kind.PRODUCT, ("价目",))  # inherits tags
    qa = next(c for c in doc.chunks if c.answer == "可以，在小程序申请。")
    assert qa.index_texts == ("能开发票吗？",)
    texts = [c.text for c in doc.chunks]
    assert texts[0] == "本周价目\n下面是本周的商品："
    assert any("| 配送费 | 5元 |" in t for t in texts)  # any other table stays prose
    assert any("X-100" in t for t in texts)  # so does a table in a code fence
    assert "X-100" not in [p[0] for p in products_of(doc)]


def test_markdown_promotion_table_rows(tmp_path: Path, directory: StoreDirectory) -> None:
    text = (
        "# 十二月活动\n\n| 活动名称 | 活动内容 | 开始日期 | 结束日期 | 适用门店 |\n"
        "|---|---|---|---|---|\n"
        "| 冬日鲜享周 | 满88减15 | 2026-12-03 | 2026-12-12 | 全部 |\n"
        "| 福田夜市 | 20点后面包8折 | 2026-12-01 | 2026-12-31 | 福田店 |\n"
    )
    doc = load_path(write(tmp_path, "december.md", text), stores=directory)
    winter, night = promotions_of(doc)
    assert (winter.title, winter.text, winter.stores) == ("冬日鲜享周", "满88减15", ())
    assert (night.stores, night.valid_to) == (("sz-futian",), day(2026, 12, 31, end=True))


# --- refused files --------------------------------------------------------------------------

BAD_FILES = [
    (
        "stores.csv",
        "门店编号,门店名称,地址,营业时间,电话,停车,经理\nsz-1,南山店,a,b,c,d,张三\n",
        MetadataError,
        "stores.csv header, column 7 '经理': unknown column for a store table; known: "
        "门店编号/store_id, 门店名称/name, 别名/aliases",
    ),
    (
        "promotions.csv",
        "活动名称,活动内容,开始日期,结束日期\n冬日,满88减15,2026-12-01,2026-12-08\n"
        "年货,8折,2026-12-01,2026-12-08\n双十二,满减,2026-12-01,12月32日\n",
        MetadataError,
        "promotions.csv row 4, column 结束日期: cannot read date '12月32日' (write 2026-11-01",
    ),
    (
        "promotions.csv",
        "活动,结束\n年货节,12月8日\n",
        MetadataError,
        "promotions.csv row 2, column 结束: cannot read date '12月8日': the year is missing "
        "(write 2026-12-08",
    ),
    (
        "promotions.csv",
        "活动名称,适用门店\n冬日,深圳南山店、深圳宝安店\n",
        MetadataError,
        "promotions.csv row 2, column 适用门店: unknown store '深圳宝安店'",
    ),
    (
        "products.csv",
        "SKU,商品名称,售价（元）\nYJ-1001,车厘子,159\nYJ-1002,香蕉,\n",
        MetadataError,
        "products.csv row 3, column 售价（元）: empty; every product needs a price",
    ),
    (
        "products.csv",
        "货号,品名,价格\n,车厘子,159\n",
        MetadataError,
        "products.csv row 2, column 货号: empty; every product needs a SKU",
    ),
    (
        "products.csv",
        "货号,品名,价格\nYJ-1001,,159\n",
        MetadataError,
        "products.csv row 2, column 品名: empty; every product needs a name",
    ),
    (
        "products.csv",
        "SKU,商品名称,规格\nYJ-1001,车厘子,2斤\n",
        LoaderError,
        "products.csv: a product table needs a 售价/price column (columns: SKU, 商品名称, 规格)",
    ),
    (
        "products.csv",
        "SKU,商品名称,售价,价格\nYJ-1001,车厘子,159,159\n",
        MetadataError,
        "products.csv header, column 4 '价格': repeats '售价'",
    ),
    (
        "stores.csv",
        "门店编号,门店名称,地址\nsz-1,南山店,a\n,,b\n",
        MetadataError,
        "stores.csv row 3: a store needs a name (column 门店名称) or an id (column 门店编号)",
    ),
    (
        "stores.csv",
        "门店名称,地址\n南山店,a\n南山店,b\n",
        MetadataError,
        "stores.csv row 3, column 门店名称: store '南山店' is already on stores.csv row 2",
    ),
    (
        "menu.md",
        "# 价目\n\n| 货号 | 商品名称 | 售价 |\n| --- | --- | --- |\n| YJ-1 | 车厘子 |  |\n",
        MetadataError,
        "menu.md line 5, column 售价: empty; every product needs a price",
    ),
    (
        "store.md",
        "---\nkind: store\nname: 南山店\nadress: 科技园\n---\n正文\n",
        MetadataError,
        "store.md front matter, key 'adress': unknown key for a store (did you mean 'address'?)",
    ),
    (
        "p.md",
        "---\nkind: promotion\n适用门店: 南山店、宝安店\n---\n正文\n",
        MetadataError,
        "p.md front matter, 适用门店: unknown store '宝安店'",
    ),
    (
        "x.csv",
        "负责人,电话号码\n张三,1\n",
        LoaderError,
        "x.csv: no table shape fits the headers",
    ),
]


@pytest.mark.parametrize(
    ("name", "text", "error", "message"), BAD_FILES, ids=[m[:40] for *_, m in BAD_FILES]
)
def test_bad_files_are_refused_with_one_line(
    tmp_path: Path,
    directory: StoreDirectory,
    name: str,
    text: str,
    error: type[KnowledgeError],
    message: str,
) -> None:
    with pytest.raises(error) as caught:
        load_path(write(tmp_path, name, text), stores=directory)
    assert str(caught.value).startswith(message)
    assert "\n" not in str(caught.value)


def test_bad_xlsx_cells_name_the_sheet_row_and_column(tmp_path: Path) -> None:
    path = write_xlsx(
        tmp_path / "book.xlsx",
        {
            "门店": [["门店名称", "地址"], ["南山店", "a"]],
            "活动": [["活动名称", "开始日期"], ["冬日", "下周一"]],
        },
    )
    with pytest.raises(
        MetadataError, match=r"^book\.xlsx 活动 row 2, column 开始日期: cannot read"
    ):
        load_path(path)


def test_unknown_store_in_the_ingest_call(tmp_path: Path, directory: StoreDirectory) -> None:
    path = write(tmp_path, "faq.csv", "问题,答案\n在吗？,在。\n")
    doc = load_path(path, MetaOverrides(store_id="南山店,福田"), stores=directory)
    assert doc.meta.stores == ("sz-nanshan", "sz-futian")
    with pytest.raises(MetadataError, match=r"faq\.csv, the ingest call's store_id: unknown store"):
        load_path(path, MetaOverrides(store_id="宝安店"), stores=directory)


# --- the knowledge base ---------------------------------------------------------------------


@pytest.fixture
async def kb(data_dir: Path) -> AsyncIterator[KnowledgeBase]:
    engine: AsyncEngine = await migrated(f"sqlite+aiosqlite:///{data_dir / 'siyu.db'}")
    config = KnowledgeConfig(data_dir=data_dir, embedding=EmbeddingConfig(backend="hash"))
    base = await KnowledgeBase.open(config, engine)
    yield base
    await base.close()
    await engine.dispose()


async def test_ingest_path_resolves_names_through_the_loaded_stores(
    kb: KnowledgeBase, tmp_path: Path
) -> None:
    await kb.ingest_path(write(tmp_path, "stores.csv", STORES_CSV))
    await kb.ingest_path(write(tmp_path, "promotions.csv", PROMOTIONS_CSV))
    scopes = [c.meta.stores for c in kb.active_chunks(Kind.PROMOTION)]
    assert scopes == [(), ("sz-nanshan", "sz-futian"), ("sz-nanshan",)]
    before = await kb.documents()
    bad = PROMOTIONS_CSV + "坏活动,x,2026-12-01,2026-12-02,深圳宝安店,,\n"
    with pytest.raises(MetadataError, match="row 5, column 适用门店: unknown store"):
        await kb.ingest_path(write(tmp_path, "promotions.csv", bad))
    assert await kb.documents() == before  # nothing of the refused file was loaded


# --- the retail benchmark's files -----------------------------------------------------------


def _benchmark_kb(shared_data: Path, out: Path) -> Path:
    script = shared_data / "retail-qa" / "make_kb.py"
    if not script.is_file():
        pytest.skip("../shared/data/retail-qa/make_kb.py is not present")
    subprocess.run([sys.executable, str(script), str(out), "--today", "2026-12-05"], check=True)
    return out / "kb"


def _all(docs: Sequence[SourceDocument]) -> list[Promotion]:
    return promotions_of(*docs)


def test_the_benchmark_files_all_load(shared_data: Path, tmp_path: Path) -> None:
    kb = _benchmark_kb(shared_data, tmp_path / "retail")
    stores = load_path(kb / "stores.csv")
    directory = StoreDirectory(stores_of(stores))
    assert [s.store_id for s in directory.stores] == [
        "sz-nanshan",
        "sz-futian",
        "gz-tianhe",
        "fs-qiandeng",
    ]
    products = load_path(kb / "products.csv", stores=directory)
    assert len(products_of(products)) == 12
    assert all(price for _, _, price, *_ in products_of(products))
    assert products_of(products)[0] == ("YJ-F-1001", "智利车厘子", "159", "2斤装", "水果", ())

    table = promotions_of(load_path(kb / "promotions.csv", stores=directory))
    assert [(p.title, p.stores) for p in table] == [
        ("双十二生鲜预热", ()),
        ("冬日鲜享周", ()),
        ("车厘子限时特价", ()),
        ("深圳门店包邮周", ("sz-nanshan", "sz-futian")),
    ]
    assert table[2].skus == ("YJ-F-1001",)

    pages = sorted(kb.glob("p-*.md"))
    assert len(pages) == 4
    docs = [load_path(p, stores=directory) for p in pages]
    found = {p.title: (p.stores, p.valid_from, p.valid_to) for p in _all(docs)}
    assert found == {
        "今日香蕉特价": ((), day(2026, 12, 5), day(2026, 12, 5, end=True)),
        "新春年货节": ((), day(2026, 12, 20), day(2027, 1, 4, end=True)),
        "鲜奶会员专享": ((), day(2026, 11, 25), day(2026, 12, 25, end=True)),
        "天河店开业三周年": (("gz-tianhe",), day(2026, 12, 4), day(2026, 12, 9, end=True)),
    }
    assert len(load_path(kb / "faq.csv").chunks) == 14
