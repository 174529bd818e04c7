"""Loaders for prose formats (Markdown, text, PDF, DOCX), bad input, and content hashes.

Table formats (CSV, XLSX, JSON) are in test_tables.py. Every file is generated in the test.
"""

from __future__ import annotations

import io
import random
import zipfile
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from knowledge.errors import LoaderError, MetadataError, UnsupportedFormat
from knowledge.loaders import (
    SUPPORTED_SUFFIXES,
    MetaOverrides,
    content_hash,
    load_bytes,
    load_path,
)
from knowledge.types import Kind
from tests.knowledge.filemakers import make_docx, make_pdf

SH = ZoneInfo("Asia/Shanghai")

PROMO_MD = """---
kind: promotion
store: sh-xuhui
valid_from: 2026-11-01
valid_to: 2026/11/30   # the whole last day counts
title: "双十一 会员日"
tags: [烘焙, 会员]
skus:
  - sy-1024
  - SY-2048
---
# 双十一活动

## 活动内容
会员购买 SY-1024 吐司立减5元。每人限购2件！

## 活动规则
### 适用门店
仅徐汇店。
"""

FAQ_MD = """# 常见问题

## Q: 可以开发票吗？
A: 可以，在小程序“我的订单”里申请电子发票。

### 问：积分怎么兑换？
答：100积分抵1元。

## 会员相关
**Q: 会员卡丢了怎么办？**
A: 凭手机号到店补办，
免费。

- 问：生日有礼吗？
- 答：生日当月送一张蛋糕券。
"""


def _write(tmp_path: Path, name: str, data: bytes | str) -> Path:
    path = tmp_path / name
    path.write_bytes(data.encode("utf-8") if isinstance(data, str) else data)
    return path


def test_markdown_front_matter_headings_and_skus(tmp_path: Path) -> None:
    doc = load_path(_write(tmp_path, "双十一.md", PROMO_MD))
    meta = doc.meta
    assert meta.source == "双十一.md"
    assert (meta.kind, meta.stores, meta.title) == (Kind.PROMOTION, ("sh-xuhui",), "双十一 会员日")
    assert meta.valid_from == datetime(2026, 11, 1, tzinfo=SH)
    assert meta.valid_to == datetime(2026, 11, 30, 23, 59, 59, 999999, tzinfo=SH)
    assert (meta.tags, meta.skus) == (("烘焙", "会员"), ("SY-1024", "SY-2048"))
    assert [c.heading for c in doc.chunks] == [
        "双十一活动 > 活动内容",
        "双十一活动 > 活动规则 > 适用门店",
    ]
    first = doc.chunks[0]
    assert first.text.startswith("双十一活动 > 活动内容\n会员购买")  # the heading is searchable
    assert (first.skus, first.index_texts, first.answer, first.meta) == (("SY-1024",), (), "", None)


def test_markdown_faq_sections_become_qa_chunks() -> None:
    doc = load_bytes("faq.md", FAQ_MD.encode())
    qa = [(c.index_texts, c.answer) for c in doc.chunks]
    assert qa == [
        (("可以开发票吗？",), "可以，在小程序“我的订单”里申请电子发票。"),
        (("积分怎么兑换？",), "100积分抵1元。"),
        (("会员卡丢了怎么办？",), "凭手机号到店补办，\n免费。"),
        (("生日有礼吗？",), "生日当月送一张蛋糕券。"),
    ]
    assert doc.chunks[0].text == "问：可以开发票吗？\n答：可以，在小程序“我的订单”里申请电子发票。"
    assert doc.chunks[2].heading == "常见问题 > 会员相关"
    assert doc.meta.title == "常见问题"  # the H1 is the default title


def test_windows_line_endings_and_bom() -> None:
    lines = ["---", "kind: policy", "tags:", "  - 退货", "---", "## Q: 能退吗？", "A: 可以。"]
    md = "\r\n".join([*lines, "", "", "", "需保留小票。", ""])
    doc = load_bytes("x.md", md.encode("utf-8-sig"))
    assert (doc.meta.kind, doc.meta.tags) == (Kind.POLICY, ("退货",))
    assert doc.chunks[0].answer == "可以。\n\n需保留小票。"  # blank-line runs collapse to one


def test_markdown_without_front_matter_uses_defaults() -> None:
    doc = load_bytes("notes.markdown", "门店营业时间为早8点到晚10点。".encode())
    assert (doc.meta.kind, doc.meta.stores, doc.meta.valid_from, doc.meta.title) == (
        Kind.FAQ,
        (),
        None,
        "",
    )
    assert doc.chunks[0].text == "门店营业时间为早8点到晚10点。"


