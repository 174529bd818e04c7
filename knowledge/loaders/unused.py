"""What a table holds but does not use: a warning, or an error when it looks like metadata.

Operators' sheets carry columns no shape reads (``负责人``, ``备注2``) and rows that cannot become
an entry (a QA row without an answer). None of it may vanish silently (issue 9):

- a column no field reads is a warning naming the file and the column;
- unless it looks like metadata: a date-like header (``有效期``, ``截止``, ``活动日期``,
  ``expiry``) or values that are all dates, or a store-like header (``所属门店``, ``shop``) or
  values that are all known stores. Loading the rows without it would make an entry valid
  forever or for every store, so the file is refused (:class:`~knowledge.errors.MetadataError`)
  with the headers the table does read;
- decision: record-keeping dates (``创建时间``, ``更新日期``, ``modified``) say when the row was
  written, not when it applies: a warning, not an error;
- a second column of a field a QA table reads once is a warning (an error for a metadata field:
  two end dates cannot both hold);
- cells in a column without a header, or beyond the header's last column (an unquoted comma in a
  CSV answer), are a warning naming the rows;
- rows skipped (a QA row without a question or an answer, a row whose only values are in unused
  columns) are one warning naming them as the operator sees them: ``rows 3, 5`` (the header being
  row 1 in a sheet), ``line 14`` in Markdown, ``item 2`` in JSON.

Warnings go to the :class:`~knowledge.loaders.scope.LoadContext`; ``siyu ingest --strict`` turns
them into refusals.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from datetime import date
from typing import Final

from knowledge.errors import MetadataError
from knowledge.loaders.rows import META_FIELDS, RawTable, cell_text, is_filled
from knowledge.loaders.scope import LoadContext
from knowledge.loaders.shapes import Layout, ShapeSpec, Unused
from knowledge.metadata import RawValue, parse_stores

_DATE_WORDS: Final = (
    "日期", "时间", "有效", "期限", "截止", "截至", "到期", "开始", "结束", "生效", "失效", "起止",
    "期间", "起始", "终止", "过期",
)  # fmt: skip
_DATE_TOKENS: Final = frozenset({
    "date", "dates", "time", "valid", "validity", "expiry", "expires", "expire", "expiration",
    "start", "end", "from", "until", "to", "deadline", "period", "begin",
})  # fmt: skip
_STORE_WORDS: Final = ("门店", "店铺", "分店", "网点", "店号", "店名")
_STORE_TOKENS: Final = frozenset(
    {"store", "stores", "shop", "shops", "branch", "branches", "outlet", "outlets"}
)
_BOOKKEEPING: Final = (
    "创建",
    "更新",
    "修改",
    "录入",
    "编辑",
    "导出",
    "created",
    "updated",
    "modified",
)
_DATE_IN_TEXT: Final = re.compile(r"\d{4}\s*[-/.年]\s*\d{1,2}\s*[-/.月]\s*\d{1,2}")
_LISTED_ROWS: Final = 12


def check_columns(table: RawTable, layout: Layout, ctx: LoadContext) -> None:
    """Warn about each column of ``table`` that ``layout`` does not read (see the module doc);
    MetadataError for one that looks like metadata."""
    for column in layout.unused:
        values = [v for v in _column(table, column.index) if is_filled(v)]
        place = _place(table, column)
        if not column.header:
            if values:
                ctx.warn(
                    f"{place}: {_count(values, 'value')} in a column without a header not "
                    "used; give the column a header the table knows, or delete it"
                )
            continue
        if column.repeats:
            _repeated(layout, column, place, ctx)
            continue
        _unknown(layout.spec, column, values, place, ctx)
    _extra_cells(table, len(table.headers), ctx)


def unread_rows(table: RawTable, layout: Layout) -> dict[str, list[str]]:
    """The rows whose only values are in columns the layout does not read, by that reason (for
    :func:`warn_skipped`)."""
    lost = [
        where
        for where, values in table.rows
        if any(map(is_filled, values)) and not _reads_any(layout, values)
    ]
    return {"values only in unused columns": lost} if lost else {}


def _reads_any(layout: Layout, values: Sequence[RawValue]) -> bool:
    pairs = zip(layout.columns, values, strict=False)
    return any(c is not None and is_filled(v) for c, v in pairs)


def warn_skipped(label: str, reasons: Mapping[str, Sequence[str]], ctx: LoadContext) -> None:
    """One warning for the rows skipped, by reason: ``"faq.csv: 2 rows skipped (no answer:
    rows 3, 5)"``; ``reasons`` maps a reason to the rows' labels (``"faq.csv row 3"``)."""
    total = sum(len(rows) for rows in reasons.values())
    if not total:
        return
    parts = [f"{reason}: {numbered(label, rows)}" for reason, rows in reasons.items() if rows]
    noun = "row" if total == 1 else "rows"
    ctx.warn(f"{label}: {total} {noun} skipped ({'; '.join(parts)})")


