"""The compliance check: absolute terms, sensitive words, facts verbatim, opt-out hint, size."""

from __future__ import annotations

from pathlib import Path

import pytest

from campaigns.compliance import ABSOLUTE_TERMS, Violation, check_copy, facts_of
from campaigns.config import OPT_OUT_HINT

DEMO = Path(__file__).resolve().parents[2] / "bot" / "demo" / "promotions"
ANNIVERSARY = (DEMO / "anniversary.md").read_text(encoding="utf-8")
GRAIN_OIL = (DEMO / "grain-oil-festival.md").read_text(encoding="utf-8")
FRESH = (DEMO / "fresh-199-minus-30.md").read_text(encoding="utf-8")


def check(text: str, source: str = "", **kw: object) -> list[Violation]:
    """Check ``text`` as a finished message (the opt-out hint appended)."""
    return check_copy(f"{text}\n{OPT_OUT_HINT}", source=source, **kw)  # type: ignore[arg-type]


def kinds(violations: list[Violation], kind: str) -> list[str]:
    return [v.term for v in violations if v.kind == kind]


@pytest.mark.parametrize("term", ABSOLUTE_TERMS)
def test_every_absolute_term_is_refused(term: str) -> None:
    [found] = kinds(check(f"这是{term}的选择"), "absolute")
    assert found.casefold().startswith(term.casefold())


@pytest.mark.parametrize(
    ("text", "term"),
    [
        ("本店全场最低价", "最低价"),
        ("最新上市的牛奶", "最新"),  # still refused: see the module docstring
        ("口感最棒", "最棒"),  # any other 最-word
        ("全网最实惠", "全网最"),
        ("销量第一名", "第一"),  # a rank, not an ordinal
        ("最 低 价", "最低价"),  # spacing does not hide it
        ("ＮＯ．１的选择", "NO.1"),  # nor full-width letters
        ("Top1 好物", "Top1"),
        ("１００％新鲜", "100%"),
    ],
)
def test_absolute_terms_in_context(text: str, term: str) -> None:
    assert term in kinds(check(text, source=text), "absolute")


@pytest.mark.parametrize(
    "text",
    [
        "最近到店的会员都领到了券",
        "活动最后一天，欢迎来店",
        "最终以门店实际价格为准",
        "每人最多2袋",
        "每人最多限购2盒",
        "第一件原价，第二件半价",
        "到货后第一时间通知您",
        "首次注册即可领取",
    ],
)
def test_allowed_words_are_not_absolute_claims(text: str) -> None:
    assert kinds(check(text, source=text), "absolute") == []


@pytest.mark.parametrize("path", sorted(DEMO.glob("*.md")), ids=lambda p: p.name)
def test_real_promotion_texts_have_no_absolute_terms(path: Path) -> None:
    text = path.read_text(encoding="utf-8")
    assert check(text, source=text) == []


def test_a_term_in_the_operators_own_promotion_text_is_still_refused() -> None:
    source = "春季大促：全场最低价，满100减20。"
    assert check("春季大促：全场最低价，满100减20。", source=source) == [
        Violation("absolute", "最低价")
    ]


def test_facts_of_finds_prices_dates_times_rates_and_codes() -> None:
    text = (
        "¥199 199元 199.00元 满300减60 9折 8.8折 3倍积分 12月18日 2026年12月18日 "
        "2026-12-18 12/18 08:00 8点 15% HD-1501 30天"
    )
    assert facts_of(text) == {
        "199元", "199.00元", "满300减60", "9折", "8.8折", "3倍", "12月18日", "2026年12月18日",
        "2026-12-18", "12/18", "08:00", "8点", "15%", "HD-1501", "30天",
    }  # fmt: skip


def test_facts_copied_verbatim_pass() -> None:
    copy = (
        "禾町十周年店庆，12月18日开始！全场单笔满300元减60元，"
        "买1000元礼品卡送100元电子礼品卡，金卡会员3倍积分。"
    )
    assert check(copy, source=ANNIVERSARY) == []