def test_overrides_beat_front_matter_which_beats_defaults() -> None:
    overrides = MetaOverrides(
        source="promo-2026", store_id="all", valid_to=datetime(2026, 12, 31, 23, 0), tags=("x",)
    )
    doc = load_bytes("双十一.md", PROMO_MD.encode(), overrides)
    meta = doc.meta
    assert meta.source == "promo-2026"
    assert meta.stores == ()  # "all" from the call beats sh-xuhui from the front matter
    assert meta.valid_to == datetime(2026, 12, 31, 23, 0, tzinfo=SH)  # naive → Asia/Shanghai
    assert meta.tags == ("x",)
    assert meta.kind == Kind.PROMOTION  # not given in the call: front matter wins over default
    assert meta.title == "双十一 会员日"  # front matter title beats the H1 default


def test_front_matter_errors_are_metadata_errors() -> None:
    bad_kind = "---\nkind: coupon\n---\n正文。"
    with pytest.raises(
        MetadataError, match=r"a\.md front matter: kind: unknown kind 'coupon'.*faq"
    ):
        load_bytes("a.md", bad_kind.encode())
    backwards = "---\nvalid_from: 2026-11-30\nvalid_to: 2026-11-01\n---\n正文。"
    with pytest.raises(MetadataError, match=r"valid_to .* is before valid_from"):
        load_bytes("a.md", backwards.encode())
    unreadable = "---\nkind: faq\nthis line has no key\n---\n正文。"
    with pytest.raises(MetadataError, match=r"a\.md: front matter line 3"):
        load_bytes("a.md", unreadable.encode())
    with pytest.raises(MetadataError, match="cannot read date"):
        load_bytes("a.md", "---\nvalid_to: 下周一\n---\n正文。".encode())


def test_override_window_checked_against_front_matter() -> None:
    overrides = MetaOverrides(valid_to=datetime(2026, 10, 1, tzinfo=SH))
    with pytest.raises(MetadataError, match="before valid_from"):
        load_bytes("双十一.md", PROMO_MD.encode(), overrides)


def test_plain_text_gbk_is_chunked_by_sentences() -> None:
    sentence = "本店支持七天无理由退货，请保留购物小票。"
    text = "# 这不是标题\n" + sentence * 40
    doc = load_bytes("policy.txt", text.encode("gbk"))
    assert len(doc.chunks) > 1
    assert all(len(c.text) <= 400 for c in doc.chunks)
    assert doc.chunks[0].text.startswith("# 这不是标题")  # .txt has no headings
    assert all(c.heading == "" for c in doc.chunks)
    assert all(c.text.endswith("。") for c in doc.chunks)  # whole sentences only


def test_pdf_pages_are_extracted_and_chunked(tmp_path: Path) -> None:
    pdf = make_pdf(
        [
            ["Returns are accepted within 7 days.", "Keep the receipt for item SY-1024."],
            ["Gift cards never expire."],
        ]
    )
    doc = load_path(_write(tmp_path, "policy.pdf", pdf), MetaOverrides(kind=Kind.POLICY))
    assert [c.heading for c in doc.chunks] == ["第 1 页", "第 2 页"]
    assert "Returns are accepted within 7 days." in doc.chunks[0].text
    assert doc.chunks[0].skus == ("SY-1024",)
    assert doc.chunks[1].text == "Gift cards never expire."
    assert doc.meta.kind == Kind.POLICY


def test_docx_text_is_extracted(tmp_path: Path) -> None:
    data = make_docx(["会员积分规则", "每消费1元积1分，积分可抵现。", "商品 A1023 不参与积分。"])
    doc = load_path(_write(tmp_path, "积分.docx", data))
    assert doc.meta.source == "积分.docx"
    text = "\n".join(c.text for c in doc.chunks)
    assert "每消费1元积1分，积分可抵现。" in text
    assert "A1023" in doc.chunks[-1].skus
    assert load_bytes("积分.docx", data) == doc  # in-memory upload reads the same


def test_load_bytes_drops_directories_from_the_name() -> None:
    doc = load_bytes("C:\\fakepath\\uploads/faq.md", "问：在吗？".encode())
    assert doc.meta.source == "faq.md"


def test_supported_suffixes() -> None:
    assert {".md", ".markdown", ".txt", ".csv", ".xlsx", ".json", ".pdf", ".docx"} == set(
        SUPPORTED_SUFFIXES
    )
    assert load_bytes("UPPER.TXT", "大写后缀也可以。".encode()).chunks


# --- bad input -----------------------------------------------------------------------------


def _garbage(size: int = 4096) -> bytes:
    return random.Random(7).randbytes(size)


@pytest.mark.parametrize("suffix", sorted(SUPPORTED_SUFFIXES))
def test_empty_files_are_rejected(suffix: str) -> None:
    for data in (b"", b" \n\t\n"):
        with pytest.raises(LoaderError, match=rf"empty{suffix}: the file is empty"):
            load_bytes(f"empty{suffix}", data)


