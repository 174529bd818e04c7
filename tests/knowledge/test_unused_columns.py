"""Nothing in an operator's table vanishes silently (issue 9): every column is read or reported,
a column that looks like metadata refuses the file, skipped rows are named as the sheet numbers
them."""

from __future__ import annotations

from pathlib import Path

import pytest

from knowledge.errors import KnowledgeError, MetadataError
from knowledge.loaders import load_path
from knowledge.records import StoreDirectory
from knowledge.types import Kind
from tests.knowledge.filemakers import write_xlsx
from tests.knowledge.test_record_tables import STORES_CSV, stores_of, write


@pytest.fixture
def directory(tmp_path: Path) -> StoreDirectory:
    return StoreDirectory(stores_of(load_path(write(tmp_path, "stores.csv", STORES_CSV))))


def test_gbk_csv_extra_column_and_empty_answers_are_warnings(tmp_path: Path) -> None:
    text = (
        "问题,答案,负责人\n积分怎么用,积分可抵现,张三\n退货政策,,李四\n,只有答案,王五\n"
        "营业时间,十点开门,\n"
    )
    doc = load_path(write(tmp_path, "faq.csv", text, encoding="gbk"))
    assert [d.answer for d in doc.chunks] == ["积分可抵现", "十点开门"]
    column, rows = doc.warnings
    assert column.startswith("faq.csv header, column 3 '负责人': not used by a QA table")
    assert rows == "faq.csv: 2 rows skipped (no answer: row 3; no question: row 4)"


def test_xlsx_rows_are_numbered_as_the_sheet_shows_them(tmp_path: Path) -> None:
    path = write_xlsx(
        tmp_path / "faq.xlsx",
        {
            "FAQ": [
                ["常见问题表", None, None, None],
                [None, None, None, None],
                ["问题", "答案", "负责人", None],
                ["q1", "a1", "张三", "x"],
                ["q2", None, None, None],
                [None, None, "孤儿", None],
                ["q4", "a4", None, None],
            ],
            "填写说明": [["说明", "请按模板填写"], ["a", "b"]],
        },
    )
    doc = load_path(path)
    assert [d.answer for d in doc.chunks] == ["a1", "a4"]
    assert doc.warnings == (
        "faq.xlsx: sheet 填写说明 is not loaded: its headers fit no table shape "
        "(说明, 请按模板填写)",
        doc.warnings[1],
        "faq.xlsx FAQ header, column 4 (no header): 1 value in a column without a header not "
        "used; give the column a header the table knows, or delete it",
        "faq.xlsx FAQ: 2 rows skipped (values only in unused columns: row 6; no answer: row 5)",
    )
    assert doc.warnings[1].startswith("faq.xlsx FAQ header, column 3 '负责人': not used")


@pytest.mark.parametrize(
    ("header", "value", "what"),
    [
        ("有效期", "2026-12-01 至 2026-12-08", "a date"),
        ("截止", "2026-12-08", "a date"),
        ("活动日期", "双十二", "a date"),
        ("expiry", "soon", "a date"),
        ("备注", "2026-12-08 前有效", "a date"),
        ("所属门店", "深圳南山店", "a store scope"),
        ("shop", "x", "a store scope"),
    ],
)
def test_an_unused_column_that_looks_like_metadata_refuses_the_file(
    tmp_path: Path, header: str, value: str, what: str
) -> None:
    path = write(tmp_path, "faq.csv", f"问题,答案,{header}\n积分怎么用,积分可抵现,{value}\n")
    with pytest.raises(
        MetadataError, match=f"^faq.csv header, column 3 '{header}': looks like {what}"
    ):
        load_path(path)


def test_values_naming_known_stores_look_like_a_store_scope(
    tmp_path: Path, directory: StoreDirectory
) -> None:
    path = write(tmp_path, "faq.csv", "问题,答案,负责区域\n积分怎么用,积分可抵现,深圳南山店\n")
    with pytest.raises(MetadataError, match="'负责区域': looks like a store scope"):
        load_path(path, stores=directory)
    assert len(load_path(path).warnings) == 1  # without a directory the values mean nothing


def test_a_record_keeping_date_is_a_warning(tmp_path: Path) -> None:
    path = write(tmp_path, "faq.csv", "问题,答案,更新时间\n积分怎么用,积分可抵现,2026-01-01\n")
    [warning] = load_path(path).warnings
    assert "column 3 '更新时间': not used (a record-keeping date" in warning


def test_repeated_columns(tmp_path: Path) -> None:
    ends = write(tmp_path, "a.csv", "问题,答案,结束日期,结束日期\nq,a,2026-12-31,2027-01-01\n")
    with pytest.raises(MetadataError, match=r"a.csv header, column 4 '结束日期': repeats"):
        load_path(ends)
    answers = write(tmp_path, "b.csv", "问题,答案,答案\nq,a,另一个答案\n")
    [warning] = load_path(answers).warnings
    assert warning.startswith("b.csv header, column 3 '答案': not used, '答案' already gives")


