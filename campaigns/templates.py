"""Operator templates for campaign copy without an LLM, and cutting text to a byte budget.

Placeholders: ``{brand} {segment} {interest} {promotions} {title} {valid_to}``.
:func:`template_fields` checks a template when the copy writer is built (an unknown placeholder
or a malformed format string is a ValueError then, not at send time); :func:`render_template`
fills one, each promotion as ``【title】`` and its text; :func:`shorten` cuts text at a sentence
(else clause) boundary, never inside a fact. :mod:`campaigns.copy` decides what to render.
"""

from __future__ import annotations

import re
import string
from collections.abc import Sequence
from datetime import datetime
from typing import Final
from zoneinfo import ZoneInfo

from bot.text import ELLIPSIS, byte_prefix, utf8_len
from campaigns.compliance import fact_spans
from campaigns.promotions import Promotion

PLACEHOLDERS: Final = frozenset({"brand", "segment", "interest", "promotions", "title", "valid_to"})

MAX_TEMPLATE_PROMOTIONS: Final = 3
"""A template message names at most this many promotions (those matching the interest first)."""
PROMOTION_SUMMARY_BYTES: Final = 360
"""Each promotion's text in a template message is cut to about 120 Chinese characters, at a
sentence boundary and never inside a fact: the title, dates and main offer, not the whole page
(a push is not the FAQ; the bot answers the details when the member asks)."""

DEFAULT_TEMPLATES: Final[dict[str, str]] = {
    "new": "欢迎加入{brand}！新朋友专享的优惠在这里：\n{promotions}",
    "active": "{brand}今日优惠：\n{promotions}",
    "at_risk": "好久没在{brand}见到您了，这些优惠正在进行，有空来逛逛：\n{promotions}",
    "dormant": "{brand}想念您了！为您挑了这些优惠，欢迎回来看看：\n{promotions}",
    "lost": "{brand}一直都在，有几项优惠想告诉您：\n{promotions}",
    "default": "{brand}优惠信息：\n{promotions}",
}
"""One template per lifecycle segment, and ``default`` for any other audience."""

_SENTENCE_END: Final = re.compile(r"[。！？!?；;\n]")
_CLAUSE_END: Final = re.compile(r"[，,、：:]")


def local_date(when: datetime, tz: ZoneInfo) -> str:
    """``2026年12月31日``: the spelling the promotions' own text uses."""
    day = when.astimezone(tz).date()
    return f"{day.year}年{day.month}月{day.day}日"


def _valid_to_text(promotions: Sequence[Promotion], tz: ZoneInfo) -> str:
    ends = [p.valid_to for p in promotions if p.valid_to is not None]
    return local_date(min(ends), tz) if ends else "长期有效"


def promotion_block(promotion: Promotion) -> str:
    """``【title】`` and the text, without repeating the title when the text starts with it."""
    first, _, rest = promotion.text.partition("\n")
    body = rest if first.strip() == promotion.title.strip() else promotion.text
    return f"【{promotion.title}】\n{body}" if body.strip() else f"【{promotion.title}】"


def render_template(
    template: str,
    *,
    brand: str,
    promotions: Sequence[Promotion],
    segment: str,
    interest: str | None,
    tz: ZoneInfo,
) -> str:
    """Fill a template's placeholders (see the module docstring); the opt-out hint is not added."""
    return template.format(
        brand=brand,
        segment=segment,
        interest=interest or "",
        promotions="\n\n".join(promotion_block(p) for p in promotions),
        title="、".join(p.title for p in promotions),
        valid_to=_valid_to_text(promotions, tz),
    )


def template_fields(name: str, template: str) -> str:
    """The template's static text; ValueError naming ``name`` for a malformed template."""
    try:
        parsed = list(string.Formatter().parse(template))
    except ValueError as exc:
        raise ValueError(f"copy template {name!r} is not a valid format string: {exc}") from None
    for _literal, field, spec, conversion in parsed:
        if field is None:
            continue
        if field not in PLACEHOLDERS:
            allowed = " ".join(f"{{{p}}}" for p in sorted(PLACEHOLDERS))
            raise ValueError(f"copy template {name!r} has unknown placeholder {{{field}}}; "
                             f"use {allowed}")  # fmt: skip
        if spec or conversion:
            raise ValueError(f"copy template {name!r}: placeholder {{{field}}} takes no format")
    return "".join(literal for literal, *_ in parsed)


def shorten(text: str, max_bytes: int) -> str:
    """``text`` if it fits, else its longest prefix ending at a sentence (else clause) boundary,
    plus "…"; as a last resort a cut before any fact it would split. "" when nothing fits."""
    if utf8_len(text) <= max_bytes:
        return text
    limit = max_bytes - utf8_len(ELLIPSIS)
    for boundary in (_SENTENCE_END, _CLAUSE_END):
        cuts = [m.end() for m in boundary.finditer(text)]
        fitting = [c for c in cuts if utf8_len(text[:c].rstrip()) <= limit]
        if fitting:
            return text[: max(fitting)].rstrip() + ELLIPSIS
    cut = len(byte_prefix(text, limit))
    for start, end in fact_spans(text):
        if start < cut < end:
            cut = start
    return text[:cut].rstrip() + ELLIPSIS if text[:cut].strip() else ""
