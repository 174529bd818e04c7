"""Metadata values: dates (with end of day), kinds, stores, tags, and layer precedence."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest

from knowledge.errors import MetadataError
from knowledge.metadata import (
    ALL_STORES,
    MetaOverrides,
    PartialMeta,
    from_overrides,
    parse_datetime,
    parse_kind,
    parse_raw_meta,
    parse_stores,
    parse_tags,
    resolve,
)
from knowledge.types import Kind

SH = ZoneInfo("Asia/Shanghai")


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("2026-11-01", datetime(2026, 11, 1, tzinfo=SH)),
        ("2026/11/01", datetime(2026, 11, 1, tzinfo=SH)),
        ("2026.1.5", datetime(2026, 1, 5, tzinfo=SH)),
        ("2026年11月1日", datetime(2026, 11, 1, tzinfo=SH)),
        ("2026-11-01 08:00", datetime(2026, 11, 1, 8, 0, tzinfo=SH)),
        ("2026/11/01 08:30:15", datetime(2026, 11, 1, 8, 30, 15, tzinfo=SH)),
        ("2026-11-01T08:00:00+08:00", datetime(2026, 11, 1, 0, 0, tzinfo=UTC)),
        ("2026-11-01T00:00:00Z", datetime(2026, 11, 1, 8, 0, tzinfo=SH)),
        (" 2026-11-01T08:00:00.5-0500 ", datetime(2026, 11, 1, 13, 0, 0, 500000, tzinfo=UTC)),
    ],
)
def test_dates_are_read_in_the_given_zone(raw: str, expected: datetime) -> None:
    parsed = parse_datetime(raw, SH)
    assert parsed == expected
    assert parsed.tzinfo is not None


def test_date_only_end_of_day_means_the_last_microsecond() -> None:
    end = parse_datetime("2026-11-30", SH, end_of_day=True)
    assert end == datetime(2026, 11, 30, 23, 59, 59, 999999, tzinfo=SH)
    assert end + timedelta(microseconds=1) == datetime(2026, 12, 1, tzinfo=SH)
    # an explicit time is taken as written, even for valid_to
    assert parse_datetime("2026-11-30 18:00", SH, end_of_day=True).hour == 18


def test_typed_cells_are_accepted() -> None:
    assert parse_datetime(date(2026, 11, 30), SH, end_of_day=True).microsecond == 999999
    naive = datetime(2026, 11, 30, 9, 0)
    assert parse_datetime(naive, SH) == datetime(2026, 11, 30, 9, 0, tzinfo=SH)


def test_other_zones_are_honoured() -> None:
    utc_plus_9 = timezone(timedelta(hours=9))
    assert parse_datetime("2026-11-01 09:00", utc_plus_9) == datetime(2026, 11, 1, tzinfo=UTC)


@pytest.mark.parametrize(
    "raw", ["2026-13-01", "2026-02-30", "next monday", "11/01/2026", "2026-11", "12月32日"]
)
def test_bad_dates_are_metadata_errors(raw: str) -> None:
    with pytest.raises(MetadataError, match="date"):
        parse_datetime(raw, SH)


@pytest.mark.parametrize("raw", ["12月8日", "12月8号", "12/8", "12-08", "12月8日 10:00"])
def test_a_date_without_a_year_is_refused_never_guessed(raw: str) -> None:
    with pytest.raises(MetadataError, match=r"the year is missing \(write 2026-12-08"):
        parse_datetime(raw, SH)


def test_compact_and_numeric_dates() -> None:
    assert parse_datetime("20261208", SH) == datetime(2026, 12, 8, tzinfo=SH)
    assert parse_datetime(20261208, SH, end_of_day=True).date() == date(2026, 12, 8)
    assert parse_datetime(20261208.0, SH) == datetime(2026, 12, 8, tzinfo=SH)


def test_kinds_and_chinese_aliases() -> None:
    assert parse_kind("Promotion") == Kind.PROMOTION
    assert parse_kind("活动") == Kind.PROMOTION
    assert parse_kind("商品") == Kind.PRODUCT
    assert parse_kind("门店") == Kind.STORE
    with pytest.raises(MetadataError, match="faq, promotion, product, policy, store"):
        parse_kind("coupon")


def test_store_words_for_all_stores() -> None:
    for word in ("all", "ALL", "*", "", "全部", "所有门店", "全部门店", ["all"], "sz-nanshan,全部"):
        assert parse_stores(word) == ALL_STORES
    assert parse_stores(" sh-xuhui ") == ("sh-xuhui",)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("sz-nanshan,sz-futian", ("sz-nanshan", "sz-futian")),
        ("深圳南山店、深圳福田店", ("深圳南山店", "深圳福田店")),
        ("a；b | c，a", ("a", "b", "c")),
        (["sz-nanshan", " sz-futian "], ("sz-nanshan", "sz-futian")),
        (1001, ("1001",)),
    ],
)
def test_store_lists(raw: str | list[str] | int, expected: tuple[str, ...]) -> None:
    assert parse_stores(raw) == expected


def test_tags_from_lists_and_separated_strings() -> None:
    assert parse_tags("烘焙, 会员，新品、烘焙") == ("烘焙", "会员", "新品")
    assert parse_tags(["a", " b ", ""]) == ("a", "b")


def test_raw_meta_maps_aliases_and_skips_blanks() -> None:
    layer = parse_raw_meta(
        {"类型": "促销", "门店": "", "结束日期": "2026-11-30", "标签": "a、b", "author": "x"},
        SH,
        where="f.csv row 2",
    )
    assert layer == PartialMeta(
        kind=Kind.PROMOTION,
        valid_to=datetime(2026, 11, 30, 23, 59, 59, 999999, tzinfo=SH),
        tags=("a", "b"),
    )


def test_raw_meta_errors_name_the_place() -> None:
    with pytest.raises(MetadataError, match=r"f\.csv row 3: kind: unknown kind 'x'"):
        parse_raw_meta({"kind": "x"}, SH, where="f.csv row 3")
    with pytest.raises(MetadataError, match=r"f\.md: valid_to .* is before valid_from"):
        parse_raw_meta({"valid_from": "2026-11-02", "valid_to": "2026-11-01"}, SH, where="f.md")


def test_misspelt_keys_are_errors_other_keys_are_ignored() -> None:
    with pytest.raises(MetadataError, match="unknown key 'vaild_to' \\(did you mean 'valid_to'"):
        parse_raw_meta({"vaild_to": "2026-11-30"}, SH, where="a.md")
    assert parse_raw_meta({"author": "小王", "layout": "post"}, SH, where="a.md").is_empty()


def test_precedence_first_layer_wins_field_by_field() -> None:
    row = PartialMeta(stores=("hz-xihu",))
    call = from_overrides(MetaOverrides(kind=Kind.POLICY, store_id="sh-pudong", title="T"), SH)
    front = PartialMeta(kind=Kind.PROMOTION, tags=("x",), title="front")
    meta = resolve([row, call, front], source="a.md", where="a.md")
    assert (meta.stores, meta.kind, meta.tags, meta.title) == (
        ("hz-xihu",),
        Kind.POLICY,
        ("x",),
        "T",
    )
    assert meta.source == "a.md"


def test_defaults_are_faq_all_stores_unbounded() -> None:
    meta = resolve([PartialMeta()], source="x.txt", where="x.txt")
    assert (meta.kind, meta.stores, meta.valid_from, meta.valid_to) == (
        Kind.FAQ,
        (),
        None,
        None,
    )


def test_all_stores_in_a_higher_layer_overrides_a_store_below() -> None:
    call = from_overrides(MetaOverrides(store_id="*"), SH)
    meta = resolve([call, PartialMeta(stores=("sh-xuhui",))], source="a", where="a")
    assert meta.stores == ()


def test_naive_override_datetimes_get_the_zone_and_window_is_checked() -> None:
    call = from_overrides(MetaOverrides(valid_to=datetime(2026, 11, 1)), SH)
    assert call.valid_to == datetime(2026, 11, 1, tzinfo=SH)
    front = PartialMeta(valid_from=datetime(2026, 11, 5, tzinfo=SH))
    with pytest.raises(MetadataError, match="before valid_from"):
        resolve([call, front], source="a", where="a")
