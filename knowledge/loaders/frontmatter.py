"""Markdown front matter: YAML between a first line ``---`` and a closing ``---`` (or ``...``).

What operators write, and what comes out::

    kind: promotion            # comments are dropped
    title: "双十一 会员日"       # quotes are optional
    tags: [烘焙, 会员]           # flow list
    skus:                       # block list
      - SY-1024
      - 001234                  # a string, as written (never the number 1234 or octal 668)
    有效期至：2026-11-30         # a full-width colon after a key is read as ":"

Parsed by PyYAML's ``BaseLoader``: the safe loader family (no object construction, nothing can
be executed) without type resolution, so every value is the text as written (``2026-11-30``,
``12.50``, ``yes``) and :mod:`knowledge.metadata` interprets it, with errors naming the key. A
value must be a plain value or a list of plain values; a nested map, a list of lists or YAML that
does not parse is a MetadataError naming the file and the line, never guessed at.
"""

from __future__ import annotations

import re
from typing import Final

import yaml

from knowledge.errors import MetadataError

FrontMatter = dict[str, str | list[str]]

_OPEN: Final = "---"
_CLOSE: Final = frozenset({"---", "..."})
# ``key：value`` (full-width colon, as typed with a Chinese input method) on a top-level key line.
_FULL_WIDTH_KEY: Final = re.compile(r"^([^\s:：#\"'-][^:：\"']*?)\s*：", re.MULTILINE)


def split_front_matter(name: str, text: str) -> tuple[FrontMatter, str]:
    """Return (front matter, body). Without a closed front matter block: ({}, text)."""
    lines = text.lstrip("\ufeff").split("\n")
    if not lines or lines[0].strip() != _OPEN:
        return {}, text
    end = next((i for i, line in enumerate(lines[1:], 1) if line.strip() in _CLOSE), None)
    if end is None:
        return {}, text
    return _parse(name, "\n".join(lines[1:end])), "\n".join(lines[end + 1 :])


def _parse(name: str, block: str) -> FrontMatter:
    """The block's keys and values; line numbers in errors count the opening ``---`` as 1."""
    try:
        data = yaml.load(_FULL_WIDTH_KEY.sub(r"\1: ", block), Loader=yaml.BaseLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 2}" if mark is not None else "block"
        problem = getattr(exc, "problem", None) or "not valid YAML"
        raise MetadataError(f"{name}: front matter {where}: cannot read it ({problem})") from exc
    if data is None or data == "":
        return {}
    if not isinstance(data, dict):
        raise MetadataError(f"{name}: front matter line 2: cannot read {_first_line(block)!r}")
    return {str(key): _value(name, str(key), value) for key, value in data.items()}


def _value(name: str, key: str, value: object) -> str | list[str]:
    if isinstance(value, str):
        return value.strip() or []  # ``key:`` with nothing after it: an empty list, as before
    if isinstance(value, list) and all(isinstance(item, str) for item in value):
        return [item.strip() for item in value if item.strip()]
    raise MetadataError(
        f"{name}: front matter key {key!r}: only plain values and lists of them are supported"
    )


def _first_line(block: str) -> str:
    return next((line.strip() for line in block.split("\n") if line.strip()), "")
