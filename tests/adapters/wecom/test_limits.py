"""Byte limits and splitting long answers: never over the limit, never a broken character."""

from __future__ import annotations

import random
import re

import pytest

from adapters.wecom.limits import MARKDOWN_MAX_BYTES, TEXT_MAX_BYTES, split_text
from bot.text import ELLIPSIS, graphemes, utf8_len

FAMILY = "👨\u200d👩\u200d👧\u200d👦"  # one emoji of 7 code points, 25 bytes
THUMB = "👍🏽"  # base + skin tone
FLAG = "🇨🇳"  # two regional indicators
KEYCAP = "1\ufe0f\u20e3"
EMOJI = [FAMILY, THUMB, FLAG, KEYCAP, "😀", "❤\ufe0f"]
HANZI = "会员积分兑换优惠券门店营业时间退换货政策新品上市限时折扣满减活动"
PUNCT = ["。", "！", "？", "；", "，", "\n", "\n\n", " ", "!", "?"]


def _squeeze(text: str) -> str:
    return re.sub(r"\s+", "", text)


def _random_text(rng: random.Random, length: int) -> str:
    pieces: list[str] = []
    for _ in range(length):
        roll = rng.random()
        if roll < 0.70:
            pieces.append(rng.choice(HANZI))
        elif roll < 0.80:
            pieces.append(rng.choice(EMOJI))
        elif roll < 0.88:
            pieces.append(rng.choice("abcXYZ0123456789"))
        else:
            pieces.append(rng.choice(PUNCT))
    return "".join(pieces)


def test_utf8_len_counts_bytes_not_characters() -> None:
    assert utf8_len("abc") == 3
    assert utf8_len("会员") == 6
    assert utf8_len("😀") == 4
    assert utf8_len(FAMILY) == 25


def test_short_text_is_one_part_stripped() -> None:
    assert split_text("  你好，欢迎光临。\n") == ["你好，欢迎光临。"]
    assert split_text("   \n ") == []


def test_exactly_at_the_limit_is_not_split() -> None:
    text = "会" * (TEXT_MAX_BYTES // 3) + "ab"  # 2046 + 2 bytes
    assert utf8_len(text) == TEXT_MAX_BYTES
    assert split_text(text) == [text]
    assert len(split_text(text + "c")) == 2


def test_splits_between_paragraphs_first() -> None:
    first = "第一段。" * 100  # 1200 bytes
    second = "第二段。" * 100
    parts = split_text(f"{first}\n\n{second}")
    assert parts == [first, second]


def test_splits_after_a_sentence_end_when_a_paragraph_is_too_long() -> None:
    sentence = "本周会员日全场九折，积分双倍！"  # 45 bytes
    text = sentence * 60  # one paragraph of 2700 bytes
    parts = split_text(text)
    assert len(parts) == 2
    assert all(part.endswith("！") for part in parts)
    assert "".join(parts) == text


def test_a_long_run_without_punctuation_is_cut_between_characters() -> None:
    text = "优" * 1000  # 3000 bytes, no boundary at all
    parts = split_text(text)
    assert [utf8_len(p) for p in parts] == [2046, 954]
    assert "".join(parts) == text


def test_emoji_sequences_are_never_cut() -> None:
    text = (FAMILY + THUMB + FLAG + KEYCAP) * 40
    parts = split_text(text, 100)
    assert all(utf8_len(p) <= 100 for p in parts)
    for part in parts:
        assert graphemes(part)[0] in (FAMILY, THUMB, FLAG, KEYCAP)
        assert graphemes(part)[-1] in (FAMILY, THUMB, FLAG, KEYCAP)
    assert "".join(parts) == text


def test_an_emoji_sequence_longer_than_the_limit_falls_back_to_code_points() -> None:
    parts = split_text(FAMILY, 8)
    assert all(utf8_len(p) <= 8 for p in parts)
    assert "".join(parts) == FAMILY


def test_graphemes_keep_flags_in_pairs_and_marks_with_their_base() -> None:
    assert graphemes(FLAG + FLAG) == [FLAG, FLAG]
    assert graphemes("e\u0301a") == ["e\u0301", "a"]
    assert graphemes(f"a{THUMB}b") == ["a", THUMB, "b"]


def test_max_parts_cuts_the_last_part_and_marks_it() -> None:
    text = "。".join(["这是一条很长的促销说明"] * 400)
    parts = split_text(text, 300, max_parts=3)
    assert len(parts) == 3
    assert parts[-1].endswith(ELLIPSIS)
    assert all(utf8_len(p) <= 300 for p in parts)
    assert split_text("短文本", max_parts=1) == ["短文本"]


def test_bad_arguments_are_refused() -> None:
    with pytest.raises(ValueError, match="max_bytes"):
        split_text("x", 4)
    with pytest.raises(ValueError, match="max_parts"):
        split_text("x", max_parts=0)


@pytest.mark.parametrize("seed", range(40))
@pytest.mark.parametrize("max_bytes", [8, 61, 500, TEXT_MAX_BYTES, MARKDOWN_MAX_BYTES])
def test_split_properties_over_random_chinese_and_emoji(seed: int, max_bytes: int) -> None:
    rng = random.Random(seed * 7919 + max_bytes)
    text = _random_text(rng, rng.randint(0, 3000))
    parts = split_text(text, max_bytes)
    assert all(0 < utf8_len(p) <= max_bytes for p in parts)
    assert all(p == p.strip() for p in parts)
    # Nothing lost or reordered; only whitespace at the cuts goes.
    assert _squeeze("".join(parts)) == _squeeze(text)
    # No emoji sequence is cut when it could fit whole.
    if max_bytes >= 25:
        cut = [c for p in parts for c in graphemes(p)]
        assert _squeeze("".join(cut)) == _squeeze(text)
        assert [c for c in cut if not c.isspace()] == [
            c for c in graphemes(text) if not c.isspace()
        ]


@pytest.mark.parametrize("seed", range(10))
def test_max_parts_property(seed: int) -> None:
    rng = random.Random(seed)
    text = _random_text(rng, 2500)
    parts = split_text(text, 200, max_parts=4)
    full = split_text(text, 200)
    assert len(parts) == min(4, len(full))
    assert all(utf8_len(p) <= 200 for p in parts)
    if len(full) > 4:
        assert parts[:3] == full[:3]
        assert parts[3].endswith(ELLIPSIS)
        assert _squeeze(full[3]).startswith(_squeeze(parts[3][: -len(ELLIPSIS)]))
