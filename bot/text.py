"""Text as the platforms measure it: UTF-8 bytes and user-perceived characters.

WeChat and WeCom cap messages in UTF-8 *bytes* (a Chinese character is 3, most emoji 4, a ZWJ
family 25), so every limit in Siyu is checked with :func:`utf8_len`, and every cut lands between
grapheme clusters (Unicode extended grapheme clusters, the ``regex`` module's ``\\X``): a
character is never split, nor an emoji sequence (skin tones, ZWJ families, flags, keycaps) or a
base and its combining marks. Where to cut (a sentence end, a paragraph, a fact) is the caller's
policy: :func:`bot.guard.fit_bytes` (answers), ``adapters.wecom.limits`` (splitting into
messages), ``campaigns.templates.shorten`` (campaign copy). Pure functions, no I/O.
"""

from __future__ import annotations

import regex

ELLIPSIS = "…"

_GRAPHEME = regex.compile(r"\X")


def utf8_len(text: str) -> int:
    """Length of ``text`` in UTF-8 bytes: what the platforms count (lone surrogates too)."""
    return len(text.encode("utf-8", "surrogatepass"))


def graphemes(text: str) -> list[str]:
    """``text`` as user-perceived characters (extended grapheme clusters), in order."""
    return _GRAPHEME.findall(text)


def byte_prefix(text: str, max_bytes: int) -> str:
    """The longest prefix of whole grapheme clusters of ``text`` within ``max_bytes`` bytes."""
    used = 0
    end = 0
    for match in _GRAPHEME.finditer(text):
        size = utf8_len(match.group())
        if used + size > max_bytes:
            break
        used += size
        end = match.end()
    return text[:end]
