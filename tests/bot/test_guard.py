"""The reply guard: plain text, within the byte limit, never empty."""

from __future__ import annotations

import random

import pytest

from bot.guard import (
    FALLBACK_TEXT,
    fit_bytes,
    guard_text,
    strip_markdown,
    tidy_whitespace,
)
from bot.text import ELLIPSIS

_CJK = "会员积分兑换优惠券门店营业时间退货政策价格元日期月号满减活动商品库存"
_PUNCT = "。！？，；、"


def test_short_text_is_unchanged() -> None:
    assert fit_bytes("会员日是每月8号。", 2048) == "会员日是每月8号。"


def test_chinese_counts_three_bytes_per_character() -> None:
    text = "价" * 700  # 2100 bytes
    fitted = fit_bytes(text, 2048)
    assert len(fitted.encode()) <= 2048
    assert fitted.endswith(ELLIPSIS)
    assert fitted == "价" * 681 + ELLIPSIS  # (2048 - 3) // 3 characters, then "…"


def test_truncation_prefers_a_sentence_end() -> None:
    text = "第一句话说明会员日。" * 30 + "最后一句没有结束" * 30
    fitted = fit_bytes(text, 400)
    assert fitted.endswith("。" + ELLIPSIS)
    assert len(fitted.encode()) <= 400


def test_truncation_falls_back_to_a_character_boundary_without_sentence_ends() -> None:
    fitted = fit_bytes("满减" * 200, 301)
    assert fitted.encode().decode() == fitted  # no broken character
    assert len(fitted.encode()) <= 301
    assert fitted.startswith("满减满减")


def test_byte_limit_holds_for_many_random_chinese_strings() -> None:
    rng = random.Random(20240611)
    alphabet = _CJK + _PUNCT + "abcXYZ 0123456789\n😀"
    for _ in range(500):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 1500)))
        limit = rng.randint(200, 2048)
        fitted = guard_text(text, limit)
        assert len(fitted.encode("utf-8")) <= limit
        assert fitted.strip()
        plain = tidy_whitespace(text)
        if plain and len(plain.encode()) <= limit:
            assert fitted == plain  # what fits is sent whole
        elif plain:
            assert fitted.endswith(ELLIPSIS)
            assert plain.startswith(fitted[: -len(ELLIPSIS)].rstrip())


def test_too_small_a_limit_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="max_bytes"):
        fit_bytes("会员", 2)


def test_markdown_becomes_plain_text() -> None:
    text = (
        "## 会员日\n\n**每月8号**全场*九折*，详见[活动页](https://example.com/a)。\n\n\n\n"
        "| 商品 | 价格 |\n|---|---:|\n| 拿铁 | 28元 |\n\n> 注意：`限门店`\n---\n* 第一条"
    )
    plain = guard_text(text, 2048)
    assert plain == (
        "会员日\n\n每月8号全场九折，详见活动页 https://example.com/a。\n\n"
        "商品，价格\n拿铁，28元\n\n注意：限门店\n\n- 第一条"
    )


def test_citation_markers_and_prices_survive() -> None:
    assert strip_markdown("满199减30 [1]，2*3=6") == "满199减30 [1]，2*3=6"


def test_empty_or_markup_only_text_gets_the_fallback() -> None:
    assert guard_text("", 2048) == FALLBACK_TEXT
    assert guard_text("  \n## \n---\n", 2048) == FALLBACK_TEXT
