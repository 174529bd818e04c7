"""Markdown (and .markdown) files: front matter, heading-aware prose chunks, and FAQ sections.

A section becomes question-and-answer chunks (``index_texts=(question,)``, ``answer=...``) when

- its heading is a question, ``## Q: 怎么退货？`` or ``### 问：怎么退货？`` (the body, minus a
  leading ``A:``/``答：``, is the answer), or
- its body is nothing but pairs of ``Q: ...`` / ``A: ...`` lines (``问：``/``答：`` too; bold and
  list markers around them are ignored).

Every other section is prose: packed into chunks by :mod:`knowledge.chunking`, each starting with
its heading path so that the heading words are searchable. The first ``# H1`` is the default title.

A pipe table whose headers form a QA, product, store or promotion table becomes one chunk per row
(:mod:`knowledge.loaders.pipetables`); the rows inherit the document's metadata. Front matter is
read by :mod:`knowledge.loaders.mdfront`: a ``kind: store``/``kind: product`` front matter with
record keys is itself a record chunk, placed first.
"""

from __future__ import annotations

import re
from dataclasses import replace
from typing import Final

from knowledge.chunking import MAX_CHARS, OVERLAP, Block, pack_text, split_headings, with_heading
from knowledge.loaders.frontmatter import split_front_matter
from knowledge.loaders.mdfront import read_front_matter
from knowledge.loaders.parsed import Parsed, Piece
from knowledge.loaders.pipetables import LineLocator, find_tables, record_pieces
from knowledge.loaders.qa import qa_draft
from knowledge.loaders.scope import LoadContext
from knowledge.loaders.textio import decode_bytes
from knowledge.metadata import PartialMeta
from knowledge.types import ChunkDraft

__all__ = ["parse_markdown", "qa_draft", "text_pieces"]

_QUESTION: Final = re.compile(r"(?:Q|问题?)\s*\d*\s*[:：.．、]\s*(.+)", re.IGNORECASE)
_ANSWER: Final = re.compile(r"(?:A|答案?)\s*\d*\s*[:：.．、]\s*", re.IGNORECASE)
_DECORATION: Final = re.compile(r"\*\*|__")
_LIST_MARKER: Final = re.compile(r"\s*(?:[-*+]|\d+[.)、])\s+")
_H1: Final = re.compile(r"^#[ \t]+(.+?)[ \t#]*$", re.MULTILINE)


def parse_markdown(name: str, data: bytes, ctx: LoadContext) -> Parsed:
    """Parse a Markdown upload into pieces, its front matter layer and its default title."""
    text = decode_bytes(name, data)
    front, body = split_front_matter(name, text)
    read = read_front_matter(name, front, ctx)
    locator = LineLocator(text)
    pieces = [p for block in split_headings(body) for p in _block_pieces(block, name, locator, ctx)]
    if read.fields and pieces and not pieces[0].draft.fields:
        pieces[0] = replace(pieces[0], draft=replace(pieces[0].draft, fields=read.fields))
    if read.record is not None:
        pieces.insert(0, read.record)
    title = _H1.search(body)
    defaults = PartialMeta(title=_DECORATION.sub("", title.group(1)).strip() if title else None)
    return Parsed(tuple(pieces), file_meta=read.meta, defaults=defaults)


def _block_pieces(block: Block, name: str, locator: LineLocator, ctx: LoadContext) -> list[Piece]:
    if not block.body:
        return []
    question = _QUESTION.fullmatch(_clean(block.path[-1])) if block.path else None
    if question is not None:
        answer = _ANSWER.sub("", block.body, count=1).strip()
        return [Piece(qa_draft(question.group(1).strip(), answer, heading=block.heading))]
    pieces: list[Piece] = []
    lines = block.body.split("\n")
    done = 0
    for table in find_tables(lines):
        rows = record_pieces(name, table, locator, ctx)
        if rows is not None:
            pieces += text_pieces(block.heading, "\n".join(lines[done : table.start]))
            pieces += rows
            done = table.end
    return pieces + text_pieces(block.heading, "\n".join(lines[done:]))


def text_pieces(heading: str, body: str) -> list[Piece]:
    """Q/A pairs when the text is only those, else prose chunks (PDF and DOCX sections too)."""
    body = body.strip()
    if not body:
        return []
    pairs = _qa_pairs(body)
    if pairs is not None:
        return [Piece(qa_draft(q, a, heading=heading)) for q, a in pairs]
    return [Piece(_prose(heading, piece)) for piece in _pack(body)]


def _prose(heading: str, piece: str) -> ChunkDraft:
    return ChunkDraft(text=with_heading(heading, piece), heading=heading)


def _pack(body: str) -> list[str]:
    return pack_text(body, max_chars=MAX_CHARS, overlap=OVERLAP)


def _qa_pairs(body: str) -> list[tuple[str, str]] | None:
    """The (question, answer) pairs when the body is only ``Q:``/``A:`` lines, else None."""
    pairs: list[tuple[str, str]] = []
    question: str | None = None
    answer: str | None = None
    for line in filter(None, (_clean(raw) for raw in body.split("\n"))):
        q_match = _QUESTION.fullmatch(line)
        if q_match is not None:
            if question is not None:
                if not answer:
                    return None
                pairs.append((question, answer))
            question, answer = q_match.group(1).strip(), None
            continue
        if question is None:
            return None
        a_match = _ANSWER.match(line)
        if a_match is not None and answer is None:
            answer = line[a_match.end() :].strip()
        elif answer is None:
            question += line
        else:
            answer = f"{answer}\n{line}" if answer else line
    if question is None or not answer:
        return None
    return [*pairs, (question, answer)]


def _clean(line: str) -> str:
    line = _DECORATION.sub("", line)
    marker = _LIST_MARKER.match(line)
    return (line[marker.end() :] if marker else line).strip()
