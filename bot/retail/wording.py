"""How retail answers read: dates as 12月8日, prices with 元, promotions as short lines.

Everything quoted (prices, conditions, dates in a promotion's text) is the knowledge's own text;
this module only trims what would repeat (a title the text starts with, a "活动时间" line the
answer states itself) and cuts long texts at a sentence end, never inside one.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import date, datetime, tzinfo
from typing import Final

from knowledge.records import Promotion

SHORT_TEXT: Final = 50
"""Characters of a promotion's text shown in a list line (cut at a sentence end after this)."""

_BULLET: Final = re.compile(r"^\s*(?:[-*+•·]|\d+[.)、])\s+", re.MULTILINE)
_MARKDOWN: Final = re.compile(r"\*\*|__|^#+\s*", re.MULTILINE)
_SENTENCE: Final = re.compile(r"[^。！？；!?\n]*[。！？；!?]?")
_PERIOD_LINE: Final = re.compile(
    r"^(?:活动)?(?:时间|日期|有效期)[：:][^。；;\n]*[。；;]?", re.MULTILINE
)


def day_text(when: datetime, tz: tzinfo, today: date) -> str:
    """``12月8日``; the year is added when it is not ``today``'s (``2027年1月4日``)."""
    local = when.astimezone(tz).date()
    if local.year != today.year:
        return f"{local.year}年{local.month}月{local.day}日"
    return f"{local.month}月{local.day}日"


def until_text(promo: Promotion, tz: tzinfo, now: datetime) -> str:
    """How long a running promotion lasts: ``至12月8日``, ``仅限今天（12月5日）``, ``长期有效``."""
    if promo.valid_to is None:
        return "长期有效"
    today = now.astimezone(tz).date()
    end = promo.valid_to.astimezone(tz).date()
    if end == today:
        return f"仅限今天（{day_text(promo.valid_to, tz, today)}）"
    return f"至{day_text(promo.valid_to, tz, today)}"


def window_text(promo: Promotion, tz: tzinfo, now: datetime) -> str:
    """``12月20日至2027年1月4日`` (or one open side: ``12月20日起``)."""
    today = now.astimezone(tz).date()
    start = day_text(promo.valid_from, tz, today) if promo.valid_from else ""
    end = day_text(promo.valid_to, tz, today) if promo.valid_to else ""
    if start and end:
        return f"{start}至{end}"
    return f"{start}起" if start else f"至{end}"


def promo_body(promo: Promotion, limit: int | None = SHORT_TEXT) -> str:
    """The promotion's text without its title prefix, Markdown marks or period line, on one
    line; cut after ``limit`` characters at a sentence end (None: whole)."""
    text = _MARKDOWN.sub("", _BULLET.sub("", promo.text))
    text = _PERIOD_LINE.sub("", text)
    # A long section's later chunks start with its heading path ("会员日 > 活动内容"): not content.
    lines = [ln.strip() for ln in text.splitlines() if ln.strip() and " > " not in ln]
    if lines and lines[0].strip("：: ") == promo.title:
        lines = lines[1:]
    body = "".join(_ended(line) for line in lines)
    prefix = re.match(rf"{re.escape(promo.title)}(?:活动)?\s*[：:]\s*", body)
    if prefix is not None and prefix.end() < len(body):
        body = body[prefix.end() :]
    return cut_at_sentence(body, limit) if limit else body


def cut_at_sentence(text: str, limit: int) -> str:
    """``text`` up to the first sentence end at or after ``limit`` characters."""
    if len(text) <= limit:
        return text
    out = ""
    for sentence in _SENTENCE.findall(text):
        out += sentence
        if len(out) >= limit:
            break
    return out if len(out) < len(text) else text


def _ended(line: str) -> str:
    return line if line[-1] in "。！？；!?：:" else f"{line}。"


def numbered(lines: Sequence[str]) -> str:
    """Short lines, one item each, numbered 1. 2. …"""
    return "\n".join(f"{i}. {line}" for i, line in enumerate(lines, 1))


def join_names(names: Sequence[str]) -> str:
    """``深圳南山店、深圳福田店``."""
    return "、".join(names)
