"""Table rows as the record builders read them: cells by field, their text, their metadata.

A :class:`RawTable` is what a file format hands over (CSV, an XLSX sheet, a JSON list, a Markdown
pipe table, or front matter read as a one-row table): headers as written and rows of raw cells,
each row labelled for errors (``"promotions.csv row 4"``). A :class:`TableRow` is one row read
through a :class:`~knowledge.loaders.shapes.Layout`; every error about a cell names the file, the
row and the column: ``promotions.csv row 4, column 结束日期: cannot read date …``.

Metadata cells (kind, store scope, start/end or a ``start 至 end`` period, tags, title, SKUs) are
read with :mod:`knowledge.metadata`; store scope tokens are resolved to ids through the
:class:`~knowledge.loaders.scope.LoadContext`.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime
from typing import Final

from knowledge.errors import MetadataError
from knowledge.loaders.scope import LoadContext
from knowledge.loaders.shapes import Column, Layout
from knowledge.loaders.textio import clean_cell
from knowledge.metadata import (
    PartialMeta,
    RawValue,
    check_window,
    format_number,
    parse_datetime,
    parse_field,
)

META_FIELDS: Final = ("kind", "stores", "valid_from", "valid_to", "tags", "title", "skus")
"""The :class:`~knowledge.metadata.PartialMeta` fields a column may fill."""

_PERIOD_SPLIT: Final = re.compile(
    r"\s*(?:至|到|~|～|—+|–|－)\s*|\s+-\s+|(?<=\d)-(?=\d{4}\s*[-/.年])"
)


@dataclass(frozen=True, slots=True)
class RawTable:
    """A table as a format reads it: headers as written and labelled rows of raw cells."""

    label: str
    """Names the table in errors: ``"stores.csv"``, ``"book.xlsx 门店"``."""
    headers: tuple[str, ...]
    rows: tuple[tuple[str, tuple[RawValue, ...]], ...]
    """Each row's label (``"stores.csv row 3"``) and its cells, aligned with ``headers``."""
    header_where: str = ""
    """Where the header row is, for errors (default ``"<label> header"``)."""
    cell_word: str = "column"
    """What a cell's position is called in errors ("column"; "key" for front matter)."""

    @property
    def header_at(self) -> str:
        return self.header_where or f"{self.label} header"


@dataclass(frozen=True, slots=True)
class TableRow:
    """One row read through a layout: its filled cells by field."""

    where: str
    layout: Layout
    cells: tuple[tuple[Column, RawValue], ...]
    cell_word: str = "column"

    def has(self, field: str) -> bool:
        return any(column.field == field for column, _ in self.cells)

    def raw(self, field: str) -> RawValue:
        """The first cell of ``field``, or None."""
        return next((value for column, value in self.cells if column.field == field), None)

    def text(self, field: str) -> str:
        """The cells of ``field`` as trimmed text (several columns: one per line)."""
        return "\n".join(t for v in self._values(field) if (t := field_text(v)))

    def at(self, field: str) -> str:
        """``"<row>, column <header>"`` for errors about ``field``."""
        return f"{self.where}, {self.cell_word} {self.layout.header(field)}"

    def _values(self, field: str) -> Iterator[RawValue]:
        return (value for column, value in self.cells if column.field == field)


def table_rows(table: RawTable, layout: Layout) -> list[TableRow]:
    """The table's rows through ``layout``; rows without a filled known cell are skipped."""
    rows = []
    for where, values in table.rows:
        pairs = zip(layout.columns, values, strict=False)
        cells = tuple((c, v) for c, v in pairs if c is not None and is_filled(v))
        if cells:
            rows.append(TableRow(where, layout, cells, table.cell_word))
    return rows


def cell_text(value: RawValue) -> str:
    """A cell as trimmed text (numbers without a spurious ``.0``, dates in ISO form, a list one
    item per line)."""
    if value is None:
        return ""
    if isinstance(value, str):
        return clean_cell(value)
    if isinstance(value, int | float):
        return format_number(value)
    if isinstance(value, date):
        return value.isoformat()
    return "\n".join(clean_cell(str(v)) for v in value)


def field_text(value: RawValue) -> str:
    """A record field's text: like :func:`cell_text`, but a list reads ``a、b``."""
    if isinstance(value, list | tuple):
        return "、".join(t for v in value if (t := clean_cell(str(v))))
    return cell_text(value)


def is_filled(value: RawValue) -> bool:
    """False for an empty cell (None, blank text, an empty list)."""
    if value is None:
        return False
    if isinstance(value, str):
        return bool(value.strip())
    return not isinstance(value, list | tuple) or bool(value)


def read_meta(row: TableRow, ctx: LoadContext, names: tuple[str, ...]) -> PartialMeta:
    """The row's metadata cells among ``names`` as a layer (errors name row and column)."""
    values: dict[str, object] = {}
    for name in names:
        if row.has(name):
            values[name] = _meta_value(row, name, ctx)
    if "valid_from" not in values and "valid_to" not in values and row.has("period"):
        values["valid_from"], values["valid_to"] = _period(row, ctx)
    layer = PartialMeta(**values)  # type: ignore[arg-type]  # names are PartialMeta fields
    check_window(layer.valid_from, layer.valid_to, row.where)
    return layer


def _meta_value(row: TableRow, name: str, ctx: LoadContext) -> object:
    raw = row.raw(name)
    if name == "title":
        raw = row.text(name)
    try:
        value = parse_field(name, raw, ctx.tz)
    except MetadataError as exc:
        raise MetadataError(f"{row.at(name)}: {exc}") from exc
    if name == "stores" and isinstance(value, tuple):
        return ctx.store_ids(value, row.at(name))
    return value


def _period(row: TableRow, ctx: LoadContext) -> tuple[datetime, datetime]:
    """A ``start 至 end`` cell as (start, end of the end day)."""
    text = row.text("period")
    parts = [p for p in _PERIOD_SPLIT.split(text) if p]
    if len(parts) != 2:
        raise MetadataError(
            f"{row.at('period')}: cannot read the period {text!r} (write 2026-12-01 至 2026-12-08)"
        )
    try:
        start = parse_datetime(parts[0], ctx.tz)
        end = parse_datetime(parts[1], ctx.tz, end_of_day=True)
    except MetadataError as exc:
        raise MetadataError(f"{row.at('period')}: {exc}") from exc
    return start, end
