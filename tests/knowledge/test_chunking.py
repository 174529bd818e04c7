"""split_text / pack_text: headings, Chinese and English sentences, sizes and overlap."""

from __future__ import annotations

import itertools

import pytest

from knowledge.chunking import Section, pack_text, split_headings, split_sentences, split_text

_SENTENCES = [f"第{i}条规定：会员在门店消费满{i * 10}元可以获得{i}倍积分。" for i in range(1, 40)]


def test_sentences_split_at_chinese_and_english_ends() -> None:
    text = (
        "签收后7天内可退货。需要保留小票！能退吗？可以；但要快……\n"
        "Returns are free. Really! OK? Price 3.5 yuan"
    )
    assert split_sentences(text) == [
        "签收后7天内可退货。",
        "需要保留小票！",
        "能退吗？",
        "可以；",
        "但要快……",
        "Returns are free.",
        "Really!",
        "OK?",
        "Price 3.5 yuan",
    ]


def test_closing_quotes_stay_with_their_sentence() -> None:
    assert split_sentences("店员说：“可以退。”然后走了。") == ["店员说：“可以退。”", "然后走了。"]


def test_chunks_respect_max_chars_and_keep_sentences_whole() -> None:
    chunks = pack_text("".join(_SENTENCES), max_chars=120, overlap=40)
    assert len(chunks) > 5
    assert all(len(chunk) <= 120 for chunk in chunks)
    for chunk in chunks:
        # every chunk is a run of whole sentences: cutting it at 。 gives only known sentences
        pieces = [p + "。" for p in chunk.split("。") if p]
        assert set(pieces) <= set(_SENTENCES)
    # nothing is lost, and order is kept
    seen = [s for chunk in chunks for s in _SENTENCES if s in chunk]
    assert sorted(set(seen), key=_SENTENCES.index) == _SENTENCES


def test_overlap_carries_trailing_whole_sentences() -> None:
    chunks = pack_text("".join(_SENTENCES), max_chars=120, overlap=40)
    for previous, current in itertools.pairwise(chunks):
        carried = next(s for s in _SENTENCES if current.startswith(s))
        assert previous.endswith(carried)
        assert len(carried) <= 40


def test_zero_overlap_shares_nothing() -> None:
    chunks = pack_text("".join(_SENTENCES), max_chars=120, overlap=0)
    assert "".join(chunks) == "".join(_SENTENCES)


def test_overlap_larger_than_any_tail_sentence_is_bounded() -> None:
    text = "短句。" + "这一句很长很长很长很长很长很长很长很长很长。" * 4
    chunks = pack_text(text, max_chars=50, overlap=10)
    # the 22-char sentences never fit in a 10-char overlap, so nothing is carried
    assert "".join(chunks) == text


def test_over_long_sentence_is_cut_at_commas_then_into_windows() -> None:
    clause = "这是一个没有句号的长分句，"
    text = clause * 20 + "X" * 250 + "。"
    chunks = pack_text(text, max_chars=100, overlap=20)
    assert all(len(c) <= 100 for c in chunks)
    assert clause in chunks[0]
    assert chunks[0].endswith("，")  # cut at a comma, not mid-clause
    assert "".join(c for c in chunks if "X" in c).count("X") >= 250  # windows overlap
    assert chunks[-1].endswith("。")


def test_headings_give_paths_and_sections() -> None:
    text = (
        "前言文字。\n\n# 退换货政策\n总则。\n\n## 退货时限\n签收后7天。\n\n"
        "### 例外\n定制商品不退。\n\n## 换货\n15天内可换。\n"
    )
    assert split_text(text) == [
        Section("", "前言文字。"),
        Section("退换货政策", "总则。"),
        Section("退换货政策 > 退货时限", "签收后7天。"),
        Section("退换货政策 > 退货时限 > 例外", "定制商品不退。"),
        Section("退换货政策 > 换货", "15天内可换。"),
    ]


def test_headings_inside_code_fences_are_text() -> None:
    blocks = split_headings("# 标题\n```\n# 不是标题\n```\n正文")
    assert [b.path for b in blocks] == [("标题",)]
    assert "# 不是标题" in blocks[0].body


def test_blank_lines_collapse_and_whitespace_is_stripped() -> None:
    sections = split_text("  第一段。  \n\n\n\n\n  第二段。\n\n\n")
    assert sections == [Section("", "第一段。\n第二段。")]


def test_empty_or_heading_only_text_gives_no_chunks() -> None:
    assert split_text("") == []
    assert split_text("  \n\n \n") == []
    assert split_text("# 只有标题\n\n## 还有一个\n") == []


def test_horizontal_rules_are_dropped() -> None:
    assert split_text("上面。\n\n---\n\n下面。") == [Section("", "上面。\n下面。")]


def test_english_sentences_are_joined_with_spaces() -> None:
    chunks = pack_text("One. Two. Three. Four.", max_chars=10, overlap=0)
    assert chunks == ["One. Two.", "Three.", "Four."]


@pytest.mark.parametrize(("max_chars", "overlap"), [(0, 0), (100, 100), (100, -1)])
def test_bad_sizes_are_rejected(max_chars: int, overlap: int) -> None:
    with pytest.raises(ValueError, match="must be"):
        split_text("文本。", max_chars=max_chars, overlap=overlap)
