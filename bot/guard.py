"""The last check before a reply leaves: plain text that fits the channel, never empty.

WeChat and WeCom show text, not Markdown, and cap a text message at 2048 UTF-8 *bytes* (a Chinese
character is 3 bytes). :func:`guard_text` strips Markdown, collapses blank lines and truncates at a
sentence end (or a grapheme boundary, :mod:`bot.text`) with "…". Pure functions, no I/O.
"""

from __future__ import annotations

import re

from bot.text import ELLIPSIS, byte_prefix, utf8_len

FALLBACK_TEXT = "抱歉，我没能理解您的问题，请换个说法再试试。"

_SENTENCE_ENDS = "。！？!?；;\n"
# Cutting at a sentence end is only worth it when it keeps most of the text.
_MIN_SENTENCE_KEEP = 0.5

# Line-anchored patterns use [ \t], not \s: \s would swallow the blank lines before them.
_FENCE = re.compile(r"^[ \t]*(```|~~~).*$", re.MULTILINE)
_HEADING = re.compile(r"^[ \t]{0,3}#{1,6}[ \t]+", re.MULTILINE)
_RULE = re.compile(r"^[ \t]*([-*_])([ \t]*\1){2,}[ \t]*$", re.MULTILINE)
_QUOTE = re.compile(r"^[ \t]*>[ \t]?", re.MULTILINE)
_BULLET = re.compile(r"^([ \t]*)[*+][ \t]+", re.MULTILINE)
_BOLD = re.compile(r"(\*\*|__)(?=\S)(.+?)(?<=\S)\1")
# ASCII neighbours only: "2*3" is arithmetic, but "全场*九折*" is emphasis next to CJK text.
_ITALIC = re.compile(r"(?<![*A-Za-z0-9])\*(?=\S)([^*\n]+?)(?<=\S)\*(?![*A-Za-z0-9])")
_CODE = re.compile(r"`([^`\n]+)`")
_LINK = re.compile(r"!?\[([^\]\n]*)\]\(([^)\s]+)\)")
_TABLE_SEPARATOR = re.compile(r"^\s*\|?\s*:?-{2,}:?\s*(\|\s*:?-{2,}:?\s*)*\|?\s*$")
_BLANK_RUN = re.compile(r"\n{3,}")


def _table_row(line: str) -> str | None:
    """A Markdown table row as a plain line of cells, or None when ``line`` is not one."""
    stripped = line.strip()
    if not (stripped.startswith("|") and stripped.endswith("|") and len(stripped) > 1):
        return None
    cells = [cell.strip() for cell in stripped[1:-1].split("|")]
    return "，".join(cell for cell in cells if cell)


def _flatten_tables(text: str) -> str:
    lines: list[str] = []
    for line in text.split("\n"):
        if _TABLE_SEPARATOR.match(line) and "|" in line:
            continue
        row = _table_row(line)
        lines.append(line if row is None else row)
    return "\n".join(lines)


def _link(match: re.Match[str]) -> str:
    label, url = match.group(1).strip(), match.group(2)
    return f"{label} {url}" if label and label != url else url


def strip_markdown(text: str) -> str:
    """Markdown the channels cannot show turned into plain text: headings, emphasis, code,
    links, block quotes, rules and tables (rows become lines of cells joined by "，")."""
    text = _FENCE.sub("", text)
    text = _RULE.sub("", text)
    text = _flatten_tables(text)
    text = _HEADING.sub("", text)
    text = _QUOTE.sub("", text)
    text = _BULLET.sub(r"\1- ", text)
    text = _LINK.sub(_link, text)
    text = _BOLD.sub(r"\2", text)
    text = _ITALIC.sub(r"\1", text)
    return _CODE.sub(r"\1", text)


def tidy_whitespace(text: str) -> str:
    """Trailing spaces removed, runs of blank lines collapsed to one, ends stripped."""
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    text = "\n".join(line.rstrip() for line in text.split("\n"))
    return _BLANK_RUN.sub("\n\n", text).strip()


def fit_bytes(text: str, max_bytes: int) -> str:
    """``text`` unchanged when it fits ``max_bytes`` UTF-8 bytes, else cut and ended with "…".

    The cut lands after the last sentence end when that keeps at least half the text, else on a
    character boundary. The result never exceeds ``max_bytes``.
    """
    if max_bytes < utf8_len(ELLIPSIS):
        raise ValueError(f"max_bytes must be at least {utf8_len(ELLIPSIS)}, got {max_bytes}")
    if utf8_len(text) <= max_bytes:
        return text
    budget = max_bytes - utf8_len(ELLIPSIS)
    head = byte_prefix(text, budget)
    cut = max(head.rfind(ch) for ch in _SENTENCE_ENDS)
    if cut >= 0 and cut + 1 >= len(head) * _MIN_SENTENCE_KEEP:
        head = head[: cut + 1]
    return head.rstrip() + ELLIPSIS


def guard_text(text: str, max_bytes: int, fallback: str = FALLBACK_TEXT) -> str:
    """Plain, tidy text within ``max_bytes``; ``fallback`` when nothing would be left."""
    plain = tidy_whitespace(strip_markdown(text))
    if not plain:
        plain = fallback
    return fit_bytes(plain, max_bytes)