def test_cosmetic_variants_of_a_fact_pass() -> None:
    # The source spaces numbers ("满 300 元减 60 元", "59.90 元"); the copy writes them tight,
    # with ¥, or without the 元 inside 满减.
    copy = "满300减60，五常大米¥59.90，花生油79.90元，12月18日至31日"
    source = f"{ANNIVERSARY}\n{GRAIN_OIL}"
    assert kinds(check(copy, source=source), "fact") == []


@pytest.mark.parametrize(
    ("copy", "fact"),
    [
        ("五常大米活动价¥49.90", "49.90元"),  # price changed
        ("生鲜满189元立减30元", "189元"),  # 199 → 189
        ("生鲜满199减20", "满199减20"),
        ("12月19日开始", "12月19日"),  # 12月18日 → 12月19日
        ("大米HD-1510限购2袋", "HD-1510"),  # code changed
        ("全场8折", "8折"),  # invented discount
        ("满99元", "99元"),  # a substring of 199元 is not the fact
        ("每天09:00开门", "09:00"),
        ("注册送60天会员", "60天"),  # a quantity the source does not have
    ],
)
def test_changed_or_invented_facts_are_refused(copy: str, fact: str) -> None:
    source = f"{ANNIVERSARY}\n{GRAIN_OIL}\n{FRESH}"
    assert fact in kinds(check(copy, source=source), "fact")


def test_full_width_digits_and_letters_are_normalised_on_both_sides() -> None:
    assert check("大米ＨＤ－１５０１活动价５９.９０元", source=GRAIN_OIL) == []
    assert check("大米HD-1501活动价59.90元", source="大米ＨＤ－１５０１活动价５９．９０元") == []
    assert kinds(
        check("大米ＨＤ－１５０２活动价５９．９０元", source="HD-1501 59.90元"), "fact"
    ) == ["HD-1502"]


def test_sensitive_words_are_case_insensitive_substrings() -> None:
    words = ("WeChat转账", "私下交易", " ")
    violations = check("支持wechat转账，可私 下交易", source="", sensitive_words=words)
    assert violations == [Violation("sensitive", "WeChat转账"), Violation("sensitive", "私下交易")]
    assert check("欢迎到店", source="", sensitive_words=words) == []


def test_the_opt_out_hint_must_be_there() -> None:
    assert check_copy("欢迎到店", source="") == [Violation("no_opt_out", OPT_OUT_HINT)]
    assert check_copy(f"欢迎到店\n{OPT_OUT_HINT}", source="") == []
    custom = "回复TD退订"
    assert check_copy(f"欢迎到店\n{custom}", source="", opt_out_hint=custom) == []
    standard = check_copy(f"欢迎到店\n{OPT_OUT_HINT}", source="", opt_out_hint=custom)
    assert standard == [Violation("no_opt_out", custom)]


def test_empty_copy_is_refused() -> None:
    assert check_copy(" \n ", source="x") == [Violation("empty", "")]


def test_the_byte_limit_counts_utf8_bytes_not_characters() -> None:
    hint_bytes = len(f"\n{OPT_OUT_HINT}".encode())
    body = "好" * 600  # 600 characters, 1,800 bytes
    size = 1800 + hint_bytes
    assert check(body, max_bytes=size) == []
    [too_long] = check(body, max_bytes=size - 1)
    assert too_long == Violation("too_long", f"{size} > {size - 1} bytes")
    # 700 Chinese characters are far below 2,048 characters but above 2,048 bytes.
    assert kinds(check("好" * 700), "too_long") == [f"{2100 + hint_bytes} > 2048 bytes"]


def test_violations_describe_themselves_for_the_llm() -> None:
    assert "最低价" in Violation("absolute", "最低价").describe()
    assert "逐字" in Violation("fact", "189元").describe()
