"""Retail record rows → chunk drafts: products, stores and promotions.

Each row becomes one chunk whose ``fields`` hold the record's values as written (field names:
:data:`knowledge.records.STORE_FIELDS`, :data:`~knowledge.records.PRODUCT_FIELDS`, plus a
product's ``brand``/``origin``/``unit``), with a readable ``text``:

- product: ``商品：智利车厘子（货号 YJ-F-1001），价格：159元，规格：2斤装，类别：水果`` (then
  ``。`` and the description), indexed by its name, aliases and SKU. SKU, name and price are
  required on every row.
- store: ``深圳南山店\\n地址：…\\n营业时间：…\\n电话：…\\n停车：…``, indexed by its name, aliases
  and that text. A name or an id is required.
- promotion: the text (the title when there is none), headed by the title; its title, store scope,
  validity and SKUs are the row's metadata (:func:`knowledge.loaders.rows.read_meta`), its
  category a field. A title or a text is required.

A missing required value is a :class:`~knowledge.errors.MetadataError` naming the row and column.
"""

from __future__ import annotations

from typing import Final

from knowledge.errors import MetadataError
from knowledge.loaders.rows import TableRow
from knowledge.metadata import parse_skus
from knowledge.records import PRODUCT_FIELDS, STORE_FIELDS, price_with_unit, split_list
from knowledge.types import ChunkDraft

Fields = tuple[tuple[str, str], ...]

PRODUCT_EXTRAS: Final = ("brand", "origin", "unit")
"""Product values kept beyond :data:`~knowledge.records.PRODUCT_FIELDS` (shown in the text)."""

_PRODUCT_LABELS: Final = (
    ("price", "价格"), ("spec", "规格"), ("category", "类别"), ("brand", "品牌"),
    ("origin", "产地"), ("unit", "单位"), ("aliases", "别名"),
)  # fmt: skip
_STORE_LABELS: Final = (
    ("aliases", "别名"), ("city", "城市"), ("address", "地址"), ("hours", "营业时间"),
    ("phone", "电话"), ("parking", "停车"), ("notes", "备注"),
)  # fmt: skip


def product_draft(row: TableRow) -> ChunkDraft:
    """The chunk of a product row; a row without SKU, name or price is refused."""
    sku = _single_sku(row)
    name, price = _required(row, "name", "a name"), _required(row, "price", "a price")
    fields = record_fields(row, (*PRODUCT_FIELDS, *PRODUCT_EXTRAS))
    values = dict(fields)
    parts = [f"商品：{name}（货号 {sku}）"]
    for key, label in _PRODUCT_LABELS:
        if values.get(key):
            value = price_with_unit(price) if key == "price" else values[key]
            parts.append(f"{label}：{value}")
    text = "，".join(parts)
    if values.get("description"):
        text = f"{text}。{values['description']}"
    aliases = split_list(values.get("aliases", ""))
    index = tuple(dict.fromkeys((name, *aliases, sku)))
    return ChunkDraft(
        text=text, index_texts=index, answer=text, heading=name, skus=(sku,), fields=fields
    )


def store_draft(row: TableRow) -> ChunkDraft:
    """The chunk of a store row; a row with neither a name nor an id is refused."""
    fields = record_fields(row, STORE_FIELDS)
    values = dict(fields)
    name = values.get("name") or values.get("store_id", "")
    if not name:
        raise MetadataError(
            f"{row.where}: a store needs a name (column {row.layout.header('name')}) "
            f"or an id (column {row.layout.header('store_id')})"
        )
    lines = [name, *(f"{label}：{values[k]}" for k, label in _STORE_LABELS if values.get(k))]
    text = "\n".join(lines)
    aliases = split_list(values.get("aliases", ""))
    index = tuple(dict.fromkeys((name, *aliases, text)))
    return ChunkDraft(text=text, index_texts=index, heading=name, fields=fields)


def promotion_draft(row: TableRow, skus: tuple[str, ...]) -> ChunkDraft:
    """The chunk of a promotion row; a row with neither a title nor a text is refused."""
    title, body = row.text("title"), row.text("text")
    if not title and not body:
        raise MetadataError(
            f"{row.where}: a promotion needs a title (column {row.layout.header('title')}) "
            f"or a text (column {row.layout.header('text')})"
        )
    text = body or title
    index = (text, title) if title and title not in text else ()
    fields = record_fields(row, ("category",))
    return ChunkDraft(text=text, index_texts=index, heading=title, skus=skus, fields=fields)


def record_fields(row: TableRow, names: tuple[str, ...]) -> Fields:
    """The row's non-empty values among ``names``, as written, in ``names`` order."""
    return tuple((name, value) for name in names if (value := row.text(name)))


def _required(row: TableRow, field: str, what: str) -> str:
    value = row.text(field)
    if not value:
        raise MetadataError(f"{row.at(field)}: empty; every {row.layout.spec.noun} needs {what}")
    return value


def _single_sku(row: TableRow) -> str:
    written = _required(row, "sku", "a SKU")
    skus = parse_skus(written)
    if len(skus) != 1:
        raise MetadataError(f"{row.at('sku')}: one SKU per product, got {written!r}")
    return skus[0]
