"""A stable fingerprint of a loaded document, so re-uploading unchanged content is a no-op.

The hash covers the effective metadata and every chunk (text, index texts, answer, heading, SKUs,
per-row metadata) serialised as canonical JSON: datetimes in UTC, enums by value, keys sorted.
The same instant written in another time zone therefore hashes the same; any change that could
alter an answer changes the hash. ``_VERSION`` is part of the input so a change to this encoding
deliberately invalidates old hashes.
"""

from __future__ import annotations

import enum
import functools
import hashlib
import json
from collections.abc import Sequence
from dataclasses import fields, is_dataclass
from datetime import UTC, datetime
from typing import Final

from knowledge.types import ChunkDraft, DocumentMeta

_VERSION: Final = "siyu-content-v1"


def content_hash(meta: DocumentMeta, chunks: Sequence[ChunkDraft]) -> str:
    """SHA-256 hex of the normalised metadata and chunks (stable across processes)."""
    payload = {"v": _VERSION, "meta": meta, "chunks": list(chunks)}
    encoded = json.dumps(
        payload, default=_encode, ensure_ascii=False, sort_keys=True, separators=(",", ":")
    )
    return hashlib.sha256(encoded.encode("utf-8")).hexdigest()


def _encode(value: object) -> object:
    """JSON form of what json cannot encode itself: dataclasses, datetimes, enums."""
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat()
    if isinstance(value, enum.Enum):
        return value.value
    if is_dataclass(value) and not isinstance(value, type):
        return {name: getattr(value, name) for name in _field_names(type(value))}
    raise TypeError(f"cannot hash a {type(value).__name__}")


@functools.cache
def _field_names(cls: type) -> tuple[str, ...]:
    # Every field, so a field added to the types later is hashed without touching this module.
    return tuple(f.name for f in fields(cls))
