"""Documents read as headings, paragraphs and tables (PDF, DOCX), chunked as Markdown is.

A format's reader turns a file into pages of :data:`Element` values (a DOCX is one page);
:func:`structured_pieces` walks them:

- a :class:`Heading` of level n closes the open headings of level n and deeper, as a Markdown
  heading does, so every paragraph sits under a heading path ("营业时间公告 > 春节营业安排");
- the paragraphs under one path on one page are one section: Q/A pairs when they are only those,
  else prose packed into chunks that start with the path (:func:`knowledge.loaders.markdown.
  text_pieces`). A chunk never spans two pages; a PDF page's text before any heading is headed
  "第 N 页";
- a :class:`Table` whose header row forms a QA, product, store or promotion table becomes records,
  as a pipe table in Markdown does (:func:`knowledge.loaders.shapes.document_layout`). Any other
  table with a header row, a body row and two columns becomes one entry per row: its answer pairs
  header and cell ("商品：保温杯；所需积分：1500"); its heading is the heading path, the table's
  caption (a short line just above it, not a sentence) and the row's first cell ("积分兑换 >
  兑换商品表 > 保温杯"). A table of one row or one column is text.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Final

from knowledge.chunking import HEADING_SEPARATOR, with_heading
from knowledge.loaders.markdown import text_pieces
from knowledge.loaders.parsed import Piece
from knowledge.loaders.rows import RawTable
from knowledge.loaders.scope import LoadContext
from knowledge.loaders.shapes import document_layout
from knowledge.loaders.tables import table_pieces
from knowledge.types import ChunkDraft

MAX_CAPTION: Final = 30
"""A line just above a table of at most this many characters, not a sentence, is its caption."""

_SENTENCE_END: Final = re.compile(r"[。！？；!?.]$")
_SPACES: Final = re.compile(r"\s+")


@dataclass(frozen=True, slots=True)
class Heading:
    """A heading; a smaller ``level`` is an outer heading (a title is 0, "Heading 1" is 1)."""

    level: int
    text: str


@dataclass(frozen=True, slots=True)
class Paragraph:
    """A paragraph (or a PDF text line) of body text."""

    text: str


@dataclass(frozen=True, slots=True)
class Table:
    """A table's rows of cell texts, the header row first."""

    rows: tuple[tuple[str, ...], ...]


Element = Heading | Paragraph | Table


def structured_pieces(
    name: str, pages: Sequence[Sequence[Element]], ctx: LoadContext, *, page_labels: bool
) -> list[Piece]:
    """The pieces of a document read into ``pages`` (see the module docstring). ``page_labels``
    heads text outside any heading with its page number."""
    pieces: list[Piece] = []
    path: list[Heading] = []
    tables = 0
    for number, page in enumerate(_demote_empty(pages), 1):
        fallback = f"第 {number} 页" if page_labels else ""
        lines: list[str] = []
        for element in page:
            if isinstance(element, Paragraph):
                lines.append(element.text)
                continue
            caption = _caption(lines) if isinstance(element, Table) else ""
            pieces += _section(path, fallback, lines)
            lines = []
            if isinstance(element, Heading):
                path[:] = [*(h for h in path if h.level < element.level), element]
            else:
                tables += 1
                where = f"{name} table {tables}"
                title = HEADING_SEPARATOR.join(t for t in (_joined(path), caption) if t)
                pieces += _table_pieces(name, element, title, ctx, where)
        pieces += _section(path, fallback, lines)
    return pieces


def _demote_empty(pages: Sequence[Sequence[Element]]) -> list[list[Element]]:
    """Headings with no text under them (a numbered list read as headings) become paragraphs.

    A heading is empty when the next element is a heading of its level or an outer one (or
    nothing); demoting one can give an outer heading its text, so this runs until none is left."""
    flat = [e for page in pages for e in page]
    while empty := {i for i in range(len(flat)) if _is_empty(flat, i)}:
        flat = [Paragraph(e.text) if isinstance(e, Heading) and i in empty else e
                for i, e in enumerate(flat)]  # fmt: skip
    out: list[list[Element]] = []
    start = 0
    for page in pages:
        out.append(flat[start : start + len(page)])
        start += len(page)
    return out


def _is_empty(flat: Sequence[Element], at: int) -> bool:
    element = flat[at]
    if not isinstance(element, Heading):
        return False
    after = flat[at + 1] if at + 1 < len(flat) else None
    return after is None or (isinstance(after, Heading) and after.level <= element.level)


def first_heading(pages: Sequence[Sequence[Element]]) -> str:
    """The text of the document's first heading when it is on the first page, else ""."""
    first = _demote_empty(pages[:1])[0] if pages else []
    return next((e.text for e in first if isinstance(e, Heading)), "")


def clean_cell(text: str) -> str:
    """A cell's text on one line, spaces collapsed (a PDF cell wraps its text in lines)."""
    return _SPACES.sub(" ", text.replace("\n", "")).strip() if text else ""


def _section(path: Sequence[Heading], page: str, lines: Sequence[str]) -> list[Piece]:
    """The section's text as pieces; text outside any heading is headed by its page only."""
    pieces = text_pieces(_joined(path), "\n".join(lines))
    if path or not page:
        return pieces
    return [replace(p, draft=replace(p.draft, heading=page)) for p in pieces]


def _joined(path: Sequence[Heading]) -> str:
    return HEADING_SEPARATOR.join(h.text for h in path)


def _caption(lines: list[str]) -> str:
    """Pop and return the line just above a table when it reads as its caption, else ""."""
    if not lines:
        return ""
    last = lines[-1].strip()
    if not last or len(last) > MAX_CAPTION or _SENTENCE_END.search(last):
        return ""
    lines.pop()
    return last.rstrip("：:").strip()


def _table_pieces(name: str, table: Table, title: str, ctx: LoadContext, where: str) -> list[Piece]:
    rows = [row for row in (tuple(clean_cell(c) for c in r) for r in table.rows) if any(row)]
    if len(rows) < 2 or len(rows[0]) < 2:
        return text_pieces(title, "\n".join("  ".join(c for c in row if c) for row in rows))
    headers, body = rows[0], rows[1:]
    layout = document_layout(headers, f"{where} header")
    if layout is not None:
        labelled = tuple((f"{where} row {i}", row) for i, row in enumerate(body, 1))
        raw = RawTable(name, headers, labelled, header_where=f"{where} header")
        return table_pieces(raw, layout, ctx)
    return [
        Piece(_row_draft(headers, row, title), where=f"{where} row {i}")
        for i, row in enumerate(body, 1)
    ]


def _row_draft(headers: tuple[str, ...], row: tuple[str, ...], title: str) -> ChunkDraft:
    """One table row as an entry: "header：cell" pairs, headed by the title and its first cell."""
    pairs = "；".join(
        f"{header}：{cell}" if header else cell
        for header, cell in zip(headers, row, strict=False)
        if cell
    )
    extra = "；".join(c for c in row[len(headers) :] if c)
    answer = "；".join(p for p in (pairs, extra) if p)
    first = next(c for c in row if c)
    heading = HEADING_SEPARATOR.join(p for p in (title, first) if p)
    return ChunkDraft(text=with_heading(heading, answer), answer=answer, heading=heading)
