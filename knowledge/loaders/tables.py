"""Rows of a QA table or a product table → chunks (shared by CSV, XLSX and JSON).

Headers are matched in Chinese or English (see :data:`TABLE_KEYS` and
:data:`knowledge.metadata.META_KEYS`). A table with a question column is a QA table: one chunk per
row, ``text = "问：…\\n答：…"``, indexed by the question and its variants. A table with sku and name
columns but no question column is a product table (``kind: product`` unless stated otherwise).

A row's metadata columns (kind, store, validity, tags, title) become that chunk's own metadata,
merged over the document's. A sku column alone does not: it fills ``ChunkDraft.skus`` (that is
what the exact-match path reads) without giving the row a metadata layer of its own.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import replace
from datetime import date, tzinfo
from typing import Final

from knowledge.errors import LoaderError
from knowledge.loaders.markdown import qa_draft
from knowledge.loaders.parsed import Parsed, Piece
from knowledge.loaders.textio import clean_cell
from knowledge.metadata import (
    META_KEYS,
    PartialMeta,
    RawValue,
    format_number,
    normalise_key,
    parse_raw_meta,
    parse_skus,
    reject_near_miss,
)
from knowledge.types import ChunkDraft, Kind

Row = Mapping[str, RawValue]
"""A table row keyed by canonical column names (``question``, ``skus``, ``valid_to``, ...)."""

TABLE_KEYS: Final[Mapping[str, str]] = {
    **{k: "question" for k in ("question", "问题", "标准问题", "问")},
    **{k: "answer" for k in ("answer", "答案", "回答", "答")},
    **{k: "variants" for k in ("variants", "相似问题", "扩展问", "相似问", "similar_questions")},
    **{k: "name" for k in ("name", "商品名称", "名称", "品名")},
    **{k: "price" for k in ("price", "价格", "售价")},
    **{k: "description" for k in ("description", "描述", "说明")},
    **{k: "spec" for k in ("spec", "规格")},
    **{k: "category" for k in ("category", "类别", "分类")},
}
_META_FIELDS: Final = frozenset(META_KEYS.values()) - {"skus"}
_VARIANT_SPLIT: Final = re.compile(r"\|\|?|\n|；")
_PRODUCT_FIELDS: Final = (("price", "价格"), ("spec", "规格"), ("category", "类别"))


def canonical_columns(headers: Sequence[object], where: str) -> list[str | None]:
    """Each header's canonical name, or None when unknown or a repeat of an earlier column.

    A header that looks like a misspelt metadata column (``vaild_to``) is a MetadataError.
    """
    seen: set[str] = set()
    names: list[str | None] = []
    for header in headers:
        key = normalise_key(str(header)) if header is not None else ""
        name = TABLE_KEYS.get(key) or META_KEYS.get(key)
        if name is None and key:
            reject_near_miss(str(header), where)
        names.append(name if name is not None and name not in seen else None)
        if name is not None:
            seen.add(name)
    return names


def table_to_parsed(
    name: str,
    rows: Iterable[tuple[str, Row]],
    tz: tzinfo,
    file_meta: PartialMeta | None = None,
    *,
    columns: Iterable[str] = (),
) -> Parsed:
    """Chunks for every usable row; no usable row or no known columns → LoaderError.

    ``columns`` are the table's canonical header names; keys used by any row count too (JSON).
    """
    rows = list(rows)
    known = {*columns, *(key for _, row in rows for key in row)}
    if "question" in known:
        if "answer" not in known:
            raise LoaderError(name, "has a question column but no answer column (answer/答案/回答)")
        pieces = [p for where, row in rows if (p := _qa_piece(row, where, tz)) is not None]
        defaults = PartialMeta()
    elif {"skus", "name"} <= known:
        pieces = [p for where, row in rows if (p := _product_piece(row, where, tz)) is not None]
        defaults = PartialMeta(kind=Kind.PRODUCT)
    else:
        found = ", ".join(sorted(known)) or "none"
        raise LoaderError(
            name,
            "needs question and answer columns (question/问题, answer/答案) or product columns "
            f"(sku/商品编码, name/商品名称); recognised columns: {found}",
        )
    if not pieces:
        raise LoaderError(name, "no usable rows (each row needs a question and an answer)")
    return Parsed(tuple(pieces), file_meta=file_meta or PartialMeta(), defaults=defaults)


def cell_text(value: RawValue) -> str:
    """A cell as trimmed text (numbers without a spurious ``.0``, dates in ISO form)."""
    if value is None:
        return ""
    if isinstance(value, str):
        return clean_cell(value)
    if isinstance(value, int | float):
        return format_number(value)
    if isinstance(value, date):
        return value.isoformat()
    return "\n".join(clean_cell(str(v)) for v in value)


def _qa_piece(row: Row, where: str, tz: tzinfo) -> Piece | None:
    question, answer = cell_text(row.get("question")), cell_text(row.get("answer"))
    if not question or not answer:
        return None
    variants = _variants(row.get("variants"), question)
    draft = qa_draft(question, answer, heading=question, variants=variants, skus=_skus(row))
    return Piece(draft, _row_meta(row, where, tz), where)


def _product_piece(row: Row, where: str, tz: tzinfo) -> Piece | None:
    skus, name = _skus(row), cell_text(row.get("name"))
    if not skus or not name:
        return None
    parts = [f"商品：{name}（货号 {skus[0]}）"]
    for key, label in _PRODUCT_FIELDS:
        value = _price(row.get(key)) if key == "price" else cell_text(row.get(key))
        if value:
            parts.append(f"{label}：{value}")
    text = "，".join(parts)
    description = cell_text(row.get("description"))
    if description:
        text = f"{text}。{description}"
    draft = ChunkDraft(text=text, index_texts=(name, skus[0]), answer=text, heading=name, skus=skus)
    return Piece(draft, _row_meta(row, where, tz), where)


def _row_meta(row: Row, where: str, tz: tzinfo) -> PartialMeta | None:
    layer = parse_raw_meta({k: v for k, v in row.items() if k in _META_FIELDS}, tz, where=where)
    if layer.is_empty():
        return None
    return replace(layer, skus=_skus(row) or None)


def _skus(row: Row) -> tuple[str, ...]:
    value = row.get("skus")
    return () if value is None else parse_skus(value)


def _variants(value: RawValue, question: str) -> tuple[str, ...]:
    if value is None:
        return ()
    items = (
        [cell_text(v) for v in value]
        if isinstance(value, list | tuple)
        else _VARIANT_SPLIT.split(cell_text(value))
    )
    cleaned = (v.strip() for v in items)
    return tuple(dict.fromkeys(v for v in cleaned if v and v != question))


def _price(value: RawValue) -> str:
    text = cell_text(value)
    if not text or text.endswith("元") or text[0] in "¥￥$":
        return text
    return f"{text}元"