def test_cells_beyond_the_header_are_a_warning(tmp_path: Path) -> None:
    doc = load_path(write(tmp_path, "faq.csv", "问题,答案\nq1,积分满100分,可抵扣1元\nq2,a2\n"))
    assert doc.warnings == (
        "faq.csv: row 2: values beyond the last column (2) are not used; an unquoted comma "
        "inside a cell splits it (quote the cell)",
    )


def test_a_promotion_table_with_a_period_and_start_dates_is_refused(tmp_path: Path) -> None:
    text = (
        "活动名称,开始日期,结束日期,活动时间\n"
        "双十二,2026-12-01,2026-12-12,2026-12-01 至 2026-12-08\n"
    )
    with pytest.raises(MetadataError, match="both '活动时间' and '开始日期' give the validity"):
        load_path(write(tmp_path, "promo.csv", text))


def test_a_product_title_column_is_read(tmp_path: Path) -> None:
    text = "SKU,商品名称,售价,标题\nYJ-1,香蕉,3.99,今日特价香蕉\n"
    doc = load_path(write(tmp_path, "products.csv", text))
    meta = doc.chunks[0].meta
    assert meta is not None
    assert (meta.kind, meta.title) == (Kind.PRODUCT, "今日特价香蕉")
    assert doc.warnings == ()


def test_record_tables_still_refuse_unknown_columns(tmp_path: Path) -> None:
    text = "活动名称,开始日期,结束日期,负责人\n双十二,2026-12-01,2026-12-12,张三\n"
    with pytest.raises(MetadataError, match="column 4 '负责人': unknown column for a promotion"):
        load_path(write(tmp_path, "promo.csv", text))


def test_markdown_tables_of_records_with_unknown_columns(tmp_path: Path) -> None:
    table = "| 问题 | 答案 | {} |\n| --- | --- | --- |\n| 积分怎么用 | 抵现 | {} |\n"
    prose = write(tmp_path, "a.md", "# 常见问题\n\n" + table.format("负责人", "张三"))
    [warning] = load_path(prose).warnings
    assert warning.startswith(
        "a.md line 3, column 3 '负责人': not a column of a QA table, so the table is kept as text"
    )
    dated = write(
        tmp_path, "b.md", "# 常见问题\n\n" + table.format("有效期", "2026-12-01 至 2026-12-08")
    )
    with pytest.raises(MetadataError, match=r"b.md line 3, column 3 '有效期': looks like a date"):
        load_path(dated)


def test_json_items_and_meta_keys(tmp_path: Path) -> None:
    text = (
        '{"meta": {"kind": "faq", "author": "x"}, "items": '
        '[{"question": "q", "answer": "a", "owner": "z"}, {"question": "q2", "answer": ""}]}'
    )
    doc = load_path(write(tmp_path, "faq.json", text))
    assert doc.warnings[0].startswith("faq.json meta, key 'author': not used")
    assert doc.warnings[1].startswith("faq.json keys, key 'owner': not used by a QA table")
    assert doc.warnings[2] == "faq.json: 1 row skipped (no answer: item 2)"
    dated = write(tmp_path, "b.json", '{"meta": {"有效期": "2026-12-31"}, "items": {"q": "a"}}')
    with pytest.raises(MetadataError, match=r"b.json meta, key '有效期': looks like a date"):
        load_path(dated)


def test_store_scopes_without_a_directory_are_kept_with_a_warning(
    tmp_path: Path, directory: StoreDirectory
) -> None:
    text = (
        "活动名称,开始日期,适用门店\n双十二,2026-12-01,深圳南山店\n"
        "双十三,2026-12-02,深圳南山店、深圳福田店\n"
    )
    path = write(tmp_path, "promo.csv", text)
    doc = load_path(path)
    assert doc.chunks[0].meta is not None
    assert doc.chunks[0].meta.stores == ("深圳南山店",)
    assert doc.warnings == (
        "promo.csv row 2, column 适用门店: no store directory is loaded, so these stores are kept "
        "as store ids unchecked: '深圳南山店', '深圳福田店' (ingest the store file first, "
        "or in the same command)",
    )
    resolved = load_path(path, stores=directory)
    assert resolved.warnings == ()
    assert resolved.chunks[0].meta is not None
    assert resolved.chunks[0].meta.stores == ("sz-nanshan",)
    with pytest.raises(KnowledgeError, match="unknown store '北京店'"):
        load_path(write(tmp_path, "p2.csv", text.replace("深圳南山店", "北京店")), stores=directory)
