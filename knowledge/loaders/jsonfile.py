"""JSON files: three shapes, all ending up as table rows.

- ``[{"question": ..., "answer": ..., "variants": [...], "valid_to": ...}, ...]``: a table whose
  headers are the objects' keys (in order of first appearance), read in any shape like a CSV
  (QA, product, store or promotion; see :mod:`knowledge.loaders.shapes`).
- ``{"问题一": "答案一", ...}``: a question → answer mapping (every value a string).
- ``{"meta": {"kind": "promotion", ...}, "items": [...]}``: document metadata plus either of the
  above as ``items``.

Item keys are columns (unused ones are warnings or errors as in any table:
:mod:`knowledge.loaders.unused`). A ``meta`` key that is not a metadata key is a warning naming
it, or an error when it looks like a date or a store scope (``有效期``, ``门店列表``).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from knowledge.errors import LoaderError, MetadataError
from knowledge.loaders.parsed import Parsed
from knowledge.loaders.rows import RawTable
from knowledge.loaders.scope import LoadContext, scope_where
from knowledge.loaders.shapes import same_column
from knowledge.loaders.tables import parse_tables
from knowledge.loaders.textio import decode_bytes
from knowledge.loaders.unused import metadata_like
from knowledge.metadata import META_KEYS, PartialMeta, RawValue, normalise_key, parse_raw_meta


def parse_json(name: str, data: bytes, ctx: LoadContext) -> Parsed:
    """Parse a JSON table, question→answer mapping, or ``{"meta", "items"}`` document."""
    try:
        document: Any = json.loads(decode_bytes(name, data))
    except json.JSONDecodeError as exc:
        raise LoaderError(
            name, f"invalid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}"
        ) from exc
    file_meta = PartialMeta()
    if isinstance(document, dict) and "items" in document:
        meta = document.get("meta")
        meta = {} if meta is None else meta
        if not isinstance(meta, dict):
            raise LoaderError(name, '"meta" must be an object')
        raw = _raw(name, "meta", meta)
        layer = parse_raw_meta(raw, ctx.tz, where=f"{name} meta")
        _check_meta_keys(name, raw, ctx)
        file_meta = ctx.scoped(layer, scope_where(f"{name} meta", raw))
        document = document["items"]
    return parse_tables(name, [_table(name, document)], ctx, file_meta)


def _check_meta_keys(name: str, raw: Mapping[str, RawValue], ctx: LoadContext) -> None:
    for key, value in raw.items():
        if normalise_key(key) in META_KEYS:
            continue
        what = metadata_like(key, [value] if value not in (None, "", []) else [], ctx)
        known = ", ".join(dict.fromkeys(META_KEYS))
        if what:
            raise MetadataError(
                f"{name} meta, key {key!r}: looks like {what} but is not a metadata key; "
                f"use one of {known}"
            )
        ctx.warn(f"{name} meta, key {key!r}: not used (metadata keys: {known})")


def _table(name: str, document: Any) -> RawTable:
    if isinstance(document, list):
        items = [_item(name, i, item) for i, item in enumerate(document, 1)]
        same = same_column(list(dict.fromkeys(key for item in items for key in item)))
        items = [{same[key]: value for key, value in item.items()} for item in items]
        headers = tuple(dict.fromkeys(key for item in items for key in item))
        rows = tuple(
            (f"{name} item {i}", tuple(item.get(h) for h in headers))
            for i, item in enumerate(items, 1)
        )
        return RawTable(name, headers, rows, header_where=f"{name} keys", cell_word="key")
    if isinstance(document, dict) and all(isinstance(v, str) for v in document.values()):
        pairs = tuple(
            (f"{name} item {i}", (str(q), a)) for i, (q, a) in enumerate(document.items(), 1)
        )
        return RawTable(name, ("question", "answer"), pairs)
    raise LoaderError(
        name,
        "expected a list of {question, answer} objects, a {question: answer} object, "
        'or {"meta": {...}, "items": [...]}',
    )


def _item(name: str, number: int, item: Any) -> dict[str, RawValue]:
    if not isinstance(item, dict):
        raise LoaderError(name, f"item {number} is not an object")
    return _raw(name, f"item {number}", item)


def _raw(name: str, where: str, obj: Mapping[str, Any]) -> dict[str, RawValue]:
    return {str(key): _value(name, f"{where}.{key}", value) for key, value in obj.items()}


def _value(name: str, where: str, value: Any) -> RawValue:
    if isinstance(value, bool):
        return str(value).lower()
    if value is None or isinstance(value, str | int | float):
        return value
    if isinstance(value, list) and all(isinstance(v, str | int | float) for v in value):
        return [str(v) for v in value]
    raise LoaderError(name, f"{where}: expected text, a number or a list of them")