@pytest.mark.parametrize("suffix", [".txt", ".md", ".csv", ".json"])
def test_binary_garbage_in_a_text_format_is_rejected(suffix: str) -> None:
    with pytest.raises(LoaderError, match=rf"junk{suffix}: .*(binary|decode)"):
        load_bytes(f"junk{suffix}", _garbage())


@pytest.mark.parametrize(
    ("suffix", "message"),
    [
        (".pdf", "not a readable PDF"),
        (".docx", "not a readable .docx"),
        (".xlsx", "not a readable .xlsx"),
    ],
)
def test_corrupt_binary_documents_are_rejected(suffix: str, message: str) -> None:
    with pytest.raises(LoaderError, match=f"broken{suffix}: {message}"):
        load_bytes(f"broken{suffix}", _garbage())


def test_truncated_pdf_is_rejected() -> None:
    pdf = make_pdf([["Hello."]])
    with pytest.raises(LoaderError, match=r"cut\.pdf: not a readable PDF"):
        load_bytes("cut.pdf", pdf[: len(pdf) // 3])


def test_pdf_without_text_is_rejected() -> None:
    with pytest.raises(LoaderError, match="no extractable text"):
        load_bytes("scan.pdf", make_pdf([[]]))


def _zip(parts: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, body in parts.items():
            archive.writestr(name, body)
    return buffer.getvalue()


def test_zip_that_is_not_a_docx_is_rejected() -> None:
    with pytest.raises(LoaderError, match=r"word/document\.xml is missing"):
        load_bytes("fake.docx", _zip({"hello.txt": b"hi"}))


def test_docx_with_broken_xml_is_rejected() -> None:
    with pytest.raises(LoaderError, match=r"bad.docx: not a readable .docx file \(KeyError"):
        load_bytes("bad.docx", _zip({"word/document.xml": b"<w:document><w:body>"}))
    with zipfile.ZipFile(io.BytesIO(make_docx(["正文。"]))) as good:
        parts = {name: good.read(name) for name in good.namelist()}
    parts["word/document.xml"] = b"<w:document><w:body>"
    with pytest.raises(LoaderError, match=r"bad.docx: not a readable .docx file \(XMLSyntaxError"):
        load_bytes("bad.docx", _zip(parts))


def test_docx_with_a_dtd_is_refused() -> None:
    evil = b'<?xml version="1.0"?><!DOCTYPE d [<!ENTITY a "aaaa">]><d>&a;</d>'
    with pytest.raises(LoaderError, match="DTD"):
        load_bytes("evil.docx", _zip({"word/document.xml": evil}))


@pytest.mark.parametrize("name", ["photo.jpg", "archive.zip", "README", "data.xls"])
def test_unknown_suffixes_are_unsupported(name: str) -> None:
    with pytest.raises(UnsupportedFormat, match=f"{name}: cannot load .*supported: .csv"):
        load_bytes(name, b"whatever")


def test_missing_file_is_a_loader_error(tmp_path: Path) -> None:
    with pytest.raises(LoaderError, match=r"gone.md: cannot read"):
        load_path(tmp_path / "gone.md")


def test_directory_with_a_suffix_is_a_loader_error(tmp_path: Path) -> None:
    (tmp_path / "dir.md").mkdir()
    with pytest.raises(LoaderError, match=r"dir\.md: cannot read"):
        load_path(tmp_path / "dir.md")


def test_headings_only_markdown_has_nothing_to_index() -> None:
    with pytest.raises(LoaderError, match="no text to index"):
        load_bytes("empty.md", "---\nkind: faq\n---\n# 标题\n## 小标题\n".encode())


# --- content hash --------------------------------------------------------------------------


def test_same_content_same_hash_and_changes_change_it(tmp_path: Path) -> None:
    first = load_path(_write(tmp_path, "a.md", PROMO_MD))
    again = load_bytes("a.md", PROMO_MD.encode())
    assert first.content_hash == again.content_hash
    assert len(first.content_hash) == 64
    assert first.content_hash == content_hash(first.meta, first.chunks)

    edited = load_bytes("a.md", PROMO_MD.replace("立减5元", "立减6元").encode())
    assert edited.content_hash != first.content_hash
    rescoped = load_bytes("a.md", PROMO_MD.encode(), MetaOverrides(store_id="sh-pudong"))
    assert rescoped.content_hash != first.content_hash


def test_hash_is_about_instants_not_zones() -> None:
    doc = load_bytes("a.md", PROMO_MD.encode())
    start = doc.meta.valid_from
    assert start is not None
    same_instant = replace(doc.meta, valid_from=start.astimezone(ZoneInfo("UTC")))
    assert content_hash(same_instant, doc.chunks) == doc.content_hash
    later = replace(doc.meta, valid_from=datetime(2026, 11, 2, tzinfo=SH))
    assert content_hash(later, doc.chunks) != doc.content_hash
