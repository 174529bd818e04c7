"""JSON files: three shapes, all ending up as table rows.

- ``[{"question": ..., "answer": ..., "variants": [...], "valid_to": ...}, ...]``: a QA table
  (or a product table with ``sku``/``name`` keys); keys are matched like table headers.
- ``{"问题一": "答案一", ...}``: a question → answer mapping (every value a string).
- ``{"meta": {"kind": "promotion", ...}, "items": [...]}``: document metadata plus either of the
  above as ``items``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import tzinfo
from typing import Any

from knowledge.errors import LoaderError
from knowledge.loaders.parsed import Parsed
from knowledge.loaders.tables import Row, canonical_columns, table_to_parsed
from knowledge.loaders.textio import decode_bytes
from knowledge.metadata import PartialMeta, RawValue, parse_raw_meta


def parse_json(name: str, data: bytes, tz: tzinfo) -> Parsed:
    """Parse a JSON QA list, question→answer mapping, or ``{"meta", "items"}`` document."""
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
        file_meta = parse_raw_meta(_raw(name, "meta", meta), tz, where=f"{name} meta")
        document = document["items"]
    return table_to_parsed(name, _rows(name, document), tz, file_meta)


def _rows(name: str, document: Any) -> list[tuple[str, Row]]:
    if isinstance(document, list):
        return [(f"{name} item {i}", _item(name, i, item)) for i, item in enumerate(document, 1)]
    if isinstance(document, dict) and all(isinstance(v, str) for v in document.values()):
        return [
            (f"{name} item {i}", {"question": str(q), "answer": a})
            for i, (q, a) in enumerate(document.items(), 1)
        ]
    raise LoaderError(
        name,
        "expected a list of {question, answer} objects, a {question: answer} object, "
        'or {"meta": {...}, "items": [...]}',
    )


def _item(name: str, number: int, item: Any) -> Row:
    if not isinstance(item, dict):
        raise LoaderError(name, f"item {number} is not an object")
    raw = _raw(name, f"item {number}", item)
    columns = canonical_columns(list(raw), f"{name} item {number}")
    return {col: value for col, value in zip(columns, raw.values(), strict=True) if col}


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
