"""Table loaders: CSV (UTF-8, BOM, GBK), XLSX and JSON; QA rows, product rows, per-row metadata."""

from __future__ import annotations

import json
from datetime import date, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import openpyxl
import pytest

from knowledge.errors import LoaderError, MetadataError
from knowledge.loaders import MetaOverrides, load_bytes, load_path
from knowledge.types import Kind

SH = ZoneInfo("Asia/Shanghai")
END_OF_NOV_30 = datetime(2026, 11, 30, 23, 59, 59, 999999, tzinfo=SH)

QA_CSV = """question,answer,variants,store_id,valid_to,sku
几点开门？,每天8:00开门。,营业时间|几点营业||开门时间,,,
会员日有什么优惠？,每月8日全场9折。,会员日折扣；会员日活动,sh-xuhui,2026-11-30,
吐司多少钱？,SY-1024 吐司12元。,"吐司价格
吐司价钱",,,sy-1024
,没有问题的答案会被跳过,,,,
没有答案的问题,,,,,
"""

CN_CSV = """标准问题,答案,相似问题,类型,门店,生效时间,失效时间,标签,商品编码,标题
双十一有什么活动？,全场满200减30。,双11活动|双十一优惠,促销,全部,2026-11-01,2026-11-11,活动、大促,,双十一
能开发票吗？,可以开电子发票。,,,,,,,,
"""

PRODUCT_CSV = """sku,name,price,spec,category,description
HF-1001,全麦吐司,12.8,400g,面包,无添加蔗糖。
HF-1002,牛角包,¥8,1个,面包,
"""


def test_csv_qa_rows_variants_skus_and_row_meta() -> None:
    doc = load_bytes("faq.csv", QA_CSV.encode())
    assert doc.meta.kind == Kind.FAQ
    assert [c.index_texts for c in doc.chunks] == [
        ("几点开门？", "营业时间", "几点营业", "开门时间"),
        ("会员日有什么优惠？", "会员日折扣", "会员日活动"),
        ("吐司多少钱？", "吐司价格", "吐司价钱"),
    ]
    opening, member_day, toast = doc.chunks
    assert opening.text == "问：几点开门？\n答：每天8:00开门。"
    assert opening.answer == "每天8:00开门。"
    assert opening.meta is None  # no metadata cells: the document's metadata applies
    assert member_day.meta is not None
    assert (member_day.meta.stores, member_day.meta.valid_to) == (("sh-xuhui",), END_OF_NOV_30)
    assert member_day.meta.source == "faq.csv"
    assert toast.skus == ("SY-1024",)  # from the column, and found in the answer too (deduped)
    assert toast.meta is None  # a sku column alone gives no row metadata


def test_row_columns_beat_the_ingest_call_which_beats_defaults() -> None:
    overrides = MetaOverrides(store_id="hz-xihu", kind=Kind.POLICY, tags=("call",))
    doc = load_bytes("faq.csv", QA_CSV.encode(), overrides)
    assert (doc.meta.stores, doc.meta.kind) == (("hz-xihu",), Kind.POLICY)
    row_meta = doc.chunks[1].meta
    assert row_meta is not None
    assert (row_meta.stores, row_meta.kind, row_meta.tags) == (
        ("sh-xuhui",),
        Kind.POLICY,
        ("call",),
    )


def test_chinese_headers_and_all_store_word() -> None:
    overrides = MetaOverrides(store_id="sh-pudong")
    doc = load_bytes("活动.csv", CN_CSV.encode(), overrides)
    promo, invoice = doc.chunks
    assert promo.index_texts == ("双十一有什么活动？", "双11活动", "双十一优惠")
    meta = promo.meta
    assert meta is not None
    assert (meta.kind, meta.stores, meta.tags, meta.title) == (
        Kind.PROMOTION,
        (),  # "全部" in the row beats the call's sh-pudong
        ("活动", "大促"),
        "双十一",
    )
    assert meta.valid_from == datetime(2026, 11, 1, tzinfo=SH)
    assert meta.valid_to == datetime(2026, 11, 11, 23, 59, 59, 999999, tzinfo=SH)
    assert invoice.meta is None


@pytest.mark.parametrize("encoding", ["utf-8", "utf-8-sig", "gbk", "gb18030", "utf-16"])
def test_csv_encodings_read_the_same(encoding: str) -> None:
    reference = load_bytes("cn.csv", CN_CSV.encode("utf-8"))
    doc = load_bytes("cn.csv", CN_CSV.encode(encoding))
    assert doc.chunks == reference.chunks
    assert doc.content_hash == reference.content_hash


