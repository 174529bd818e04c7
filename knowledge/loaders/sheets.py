"""CSV and XLSX files → table rows (see :mod:`knowledge.loaders.tables` for what rows become).

CSV: any of UTF-8 (with or without BOM), UTF-16 with BOM, GB18030/GBK; the delimiter (``,``, tab
or ``;``) is the one the header line uses most. XLSX: every sheet whose first non-empty row has
recognised headers; date cells at midnight count as dates (so a ``valid_to`` cell means the end of
that day).
"""

from __future__ import annotations

import csv
import io
import warnings
from collections.abc import Iterable, Sequence
from datetime import date, datetime, time, tzinfo
from typing import Any, Final

import openpyxl

from knowledge.errors import LoaderError
from knowledge.loaders.parsed import Parsed
from knowledge.loaders.tables import Row, canonical_columns, table_to_parsed
from knowledge.loaders.textio import decode_bytes
from knowledge.metadata import RawValue

_DELIMITERS: Final = (",", "\t", ";")

Table = tuple[set[str], list[tuple[str, Row]]]
"""A table's known column names and its rows (each with its "file row N" label)."""


def parse_csv(name: str, data: bytes, tz: tzinfo) -> Parsed:
    """Parse a CSV QA or product table."""
    text = decode_bytes(name, data)
    header_line = next((line for line in text.splitlines() if line.strip()), "")
    delimiter = max(_DELIMITERS, key=header_line.count)
    try:
        records = list(csv.reader(io.StringIO(text, newline=""), delimiter=delimiter))
    except csv.Error as exc:
        raise LoaderError(name, f"malformed CSV: {exc}") from exc
    columns, rows = _table(name, records)
    return table_to_parsed(name, rows, tz, columns=columns)


def parse_xlsx(name: str, data: bytes, tz: tzinfo) -> Parsed:
    """Parse every recognisable sheet of an XLSX workbook as one table."""
    try:
        # openpyxl warns about Excel features it ignores (data validation, styles): not our concern.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            book = openpyxl.load_workbook(io.BytesIO(data), read_only=True, data_only=True)
            columns, rows = _book_rows(name, book)
    except LoaderError:
        raise
    except Exception as exc:  # openpyxl raises zipfile, XML and its own errors on bad files
        raise LoaderError(
            name, f"not a readable .xlsx workbook ({type(exc).__name__}: {exc})"
        ) from exc
    return table_to_parsed(name, rows, tz, columns=columns)


def _book_rows(name: str, book: Any) -> Table:
    try:
        several = len(book.worksheets) > 1
        columns: set[str] = set()
        rows: list[tuple[str, Row]] = []
        for sheet in book.worksheets:
            label = f"{name} {sheet.title}" if several else name
            values = ([_cell(v) for v in r] for r in sheet.iter_rows(values_only=True))
            sheet_columns, sheet_rows = _table(label, values)
            columns |= sheet_columns
            rows += sheet_rows
        return columns, rows
    finally:
        book.close()


def _table(label: str, records: Iterable[Sequence[RawValue]]) -> Table:
    """Known header names and rows keyed by them; the first non-empty record is the header."""
    columns: list[str | None] | None = None
    rows: list[tuple[str, Row]] = []
    for number, record in enumerate(records, 1):
        if not any(_filled(v) for v in record):
            continue
        if columns is None:
            columns = canonical_columns(record, f"{label} header")
            continue
        pairs = zip(columns, record, strict=False)
        rows.append((f"{label} row {number}", {c: v for c, v in pairs if c and _filled(v)}))
    return {c for c in columns or () if c}, rows


def _cell(value: object) -> RawValue:
    if value is None or (isinstance(value, str | int | float) and not isinstance(value, bool)):
        return value
    if isinstance(value, datetime):
        return value.date() if value.time() == time.min else value
    if isinstance(value, date):
        return value
    return str(value)


def _filled(value: RawValue) -> bool:
    return value is not None and (not isinstance(value, str) or bool(value.strip()))
