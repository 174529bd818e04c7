"""CSV and XLSX files → tables (see :mod:`knowledge.loaders.tables` for what rows become).

CSV: any of UTF-8 (with or without BOM), UTF-16 with BOM, GB18030/GBK; the delimiter (``,``, tab
or ``;``) is the one the header line uses most. XLSX: each sheet is a table, read in its own shape
(a workbook may hold a store sheet and a product sheet); date cells at midnight count as dates (so
a ``valid_to`` cell means the end of that day). The header is the first row with at least two
filled cells: a title row above it ("柚见生活门店信息表") is skipped. Rows are numbered as the
file counts them (``stores.csv row 3`` is the third record, the header being row 1 or later).
"""

from __future__ import annotations

import csv
import io
import warnings
from collections.abc import Iterable, Sequence
from datetime import date, datetime, time
from typing import Any, Final

import openpyxl

from knowledge.errors import LoaderError
from knowledge.loaders.parsed import Parsed
from knowledge.loaders.rows import RawTable, cell_text, is_filled
from knowledge.loaders.scope import LoadContext
from knowledge.loaders.tables import parse_tables
from knowledge.loaders.textio import decode_bytes
from knowledge.metadata import RawValue

_DELIMITERS: Final = (",", "\t", ";")


def parse_csv(name: str, data: bytes, ctx: LoadContext) -> Parsed:
    """Parse a CSV table of any shape."""
    text = decode_bytes(name, data)
    header_line = next((line for line in text.splitlines() if line.strip()), "")
    delimiter = max(_DELIMITERS, key=header_line.count)
    try:
        records = list(csv.reader(io.StringIO(text, newline=""), delimiter=delimiter))
    except csv.Error as exc:
        raise LoaderError(name, f"malformed CSV: {exc}") from exc
    table = raw_table(name, records)
    return parse_tables(name, [table] if table is not None else [], ctx)


def parse_xlsx(name: str, data: bytes, ctx: LoadContext) -> Parsed:
    """Parse every sheet of an XLSX workbook (sheets that fit no shape are skipped)."""
    try:
        # openpyxl warns about Excel features it ignores (data validation, styles): not our concern.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            book = openpyxl.load_workbook(io.BytesIO(data), read_only=True, data_only=True)
            tables = _book_tables(name, book)
    except Exception as exc:  # openpyxl raises zipfile, XML and its own errors on bad files
        raise LoaderError(
            name, f"not a readable .xlsx workbook ({type(exc).__name__}: {exc})"
        ) from exc
    return parse_tables(name, tables, ctx)


def raw_table(label: str, records: Iterable[Sequence[RawValue]]) -> RawTable | None:
    """The table in ``records`` (header = first row with two filled cells), or None if empty."""
    headers: tuple[str, ...] | None = None
    rows: list[tuple[str, tuple[RawValue, ...]]] = []
    for number, record in enumerate(records, 1):
        filled = sum(is_filled(v) for v in record)
        if headers is None:
            if filled >= 2:
                headers = tuple(cell_text(v) for v in record)
        elif filled:
            rows.append((f"{label} row {number}", tuple(record)))
    return None if headers is None else RawTable(label, headers, tuple(rows))


def _book_tables(name: str, book: Any) -> list[RawTable]:
    try:
        several = len(book.worksheets) > 1
        tables = []
        for sheet in book.worksheets:
            label = f"{name} {sheet.title}" if several else name
            values = ([_cell(v) for v in r] for r in sheet.iter_rows(values_only=True))
            table = raw_table(label, values)
            if table is not None:
                tables.append(table)
        return tables
    finally:
        book.close()


def _cell(value: object) -> RawValue:
    if value is None or (isinstance(value, str | int | float) and not isinstance(value, bool)):
        return value
    if isinstance(value, datetime):
        return value.date() if value.time() == time.min else value
    if isinstance(value, date):
        return value
    return str(value)