def numbered(label: str, wheres: Sequence[str]) -> str:
    """``["faq.csv row 3", "faq.csv row 5"]`` → ``"rows 3, 5"`` (``line 14``, ``item 2``)."""
    words: dict[str, list[str]] = {}
    for where in wheres:
        rest = where.removeprefix(label).strip()
        word, _, number = rest.rpartition(" ")
        words.setdefault(word or "row", []).append(number or rest)
    out = []
    for word, numbers in words.items():
        shown = ", ".join(numbers[:_LISTED_ROWS])
        more = f", … ({len(numbers)} in all)" if len(numbers) > _LISTED_ROWS else ""
        out.append(f"{word}{'s' if len(numbers) > 1 else ''} {shown}{more}")
    return "; ".join(out)


def metadata_like(header: str, values: Sequence[RawValue], ctx: LoadContext) -> str:
    """``"a date"`` or ``"a store scope"`` when a column looks like metadata, else ""."""
    key = header.strip().lower()
    tokens = set(re.split(r"[\W_]+", key))
    if any(w in key for w in _DATE_WORDS) or tokens & _DATE_TOKENS or _all_dates(values):
        return "a date"
    if any(w in key for w in _STORE_WORDS) or tokens & _STORE_TOKENS or _all_stores(values, ctx):
        return "a store scope"
    return ""


def _unknown(
    spec: ShapeSpec, column: Unused, values: Sequence[RawValue], place: str, ctx: LoadContext
) -> None:
    what = metadata_like(column.header, values, ctx)
    lowered = column.header.lower()
    if what == "a date" and any(w in lowered for w in _BOOKKEEPING):
        ctx.warn(
            f"{place}: not used (a record-keeping date, not when the entry applies; "
            f"validity columns are {_fields(spec, 'valid_from', 'valid_to')})"
        )
        return
    if what:
        fields = ("valid_from", "valid_to") if what == "a date" else ("stores",)
        raise MetadataError(
            f"{place}: looks like {what}, which a {spec.label} reads only from "
            f"{_fields(spec, *fields)}; rename the column to one of those, or delete it"
        )
    ctx.warn(f"{place}: not used by a {spec.label} (it reads {spec.known()})")


def _repeated(layout: Layout, column: Unused, place: str, ctx: LoadContext) -> None:
    first = layout.header(column.repeats)
    if column.repeats in META_FIELDS:
        raise MetadataError(
            f"{place}: repeats {first!r} (both are {layout.spec.shown(column.repeats)}); "
            "keep one of them"
        )
    ctx.warn(f"{place}: not used, {first!r} already gives {layout.spec.shown(column.repeats)}")


def _extra_cells(table: RawTable, width: int, ctx: LoadContext) -> None:
    beyond = [where for where, values in table.rows if any(map(is_filled, values[width:]))]
    if beyond:
        ctx.warn(
            f"{table.label}: {numbered(table.label, beyond)}: values beyond the last column "
            f"({width}) are not used; an unquoted comma inside a cell splits it (quote the cell)"
        )


def _column(table: RawTable, index: int) -> Iterable[RawValue]:
    return (values[index - 1] for _, values in table.rows if len(values) >= index)


def _place(table: RawTable, column: Unused) -> str:
    if table.cell_word == "key":
        return f"{table.header_at}, key {column.header!r}"
    header = f" {column.header!r}" if column.header else " (no header)"
    return f"{table.header_at}, column {column.index}{header}"


def _fields(spec: ShapeSpec, *names: str) -> str:
    known = dict(spec.synonyms)
    return " and ".join(spec.shown(n) for n in names if n in known) or "no column"


def _count(values: Sequence[RawValue], noun: str) -> str:
    return f"{len(values)} {noun}{'s' if len(values) != 1 else ''}"


def _all_dates(values: Sequence[RawValue]) -> bool:
    def dated(v: RawValue) -> bool:
        return isinstance(v, date) or bool(_DATE_IN_TEXT.search(cell_text(v)))

    return bool(values) and all(dated(v) for v in values)


def _all_stores(values: Sequence[RawValue], ctx: LoadContext) -> bool:
    directory = ctx.stores
    if not directory or not values:
        return False
    tokens = [t for v in values for t in parse_stores(cell_text(v))]
    return bool(tokens) and all(directory.resolve(t) is not None for t in tokens)