def test_bom_does_not_hide_the_first_header() -> None:
    doc = load_bytes("bom.csv", "\ufeffquestion,answer\n在吗？,在的。\n".encode())
    assert doc.chunks[0].index_texts == ("在吗？",)


def test_semicolon_and_tab_delimiters() -> None:
    for delimiter in (";", "\t"):
        text = f"问题{delimiter}答案\n能退货吗？{delimiter}7天内可以，需保留小票。\n"
        doc = load_bytes("x.csv", text.encode())
        assert doc.chunks[0].answer == "7天内可以，需保留小票。"


def test_product_table_rows_read_like_sentences() -> None:
    doc = load_bytes("products.csv", PRODUCT_CSV.encode())
    assert doc.meta.kind == Kind.PRODUCT
    toast, croissant = doc.chunks
    assert (
        toast.text
        == "商品：全麦吐司（货号 HF-1001），价格：12.8元，规格：400g，类别：面包。无添加蔗糖。"
    )
    assert (toast.index_texts, toast.skus, toast.answer) == (
        ("全麦吐司", "HF-1001"),
        ("HF-1001",),
        toast.text,
    )
    assert toast.fields == (
        ("sku", "HF-1001"),
        ("name", "全麦吐司"),
        ("spec", "400g"),
        ("price", "12.8"),
        ("category", "面包"),
        ("description", "无添加蔗糖。"),
    )
    assert "价格：¥8，" in croissant.text  # a price with its own currency sign is left alone


def test_product_kind_can_be_overridden() -> None:
    doc = load_bytes("p.csv", PRODUCT_CSV.encode(), MetaOverrides(kind=Kind.PROMOTION))
    assert doc.meta.kind == Kind.PROMOTION
    assert all(c.meta is not None and c.meta.kind == Kind.PROMOTION for c in doc.chunks)


def test_xlsx_qa_and_product_cells(tmp_path: Path) -> None:
    book = openpyxl.Workbook()
    sheet = book.active
    assert sheet is not None
    sheet.title = "FAQ"
    sheet.append(["问题", "答案", "扩展问", "结束时间", "开始时间"])
    sheet.append(
        ["周末营业吗？", "周末照常营业。", "周六开门吗\n周日开门吗", datetime(2026, 11, 30), None]
    )
    sheet.append([None, None, None, None, None])
    sheet.append(
        ["停车免费吗？", "消费满50元免费停车2小时。", None, None, datetime(2026, 11, 1, 9, 30)]
    )
    path = tmp_path / "faq.xlsx"
    book.save(path)

    doc = load_path(path)
    weekend, parking = doc.chunks
    assert weekend.index_texts == ("周末营业吗？", "周六开门吗", "周日开门吗")
    assert weekend.meta is not None
    assert weekend.meta.valid_to == END_OF_NOV_30  # a date cell means the whole day
    assert parking.meta is not None
    assert parking.meta.valid_from == datetime(2026, 11, 1, 9, 30, tzinfo=SH)


def test_xlsx_numbers_and_several_sheets(tmp_path: Path) -> None:
    book = openpyxl.Workbook()
    first = book.active
    assert first is not None
    first.append(["商品编码", "商品名称", "价格（元）", "规格"])
    first.append([1001, "燕麦奶", 29.0, "1L"])
    second = book.create_sheet("更多")
    second.append(["sku", "name", "price"])
    second.append(["hf-2001", "黑麦面包", 15.5])
    path = tmp_path / "products.xlsx"
    book.save(path)

    doc = load_path(path)
    assert [c.text for c in doc.chunks] == [
        "商品：燕麦奶（货号 1001），价格：29元，规格：1L",
        "商品：黑麦面包（货号 HF-2001），价格：15.5元",
    ]
    assert doc.chunks[0].skus == ("1001",)  # the column is trusted even when the regex is not


def test_json_question_answer_list_with_meta() -> None:
    data = {
        "meta": {"kind": "promotion", "valid_to": "2026-11-30", "tags": ["会员"]},
        "items": [
            {"question": "满减怎么算？", "answer": "满200减30。", "variants": ["满减规则", "满减"]},
            {"问题": "能叠加吗？", "答案": "不可叠加。", "store_id": "hz-xihu", "sku": ["a1023"]},
            {"question": "空答案", "answer": ""},
        ],
    }
    doc = load_bytes("promo.json", json.dumps(data, ensure_ascii=False).encode())
    assert (doc.meta.kind, doc.meta.valid_to, doc.meta.tags) == (
        Kind.PROMOTION,
        END_OF_NOV_30,
        ("会员",),
    )
    first, second = doc.chunks
    assert first.index_texts == ("满减怎么算？", "满减规则", "满减")
    assert second.meta is not None
    assert (second.meta.stores, second.meta.kind, second.meta.skus) == (
        ("hz-xihu",),
        Kind.PROMOTION,
        ("A1023",),
    )


