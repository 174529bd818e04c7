"""Chinese-aware splitting of prose into chunks: headings, then sentences, then packing.

1. :func:`split_headings` cuts Markdown at ATX headings (``#`` .. ``######``, not inside code
   fences) and keeps each block's heading path ("退换货政策 > 退货时限").
2. :func:`split_sentences` cuts a block at Chinese sentence ends (。！？；…), English ones (``.``
   before a space or the line end, ``!``, ``?``) and line ends. Blank lines collapse.
3. :func:`pack_text` packs whole sentences into chunks of at most ``max_chars``; the next chunk
   starts with the previous chunk's trailing whole sentences, up to ``overlap`` characters, so a
   fact cut at a chunk border is still found whole in one of them. Only a sentence longer than
   ``max_chars`` is cut: first at commas/colons/spaces, then, if still too long, into windows.

A section's chunks start with its heading path (:func:`with_heading`); Markdown, PDF and DOCX
sections are chunked the same way.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

MAX_CHARS: Final = 400
OVERLAP: Final = 80
HEADING_SEPARATOR: Final = " > "

_HEADING: Final = re.compile(r" {0,3}(#{1,6})[ \t]+(.+?)(?:[ \t]+#+)?[ \t]*")
_FENCE: Final = re.compile(r" {0,3}(```|~~~)")
_RULE: Final = re.compile(r" {0,3}([-*_])(?:[ \t]*\1){2,}[ \t]*")
_SENTENCE_END: Final = re.compile(r"(?:[。！？；…]+|[!?]+|\.(?=\s|$))[”’」』）)\]\"']*\s*")
_BLANK_RUN: Final = re.compile(r"\n[ \t]*\n(?:[ \t]*\n)+")
_SOFT_BREAK: Final = re.compile(r"[，,、：:]+\s*|\s+")


@dataclass(frozen=True, slots=True)
class Section:
    """A chunk of prose and the heading path it sits under ("" when there is none)."""

    heading: str
    text: str


@dataclass(frozen=True, slots=True)
class Block:
    """The text between two Markdown headings; ``path`` is the heading path (outermost first)."""

    path: tuple[str, ...]
    body: str

    @property
    def heading(self) -> str:
        """The path joined with :data:`HEADING_SEPARATOR`."""
        return HEADING_SEPARATOR.join(self.path)


@dataclass(frozen=True, slots=True)
class _Unit:
    """A sentence (or a piece of an over-long one) and what joins it to the next."""

    text: str
    joiner: str


def split_text(text: str, *, max_chars: int = MAX_CHARS, overlap: int = OVERLAP) -> list[Section]:
    """Split Markdown or plain text into sections of at most ``max_chars`` (see module doc)."""
    return [
        Section(block.heading, piece)
        for block in split_headings(text)
        for piece in pack_text(block.body, max_chars=max_chars, overlap=overlap)
    ]


def with_heading(heading: str, text: str) -> str:
    """A section chunk's stored text: its heading path on a first line, then the text.

    The heading words are searchable that way; what a member reads drops that line again
    (:attr:`knowledge.types.Chunk.answer_text`).
    """
    return f"{heading}\n{text}" if heading else text


def split_headings(text: str) -> list[Block]:
    """Cut Markdown at headings; blocks keep their heading path and may have an empty body."""
    blocks: list[Block] = []
    stack: list[tuple[int, str]] = []
    lines: list[str] = []
    in_fence = False
    for line in _lines(text):
        if _FENCE.match(line):
            in_fence = not in_fence
        heading = None if in_fence else _HEADING.fullmatch(line)
        if heading is None:
            if in_fence or not _RULE.fullmatch(line):
                lines.append(line)
            continue
        _close(blocks, stack, lines)
        level = len(heading.group(1))
        stack[:] = [(lv, h) for lv, h in stack if lv < level]
        stack.append((level, _clean_heading(heading.group(2))))
        lines = []
    _close(blocks, stack, lines)
    return blocks


def pack_text(text: str, *, max_chars: int = MAX_CHARS, overlap: int = OVERLAP) -> list[str]:
    """Pack the sentences of ``text`` into chunks of at most ``max_chars`` with ``overlap``."""
    _check_sizes(max_chars, overlap)
    units = [u for s in _units(text) for u in _fit(s, max_chars, overlap)]
    chunks: list[str] = []
    current: list[_Unit] = []
    for unit in units:
        if current and _length([*current, unit]) > max_chars:
            chunks.append(_join(current))
            current = _tail(current, overlap)
            while current and _length([*current, unit]) > max_chars:
                current.pop(0)
        current.append(unit)
    if current:
        chunks.append(_join(current))
    return chunks


def split_sentences(text: str) -> list[str]:
    """The sentences of ``text``, stripped, in order (line ends also end a sentence)."""
    return [unit.text for unit in _units(text)]


def _units(text: str) -> list[_Unit]:
    units: list[_Unit] = []
    for line in _lines(text):
        start = 0
        for match in _SENTENCE_END.finditer(line):
            _add(units, line[start : match.end()])
            start = match.end()
        _add(units, line[start:])
        if units:
            units[-1] = _Unit(units[-1].text, "\n")
    return units


def _add(units: list[_Unit], piece: str) -> None:
    text = piece.strip()
    if text:
        units.append(_Unit(text, " " if piece[-1].isspace() else ""))


def _fit(unit: _Unit, max_chars: int, overlap: int) -> list[_Unit]:
    """Cut a sentence longer than ``max_chars`` at soft breaks, then into overlapping windows."""
    if len(unit.text) <= max_chars:
        return [unit]
    pieces: list[_Unit] = []
    start = 0
    for match in _SOFT_BREAK.finditer(unit.text):
        pieces.append(_soft_piece(unit.text[start : match.end()]))
        start = match.end()
    if start < len(unit.text):
        pieces.append(_Unit(unit.text[start:], ""))
    pieces[-1] = _Unit(pieces[-1].text, unit.joiner)
    return [w for p in pieces if p.text for w in _windows(p, max_chars, overlap)]


def _soft_piece(raw: str) -> _Unit:
    return _Unit(raw.strip(), " " if raw[-1].isspace() else "")


def _windows(unit: _Unit, max_chars: int, overlap: int) -> list[_Unit]:
    text = unit.text
    if len(text) <= max_chars:
        return [unit]
    step = max_chars - overlap
    starts = range(0, max(len(text) - overlap, 1), step)
    out = [_Unit(text[i : i + max_chars], "") for i in starts]
    out[-1] = _Unit(out[-1].text, unit.joiner)
    return out


def _tail(units: list[_Unit], overlap: int) -> list[_Unit]:
    """The longest run of trailing units whose joined length fits in ``overlap``."""
    tail: list[_Unit] = []
    for unit in reversed(units):
        if _length([unit, *tail]) > overlap:
            break
        tail.insert(0, unit)
    return tail


def _join(units: list[_Unit]) -> str:
    return "".join(u.text + u.joiner for u in units[:-1]) + units[-1].text


def _length(units: list[_Unit]) -> int:
    return sum(len(u.text) + len(u.joiner) for u in units) - len(units[-1].joiner)


def _lines(text: str) -> list[str]:
    return text.replace("\r\n", "\n").replace("\r", "\n").split("\n")


def _close(blocks: list[Block], stack: list[tuple[int, str]], lines: list[str]) -> None:
    body = _BLANK_RUN.sub("\n\n", "\n".join(lines)).strip()
    if body or stack:
        blocks.append(Block(tuple(h for _, h in stack), body))


def _clean_heading(text: str) -> str:
    return re.sub(r"(\*\*|__)", "", text).strip()


def _check_sizes(max_chars: int, overlap: int) -> None:
    if max_chars < 1:
        raise ValueError(f"max_chars must be positive, got {max_chars}")
    if not 0 <= overlap < max_chars:
        raise ValueError(f"overlap must be in [0, max_chars), got {overlap}")
