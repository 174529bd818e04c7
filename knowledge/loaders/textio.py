"""Turning uploaded bytes into text: encoding detection and a guard against binary files.

Order tried: a BOM (UTF-8, UTF-16), then strict UTF-8, then GB18030 (a superset of GBK, which is
what Excel on Chinese Windows writes). Bytes that decode but hold NULs or many control characters
are binary, not text.
"""

from __future__ import annotations

import codecs
import re
from typing import Final

from knowledge.errors import LoaderError

_BOMS: Final = (
    (codecs.BOM_UTF8, "utf-8-sig"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
)
_CONTROL: Final = re.compile(r"[\x00-\x08\x0b\x0e-\x1f\x7f]")
_MAX_CONTROL_RATIO: Final = 0.01
_HTML_BREAK: Final = re.compile(r"<br\s*/?>", re.IGNORECASE)


def decode_bytes(name: str, data: bytes) -> str:
    """Decode a text upload; empty, undecodable or binary data → :class:`LoaderError`."""
    if not data.strip():
        raise LoaderError(name, "the file is empty")
    text = _decode(name, data)
    if "\x00" in text or len(_CONTROL.findall(text)) > _MAX_CONTROL_RATIO * len(text):
        raise LoaderError(name, "looks like a binary file, not text")
    if not text.strip():
        raise LoaderError(name, "the file is empty")
    return text


def clean_cell(text: str) -> str:
    """Trim a table cell or JSON string; ``<br>`` (common in exported FAQ systems) → newline."""
    return _HTML_BREAK.sub("\n", text).replace("\r\n", "\n").strip()


def _decode(name: str, data: bytes) -> str:
    for bom, encoding in _BOMS:
        if data.startswith(bom):
            try:
                return data.decode(encoding)
            except UnicodeDecodeError as exc:
                raise LoaderError(name, f"invalid {encoding} text: {exc.reason}") from exc
    for encoding in ("utf-8", "gb18030"):
        try:
            return data.decode(encoding)
        except UnicodeDecodeError:
            continue  # try the next encoding; the last failure is reported below
    raise LoaderError(name, "cannot decode the text (tried UTF-8 and GB18030/GBK)")
