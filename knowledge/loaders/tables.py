"""Tables → pieces, one per row (CSV, XLSX sheets, JSON lists and Markdown pipe tables).

The header row picks the table's shape (:mod:`knowledge.loaders.shapes`): QA rows become
question-and-answer chunks (:mod:`knowledge.loaders.qa`), product, store and promotion rows
become record chunks (:mod:`knowledge.loaders.retail`). A record row's kind is its shape's
(``shape_meta``), unless the row or the ingest call says otherwise; its metadata columns (store
scope, validity, tags, ...) are its own layer, merged over the document's.

A file is loaded whole or not at all: the first bad header, cell or row raises, naming the file,
the row and the column. What a table holds but does not use is a warning, or an error when it
looks like metadata (:mod:`knowledge.loaders.unused`): columns no field reads, QA rows without a
question or an answer (skipped, the good rows load), a sheet of a workbook whose headers fit no
shape (a "填写说明" sheet: skipped with a warning, as long as another sheet fits). A store that
appears twice in one table is refused, and so is a promotion table with both a period column
(``活动时间``) and start/end columns: they would disagree.
Store sheets are read first, and their stores join the directory for the file's other sheets.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Final

from knowledge.errors import LoaderError, MetadataError
from knowledge.loaders.parsed import Parsed, Piece
from knowledge.loaders.qa import qa_gap, qa_piece, row_skus
from knowledge.loaders.retail import product_draft, promotion_draft, store_draft
from knowledge.loaders.rows import META_FIELDS, RawTable, TableRow, read_meta, table_rows
from knowledge.loaders.scope import LoadContext
from knowledge.loaders.shapes import PRODUCT, QA, STORE, Layout, ShapeSpec, detect, file_layout
from knowledge.loaders.unused import check_columns, unread_rows, warn_skipped
from knowledge.metadata import PartialMeta

_PRODUCT_META: Final = ("kind", "stores", "valid_from", "valid_to", "tags", "title")
_STORE_META: Final = ("kind", "tags", "title")


def parse_tables(
    name: str,
    tables: Sequence[RawTable],
    ctx: LoadContext,
    file_meta: PartialMeta | None = None,
) -> Parsed:
    """Every row of every usable table; LoaderError when none fits a shape or none has rows.

    The document's default kind is that of the first table's shape.
    """
    read = _layouts(name, tables, ctx)
    stores_first = sorted(range(len(read)), key=lambda i: read[i][1].spec is not STORE)
    per_table: dict[int, list[Piece]] = {}
    for i in stores_first:
        per_table[i] = table_pieces(*read[i], ctx)
        if read[i][1].spec is STORE:
            ctx = ctx.with_stores(name, [p.draft for p in per_table[i]])
    pieces = [p for i in range(len(read)) for p in per_table[i]]
    if not pieces:
        raise LoaderError(name, _no_rows(read[0][1].spec))
    defaults = PartialMeta(kind=read[0][1].spec.kind)
    return Parsed(tuple(pieces), file_meta=file_meta or PartialMeta(), defaults=defaults)


def table_pieces(table: RawTable, layout: Layout, ctx: LoadContext) -> list[Piece]:
    """The pieces of one table read through ``layout``; unused columns and skipped rows (a QA row
    without a question or an answer) are warnings in ``ctx``."""
    check_columns(table, layout, ctx)
    skipped = unread_rows(table, layout)
    rows = table_rows(table, layout)
    spec = layout.spec
    if spec is QA:
        return _qa_pieces(table.label, rows, skipped, ctx)
    warn_skipped(table.label, skipped, ctx)
    if spec is STORE:
        _check_unique_stores(rows)
    shape_meta = PartialMeta(kind=spec.kind)
    return [record_piece(spec, row, ctx, shape_meta) for row in rows]


def record_piece(spec: ShapeSpec, row: TableRow, ctx: LoadContext, shape: PartialMeta) -> Piece:
    """The piece of one product, store or promotion row."""
    if spec is PRODUCT:
        draft = product_draft(row)
        layer = read_meta(row, ctx, _PRODUCT_META)
        layer = layer if layer.is_empty() else replace(layer, skus=draft.skus)
    elif spec is STORE:
        draft = store_draft(row)
        layer = read_meta(row, ctx, _STORE_META)
    else:
        layer = read_meta(row, ctx, META_FIELDS)
        draft = promotion_draft(row, row_skus(row))
    return Piece(draft, None if layer.is_empty() else layer, row.where, shape)


def _qa_pieces(
    label: str, rows: Sequence[TableRow], skipped: dict[str, list[str]], ctx: LoadContext
) -> list[Piece]:
    pieces: list[Piece] = []
    for row in rows:
        piece = qa_piece(row, ctx)
        if piece is None:
            skipped.setdefault(qa_gap(row), []).append(row.where)
        else:
            pieces.append(piece)
    warn_skipped(label, skipped, ctx)
    return pieces


def _layouts(
    name: str, tables: Sequence[RawTable], ctx: LoadContext
) -> list[tuple[RawTable, Layout]]:
    if not tables:
        raise LoaderError(name, "no table found (the first row must hold the column headers)")
    fitting = [t for t in tables if detect(t.headers) is not None] or [tables[0]]
    for table in tables:
        if table not in fitting:
            ctx.warn(
                f"{name}: {_part(name, table) or 'table'} is not loaded: its headers fit no "
                f"table shape ({', '.join(h for h in table.headers if h) or 'none'})"
            )
    layouts = [(t, file_layout(name, t.headers, t.header_at, _part(name, t))) for t in fitting]
    for table, layout in layouts:
        _check_one_validity(table, layout)
    return layouts


def _check_one_validity(table: RawTable, layout: Layout) -> None:
    fields = layout.fields()
    if "period" in fields and not fields.isdisjoint({"valid_from", "valid_to"}):
        start_end = "valid_from" if "valid_from" in fields else "valid_to"
        raise MetadataError(
            f"{table.header_at}: both {layout.header('period')!r} and "
            f"{layout.header(start_end)!r} give the validity; keep one of them"
        )


def _part(name: str, table: RawTable) -> str:
    """``"sheet 门店"`` for a workbook sheet, "" for a file that is one table."""
    rest = table.label.removeprefix(name).strip()
    return f"sheet {rest}" if rest else ""


def _check_unique_stores(rows: Sequence[TableRow]) -> None:
    seen: dict[str, TableRow] = {}
    for row in rows:
        field = "store_id" if row.has("store_id") else "name"
        key = row.text(field)
        if key in seen:
            raise MetadataError(f"{row.at(field)}: store {key!r} is already on {seen[key].where}")
        if key:
            seen[key] = row


def _no_rows(spec: ShapeSpec) -> str:
    if spec is QA:
        return "no usable rows (each row needs a question and an answer)"
    return f"no rows below the header of the {spec.label}"