def test_json_mapping_of_questions_to_answers() -> None:
    data = {"流量套餐": "有29元套餐。<br/>详情见营业厅。", "忘记密码": "可在线重置。"}
    doc = load_bytes("map.json", json.dumps(data, ensure_ascii=False).encode())
    assert [(c.index_texts, c.answer) for c in doc.chunks] == [
        (("流量套餐",), "有29元套餐。\n详情见营业厅。"),
        (("忘记密码",), "可在线重置。"),
    ]


def test_json_mapping_from_shared_data(shared_data: Path) -> None:
    path = shared_data / "promotions" / "mobilecs2_faq.json"
    raw = json.loads(path.read_text(encoding="utf-8"))
    doc = load_path(path, MetaOverrides(kind=Kind.PROMOTION))
    assert len(doc.chunks) == len(raw) == 39
    assert doc.meta.kind == Kind.PROMOTION
    first_question = next(iter(raw))
    assert doc.chunks[0].index_texts == (first_question,)
    assert all("<br" not in c.answer for c in doc.chunks)


@pytest.mark.parametrize(
    ("name", "data", "message"),
    [
        ("a.csv", "问题,答案\n,\n没有答案,\n", "no usable rows"),
        ("b.csv", "foo,bar\n1,2\n", "recognised columns: none"),
        ("c.csv", "question,variants\n在吗,在不在\n", "QA table needs a 答案/answer column"),
        ("d.csv", "question,answer\n", "no usable rows"),
        ("e.json", '{"a": 1}', "expected a list"),
        ("f.json", '[{"question": "q", "answer": "a"}, 3]', "item 2 is not an object"),
        ("g.json", '{"items": [{"question": "q", "answer": {"x": 1}}]}', r"item 1\.answer"),
        ("h.json", '{"question": "q",', "invalid JSON at line 1"),
        ("i.json", '{"meta": [], "items": []}', '"meta" must be an object'),
        ("j.csv", 'question,answer\n"unclosed,x\n', "no usable rows"),
    ],
)
def test_bad_tables_are_loader_errors(name: str, data: str, message: str) -> None:
    with pytest.raises(LoaderError, match=message) as caught:
        load_bytes(name, data.encode())
    assert caught.value.source == name


def test_bad_row_metadata_names_the_row() -> None:
    text = "question,answer,kind,valid_from,valid_to\nq1,a1,faq,,\nq2,a2,coupon,,\n"
    with pytest.raises(MetadataError, match=r"k\.csv row 3, column kind: unknown kind 'coupon'"):
        load_bytes("k.csv", text.encode())
    backwards = "question,answer,valid_from,valid_to\nq,a,2026-11-30,2026-11-01\n"
    with pytest.raises(MetadataError, match=r"k\.csv row 2: valid_to"):
        load_bytes("k.csv", backwards.encode())


def test_misspelt_metadata_column_is_an_error_unknown_columns_are_ignored() -> None:
    with pytest.raises(MetadataError, match=r"t\.csv header: unknown key 'vaild_to'"):
        load_bytes("t.csv", b"question,answer,vaild_to\nq,a,2026-11-30\n")
    doc = load_bytes("t.csv", "question,answer,备注,负责人\nq,a,内部,小王\n".encode())
    assert doc.chunks[0].meta is None


def test_row_window_checked_against_the_call() -> None:
    text = "question,answer,valid_to\nq,a,2026-10-01\n"
    overrides = MetaOverrides(valid_from=datetime(2026, 11, 1, tzinfo=SH))
    with pytest.raises(MetadataError, match="row 2: valid_to"):
        load_bytes("k.csv", text.encode(), overrides)


def test_date_cells_are_dates_not_midnight_instants(tmp_path: Path) -> None:
    book = openpyxl.Workbook()
    sheet = book.active
    assert sheet is not None
    sheet.append(["question", "answer", "valid_to"])
    sheet.append(["q", "a", date(2026, 11, 30)])
    path = tmp_path / "d.xlsx"
    book.save(path)
    meta = load_path(path).chunks[0].meta
    assert meta is not None
    assert meta.valid_to == END_OF_NOV_30
