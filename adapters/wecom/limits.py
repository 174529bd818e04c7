"""Byte limits of WeChat / WeCom outbound text, and splitting long answers to fit them.

The platforms count UTF-8 bytes, not characters (a Chinese character is 3 bytes, most emoji 4),
and silently drop or reject a message over the limit, so every outbound text is measured here
before it is sent. A long answer is split where a reader would pause: between paragraphs, then
after a sentence end, and only as a last resort between characters. A character is never cut, nor
an emoji sequence (grapheme clusters, :mod:`bot.text`). :func:`fit_window` splits an answer to
what a member's contact window still allows (:mod:`bot.contact`).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from datetime import datetime

from bot.contact import ContactLedger
from bot.text import ELLIPSIS, byte_prefix, graphemes, utf8_len
from bot.types import Address

TEXT_MAX_BYTES = 2048
MARKDOWN_MAX_BYTES = 4096

_MIN_MAX_BYTES = 8  # room for the ellipsis (3 bytes) and one 4-byte character
_PARAGRAPH_END = re.compile(r"\n[ \t\r\f\v]*\n\s*")
_SENTENCE_END = re.compile(r"[。！？!?；\n]+[”’」』）)\"']*")


def split_text(
    text: str, max_bytes: int = TEXT_MAX_BYTES, *, max_parts: int | None = None
) -> list[str]:
    """Split ``text`` into parts of at most ``max_bytes`` UTF-8 bytes each.

    Parts are cut at paragraph breaks, then sentence ends (。！？!?；newline), then between
    characters, and are stripped of surrounding whitespace; blank text gives no parts. With
    ``max_parts``, text beyond the last allowed part is dropped and that part ends with "…".
    """
    if max_bytes < _MIN_MAX_BYTES:
        raise ValueError(f"max_bytes must be at least {_MIN_MAX_BYTES}, got {max_bytes}")
    if max_parts is not None and max_parts < 1:
        raise ValueError(f"max_parts must be at least 1, got {max_parts}")
    stripped = text.strip()
    if not stripped:
        return []
    parts = _split(stripped, max_bytes)
    if max_parts is not None and len(parts) > max_parts:
        parts = [*parts[: max_parts - 1], truncate(parts[max_parts - 1], max_bytes)]
    return parts


def truncate(text: str, max_bytes: int) -> str:
    """``text`` cut between characters so that it plus "…" fits ``max_bytes``, then "…"."""
    return byte_prefix(text, max_bytes - utf8_len(ELLIPSIS)).rstrip() + ELLIPSIS


def _split(text: str, max_bytes: int) -> list[str]:
    """Pack the pieces greedily into parts; a heading stays with the paragraph that follows."""
    parts: list[str] = []
    current: list[str] = []
    used = 0
    for piece in _pieces(text, max_bytes, level=0):
        size = utf8_len(piece)
        if used + size > max_bytes:
            _flush(parts, current)
            current, used = [], 0
        current.append(piece)
        used += size
    _flush(parts, current)
    return parts


def _pieces(text: str, max_bytes: int, *, level: int) -> Iterator[str]:
    """The text's pieces at this level; one too big is cut at the next, finer level."""
    for piece in _LEVELS[level](text):
        if utf8_len(piece) <= max_bytes:
            yield piece
        else:
            yield from _pieces(piece, max_bytes, level=level + 1)


def _flush(parts: list[str], current: list[str]) -> None:
    part = "".join(current).strip()
    if part:
        parts.append(part)


def _cut_after(pattern: re.Pattern[str]) -> Callable[[str], list[str]]:
    def cut(text: str) -> list[str]:
        pieces: list[str] = []
        start = 0
        for match in pattern.finditer(text):
            pieces.append(text[start : match.end()])
            start = match.end()
        if start < len(text):
            pieces.append(text[start:])
        return pieces

    return cut


# Paragraphs, then sentences, then user-perceived characters, then code points: the last level
# only runs for a single emoji sequence longer than max_bytes (a ZWJ family is 25 bytes), and a
# code point (at most 4 bytes) always fits because max_bytes is at least 8.
_LEVELS: list[Callable[[str], list[str]]] = [
    _cut_after(_PARAGRAPH_END),
    _cut_after(_SENTENCE_END),
    graphemes,
    list,
]


FIT_ATTEMPTS = 3
"""How often :func:`fit_window` re-reads a window that another sender used meanwhile."""


async def fit_window(
    ledger: ContactLedger, address: Address, text: str, at: datetime, *, max_parts: int
) -> list[str]:
    """``text`` split into as many parts as ``address``'s contact window still allows (at most
    ``max_parts``), those sends consumed before anything is sent; [] when the window allows none.

    The answer is shortened to fit (its last part ends with "…") rather than cut off after its
    first parts. When another sender used the window between the read and the consume, it is
    read again, up to :data:`FIT_ATTEMPTS` times; then nothing is sent.
    """
    for _ in range(FIT_ATTEMPTS):
        allowed = min(await ledger.remaining(address, at), max_parts)
        if allowed < 1:
            return []
        parts = split_text(text, max_parts=allowed)
        if not parts or await ledger.consume(address, len(parts), at):
            return parts
    return []
