"""Text as the platforms measure it: UTF-8 bytes and user-perceived characters.

WeChat and WeCom cap messages in UTF-8 *bytes* (a Chinese character is 3, most emoji 4, a ZWJ
family 25), so every limit in Siyu is checked with :func:`utf8_len`, and every cut lands between
grapheme clusters (Unicode extended grapheme clusters, the ``regex`` module's ``\\X``): a
character is never split, nor an emoji sequence (skin tones, ZWJ families, flags, keycaps) or a
base and its combining marks. Where to cut (a sentence end, a paragraph, a fact) is the caller's
policy: :func:`bot.guard.fit_bytes` (answers), ``adapters.wecom.limits`` (splitting into
messages), ``campaigns.templates.shorten`` (campaign copy). Pure functions, no I/O.

Unencodable text: a Python ``str`` may hold code points no UTF-8 byte sequence can carry — the
surrogates U+D800–U+DFFF, which JSON lets a sender write as ``"\\ud800"`` escapes (stdlib
``json`` decodes them into the string). Such a string fails later, far from where it came in:
``str.encode`` raises when a socket writes it, SQLite refuses to store it. So every adapter
refuses it at the edge with :func:`encodable` / :func:`describe_unencodable` (400 on HTTP, an
error frame on the web chat, a skipped and counted kf message). Only surrogates are refused: a
pair of escapes that encodes one emoji (``"\\ud83d\\ude00"``) is decoded by JSON into that one
character, and ZWJ sequences, variation selectors, tag characters (flags of regions) and other
format characters (Cf) are ordinary encodable text. An adapter that refuses invisible
characters (a bidi override spoofs a name) asks :func:`stray_control`, which knows the format
characters emoji are made of and never refuses an emoji.
"""

from __future__ import annotations

import json
import re
from collections import deque

import regex

ELLIPSIS = "…"

_GRAPHEME = regex.compile(r"\X")
_SURROGATE = re.compile("[\ud800-\udfff]")
_PICTOGRAPHIC = regex.compile(r"\p{Extended_Pictographic}")
_CONTROL = regex.compile(r"[\p{Cc}\p{Cf}\p{Zl}\p{Zp}]")
_JOINERS = frozenset("\u200c\u200d")
"""ZWNJ and ZWJ: ZWJ joins emoji (👨‍👩‍👧) and both shape Indic and Arabic letters."""
_TAGS = range(0xE0020, 0xE0080)
"""Tag characters: they spell a region flag after 🏴 (🏴󠁧󠁢󠁳󠁣󠁴󠁿); anywhere else they are invisible text."""


def encodable(text: str) -> bool:
    """True when ``text`` can be encoded as UTF-8: it holds no (lone) surrogate code point."""
    return _SURROGATE.search(text) is None


def describe_unencodable(text: str) -> str | None:
    """None for encodable text; else one line naming the first code point UTF-8 cannot carry
    and where it is (``"lone surrogate U+D800 at character 3"``, counted from 1)."""
    found = _SURROGATE.search(text)
    if found is None:
        return None
    return f"lone surrogate U+{ord(found.group()):04X} at character {found.start() + 1}"


def stray_control(text: str, *, allow: str = "") -> str | None:
    """The first control, line/paragraph separator or invisible format character of ``text``
    that is not part of an emoji (and not in ``allow``), or None.

    Format characters (Cf) are refused — bidi overrides, zero-width spaces, soft hyphens — except
    the joiners (ZWJ, ZWNJ) and tag characters that follow a pictograph (a subdivision flag's
    tag sequence). Variation selectors, skin tones, keycaps and regional-indicator flags are not
    controls at all. Only the candidates are looked at (one scan in C), so ordinary text costs
    next to nothing."""
    for found in _CONTROL.finditer(text):
        ch = found.group()
        if ch in allow or ch in _JOINERS:
            continue
        if ord(ch) in _TAGS and _tags_follow_pictograph(text, found.start()):
            continue
        return ch
    return None


def _tags_follow_pictograph(text: str, index: int) -> bool:
    """True when the run of tag characters holding ``text[index]`` follows a pictograph."""
    while index > 0 and ord(text[index - 1]) in _TAGS:
        index -= 1
    return index > 0 and _PICTOGRAPHIC.fullmatch(text[index - 1]) is not None


def describe_unencodable_json(raw: str | bytes) -> str | None:
    """Why a JSON document cannot be taken as text, if it is because a string in it (a key or a
    value) decodes to unencodable text: ``"text: lone surrogate U+D800 at character 2"``, naming
    the first such string by its path. None for anything else (including JSON that does not
    parse at all).

    For the error path of strict parsers (pydantic's) that refuse such escapes as "invalid
    JSON": it tells the sender what is actually wrong. The permissive stdlib parser reads the
    document again; only a document already refused is read twice.
    """
    try:
        document = json.loads(raw)
    except (ValueError, RecursionError):  # not JSON at all, or nested past the parser's limit
        return None
    pending: deque[tuple[str, object]] = deque([("", document)])
    while pending:
        path, value = pending.popleft()
        if isinstance(value, str):
            problem = describe_unencodable(value)
            if problem is not None:
                return f"{path or 'value'}: {problem}"
        elif isinstance(value, dict):
            pending.extend(_json_members(path, value))
        elif isinstance(value, list):
            pending.extend((f"{path}[{i}]", item) for i, item in enumerate(value))
    return None


def _json_members(path: str, members: dict[str, object]) -> list[tuple[str, object]]:
    """An object's keys and values to check, keys as strings of their own."""
    out: list[tuple[str, object]] = []
    for key, value in members.items():
        inner = f"{path}.{key}" if path else key
        if not encodable(key):
            out.append((f"{path or 'value'} key", key))
        else:
            out.append((inner, value))
    return out


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
