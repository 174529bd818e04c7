"""Markdown front matter read as YAML with every value kept as written."""

from __future__ import annotations

import pytest

from knowledge.errors import MetadataError
from knowledge.loaders.frontmatter import split_front_matter

OPERATOR_BLOCK = """---
kind: promotion            # a comment
title: "双十一 会员日"
tags: [烘焙, 会员]
skus:
  - SY-1024
  - 001234
有效期至：2026-11-30
说明: 活动：满100减20
source: https://example.com/a
price: 12.50
online: yes
empty:
---
正文。"""


def test_values_stay_as_written_and_full_width_colons_are_keys() -> None:
    front, body = split_front_matter("p.md", OPERATOR_BLOCK)
    assert front == {
        "kind": "promotion",
        "title": "双十一 会员日",
        "tags": ["烘焙", "会员"],
        "skus": ["SY-1024", "001234"],  # not 1234, not octal 668
        "有效期至": "2026-11-30",
        "说明": "活动：满100减20",
        "source": "https://example.com/a",
        "price": "12.50",
        "online": "yes",
        "empty": [],
    }
    assert body == "正文。"


@pytest.mark.parametrize(
    ("block", "message"),
    [
        ("a:\n  b: c", r"p\.md: front matter key 'a': only plain values and lists"),
        ("a: [[1], [2]]", r"key 'a': only plain values"),
        ("x: &l [1, 2]\ny: [*l, *l, *l]", r"key 'y': only plain values"),
        ("kind: faq\nno key here", r"p\.md: front matter line 3: cannot read it"),
        ("tags: [烘焙, 会员", r"p\.md: front matter line \d+: cannot read it"),
        ("- a\n- b", r"p\.md: front matter line 2: cannot read '- a'"),
    ],
)
def test_what_cannot_be_read_is_an_error_naming_the_place(block: str, message: str) -> None:
    with pytest.raises(MetadataError, match=message):
        split_front_matter("p.md", f"---\n{block}\n---\n正文。")


def test_python_tags_construct_nothing() -> None:
    front, _ = split_front_matter("p.md", "---\na: !!python/object/apply:os.system ['x']\n---\n")
    assert front == {"a": ["x"]}


def test_no_block_or_an_unclosed_one_is_all_body() -> None:
    assert split_front_matter("p.md", "正文") == ({}, "正文")
    assert split_front_matter("p.md", "---\nkind: faq\n正文") == ({}, "---\nkind: faq\n正文")
    assert split_front_matter("p.md", "---\n---\n正文") == ({}, "正文")
