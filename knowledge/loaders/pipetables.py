"""Pipe tables inside Markdown: finding them, and reading those that hold records.

A table is a line with ``|`` followed by a delimiter line (``| --- | :---: |``), then every
following line with a ``|``; the outer pipes are optional and ``\\|`` is a literal pipe. Tables
inside code fences are text. A table
whose headers form a complete QA, product, store or promotion table (every header known, the
needed columns present: :func:`knowledge.loaders.shapes.document_layout`) becomes one piece per
row; any other table is left in the text as prose, because documents hold arbitrary tables.
Rows are named by their line in the file (``menu.md line 14``) so errors point at them.

A table that has every column a shape needs but also columns that shape does not know is kept as
prose with a warning naming them (``faq.md line 3, column 4 '负责人': …``); when such a column
looks like metadata (``有效期``, ``所属门店``: :func:`knowledge.loaders.unused.metadata_like`) the
file is refused, since the rows' validity or store scope would silently be lost in the text.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from knowledge.errors import MetadataError
from knowledge.loaders.parsed import Piece
from knowledge.loaders.rows import RawTable
from knowledge.loaders.scope import LoadContext
from knowledge.loaders.shapes import detect, document_layout, match_key
from knowledge.loaders.tables import table_pieces
from knowledge.loaders.unused import metadata_like

_DELIMITER: Final = re.compile(r"\s*\|?\s*:?-{3,}:?\s*(?:\|\s*:?-{3,}:?\s*)*\|?\s*")
_CELL_SPLIT: Final = re.compile(r"(?<!\\)\|")
_FENCE: Final = re.compile(r" {0,3}(?:```|~~~)")


@dataclass(frozen=True, slots=True)
class PipeTable:
    """A pipe table found in a list of lines: ``lines[start:end]``."""

    start: int
    end: int
    header_line: str
    headers: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]


class LineLocator:
    """Finds lines of a block again in the whole file, in order, for line numbers in errors."""

    def __init__(self, text: str) -> None:
        self._lines = [line.strip() for line in text.replace("\r\n", "\n").split("\n")]
        self._cursor = 0

    def line_of(self, line: str) -> int:
        """The 1-based number of the next file line equal to ``line`` (trimmed), or 0."""
        wanted = line.strip()
        for index in range(self._cursor, len(self._lines)):
            if self._lines[index] == wanted:
                self._cursor = index + 1
                return index + 1
        return 0


def find_tables(lines: Sequence[str]) -> list[PipeTable]:
    """Every pipe table in ``lines``, in order."""
    tables: list[PipeTable] = []
    index = 0
    fenced = False
    while index < len(lines) - 1:
        header, delimiter = lines[index], lines[index + 1]
        fenced ^= bool(_FENCE.match(header))
        if not fenced and "|" in header and "|" in delimiter and _DELIMITER.fullmatch(delimiter):
            end = index + 2
            while end < len(lines) and "|" in lines[end]:
                end += 1
            rows = tuple(tuple(split_cells(line)) for line in lines[index + 2 : end])
            tables.append(PipeTable(index, end, header, tuple(split_cells(header)), rows))
            index = end
        else:
            index += 1
    return tables


def split_cells(line: str) -> list[str]:
    """The cells of a table line, trimmed, without the outer pipes."""
    inner = line.strip().removeprefix("|")
    inner = inner[:-1] if inner.endswith("|") and not inner.endswith("\\|") else inner
    return [cell.strip().replace("\\|", "|") for cell in _CELL_SPLIT.split(inner)]


def record_pieces(
    name: str, table: PipeTable, locator: LineLocator, ctx: LoadContext
) -> list[Piece] | None:
    """The table's rows as pieces, or None when it is not a table of records."""
    header_line = locator.line_of(table.header_line)
    header_where = f"{name} line {header_line}" if header_line else f"{name} table"
    layout = document_layout(table.headers, header_where)
    if layout is None:
        _explain_prose(table, header_where, ctx)
        return None
    rows = tuple(
        (f"{name} line {header_line + 2 + i}" if header_line else f"{name} table row {i + 1}", row)
        for i, row in enumerate(table.rows)
    )
    raw = RawTable(name, table.headers, rows, header_where=header_where)
    return table_pieces(raw, layout, ctx)


def _explain_prose(table: PipeTable, where: str, ctx: LoadContext) -> None:
    """Warn (or refuse, for metadata-like columns) when a complete table of records is kept as
    prose because of columns its shape does not know."""
    spec = detect(table.headers)
    if spec is None or spec.missing(spec.fields_of(table.headers)):
        return
    keys = spec.header_map()
    for index, header in enumerate(table.headers, 1):
        if not match_key(header) or match_key(header) in keys:
            continue
        values = [row[index - 1] for row in table.rows if len(row) >= index and row[index - 1]]
        place = f"{where}, column {index} {header!r}"
        what = metadata_like(header, values, ctx)
        if what:
            raise MetadataError(
                f"{place}: looks like {what}, which a {spec.label} does not read, so its rows "
                f"would be kept as plain text without it; use the {spec.label}'s columns "
                f"({spec.known()})"
            )
        ctx.warn(
            f"{place}: not a column of a {spec.label}, so the table is kept as text, not as "
            f"{spec.noun} entries (a {spec.label} reads {spec.known()})"
        )
