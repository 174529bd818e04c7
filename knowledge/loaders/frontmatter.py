"""A small, safe parser for Markdown front matter (the YAML subset operators actually write).

Supported, between a first line ``---`` and a closing ``---`` (or ``...``)::

    kind: promotion            # comments after values are dropped
    title: "双十一 会员日"       # quotes are optional
    tags: [烘焙, 会员]           # flow list
    skus:                       # block list
      - SY-1024
      - SY-2048

Anything else (nested maps, multi-line strings, anchors) is rejected with a MetadataError naming
the line, rather than guessed at. No YAML library is involved, so nothing can be executed.
"""

from __future__ import annotations

import re
from typing import Final

from knowledge.errors import MetadataError

FrontMatter = dict[str, str | list[str]]

_KEY_VALUE: Final = re.compile(r"([^\s:：#][^:：]*?)\s*[:：]\s*(.*)")
_LIST_ITEM: Final = re.compile(r"\s+-\s+(.*)|-\s+(.*)")
_OPEN: Final = "---"
_CLOSE: Final = frozenset({"---", "..."})


def split_front_matter(name: str, text: str) -> tuple[FrontMatter, str]:
    """Return (front matter, body). Without a closed front matter block: ({}, text)."""
    lines = text.lstrip("\ufeff").split("\n")
    if not lines or lines[0].strip() != _OPEN:
        return {}, text
    end = next((i for i, line in enumerate(lines[1:], 1) if line.strip() in _CLOSE), None)
    if end is None:
        return {}, text
    return _parse(name, lines[1:end]), "\n".join(lines[end + 1 :])


def _parse(name: str, lines: list[str]) -> FrontMatter:
    result: FrontMatter = {}
    current: str | None = None
    for number, raw in enumerate(lines, 2):
        line = raw.rstrip()
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        item = _LIST_ITEM.fullmatch(line)
        target = result.get(current) if current is not None else None
        if item is not None and isinstance(target, list):
            target.append(_scalar(item.group(1) or item.group(2) or ""))
            continue
        match = _KEY_VALUE.fullmatch(line)
        if match is None or line[0].isspace():
            raise MetadataError(f"{name}: front matter line {number}: cannot read {line.strip()!r}")
        current = match.group(1).strip()
        result[current] = _value(match.group(2) or "", name, number)
    return result


def _value(raw: str, name: str, number: int) -> str | list[str]:
    raw = _strip_comment(raw.strip())
    if raw.startswith("["):
        if not raw.endswith("]"):
            raise MetadataError(f"{name}: front matter line {number}: unclosed list {raw!r}")
        return [_scalar(v) for v in raw[1:-1].split(",") if v.strip()]
    if raw[:1] in ("|", ">", "&", "*", "{"):
        raise MetadataError(
            f"{name}: front matter line {number}: only plain values and lists are supported"
        )
    return [] if raw == "" else _scalar(raw)


def _scalar(raw: str) -> str:
    raw = raw.strip()
    if len(raw) >= 2 and raw[0] == raw[-1] and raw[0] in "\"'":
        return raw[1:-1]
    return _strip_comment(raw)


def _strip_comment(raw: str) -> str:
    if raw[:1] in "\"'":
        return raw
    return re.split(r"\s+#", raw, maxsplit=1)[0].strip()
