"""Table shapes: what kind of table a header row is, and what each column means in that kind.

The same header means different things in different tables (``门店`` is a store's name in a store
table but a promotion's store scope; ``名称`` is a product's, a store's or a promotion's name;
``说明`` is a description, a store note or a promotion's text), so headers are read per shape:

- **QA**: a question and an answer column (plus variants and metadata columns). Other columns are
  not used, as FAQ exports carry many: each is a warning naming it, or an error when it looks
  like metadata (:mod:`knowledge.loaders.unused`); a near-miss of a metadata key (``vaild_to``)
  is an error.
- **product**: SKU and name columns; a price column is required too.
- **store**: a name or id column and at least one of address, hours, phone, parking.
- **promotion**: a title or text column and at least one of start, end, period (``活动时间``:
  ``2026-12-01 至 2026-12-08``), store scope, or a kind column.

A header row with a question column is a QA table; otherwise the record shapes that fit are
compared and the one that recognises most headers wins (``编号,名称,地址,电话`` is a store table
although ``编号,名称`` would fit a product one). In a record table every header must be known:
an unknown one is a :class:`~knowledge.errors.MetadataError` naming the file, the column and the
headers that table accepts. Headers are compared after :func:`knowledge.metadata.normalise_key`
(case, spaces, a unit suffix like ``售价（元）``) with underscores, ``*`` required-markers and
trailing colons dropped. ``序号``/``No.`` columns are ignored in every shape. The accepted headers
are listed in :mod:`knowledge.loaders.headers`.

A file's table must fit a shape (:func:`file_layout` refuses it otherwise); a table inside a
document is a table of records only when it fits completely, every header known
(:func:`document_layout`), and is prose otherwise.
"""

from __future__ import annotations

import difflib
import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Final

from knowledge.errors import LoaderError, MetadataError
from knowledge.loaders.headers import PRODUCT_KEYS, PROMOTION_KEYS, QA_KEYS, STORE_KEYS, Synonyms
from knowledge.metadata import normalise_key, reject_near_miss
from knowledge.types import Kind


class Shape(enum.Enum):
    """The kinds of table the loaders understand."""

    QA = "QA table"
    PRODUCT = "product table"
    STORE = "store table"
    PROMOTION = "promotion table"


_IGNORED: Final = frozenset({"序号", "no", "行号", "index"})
_MULTI: Final = frozenset({"description", "notes", "text"})
"""Free-text fields several columns may fill (``备注`` and ``服务``): joined, one per line."""


def match_key(header: str) -> str:
    """The form headers are compared in: ``"售价（元）*"`` → ``"售价"``, ``"Store ID"`` →
    ``"storeid"``."""
    return normalise_key(header.strip().strip("*:：.")).replace("_", "")


@dataclass(frozen=True, slots=True)
class ShapeSpec:
    """One table shape: its headers, the columns it needs, and the kind its rows default to."""

    shape: Shape
    kind: Kind | None
    synonyms: Synonyms
    fits_with: tuple[tuple[str, ...], ...]
    """Groups of fields; a header row fits when it has one field of every group."""
    needs_too: tuple[tuple[str, ...], ...] = ()
    """Further groups a complete table has (a product table's price)."""
    strict: bool = True

    @property
    def label(self) -> str:
        """``"product table"``."""
        return self.shape.value

    @property
    def noun(self) -> str:
        """What one row is: ``"product"``."""
        return self.shape.value.removesuffix(" table")

    def header_map(self) -> Mapping[str, str]:
        """Every accepted header (in :func:`match_key` form) → its field."""
        return _KEYS[self.shape]

    def fields_of(self, headers: Sequence[str]) -> frozenset[str]:
        """The fields ``headers`` give in this shape."""
        keys = self.header_map()
        return frozenset(keys[k] for k in map(match_key, headers) if k in keys)

    def fits(self, fields: frozenset[str]) -> bool:
        return all(not fields.isdisjoint(group) for group in self.fits_with)

    def missing(self, fields: frozenset[str]) -> list[tuple[str, ...]]:
        """The needed field groups ``fields`` lacks (empty for a complete table)."""
        return [g for g in (*self.fits_with, *self.needs_too) if fields.isdisjoint(g)]

    def shown(self, field: str) -> str:
        """How a field is named in messages: ``售价/price``."""
        names = dict(self.synonyms)[field]
        return "/".join(names[:2])

    def known(self) -> str:
        """Every field as shown in messages, comma-separated."""
        return ", ".join(self.shown(field) for field, _ in self.synonyms)


QA: Final = ShapeSpec(Shape.QA, None, QA_KEYS, (("question",),), (("answer",),), strict=False)
PRODUCT: Final = ShapeSpec(
    Shape.PRODUCT, Kind.PRODUCT, PRODUCT_KEYS, (("sku",), ("name",)), (("price",),)
)
STORE: Final = ShapeSpec(
    Shape.STORE, Kind.STORE, STORE_KEYS,
    (("name", "store_id"), ("address", "hours", "phone", "parking")),
)  # fmt: skip
PROMOTION: Final = ShapeSpec(
    Shape.PROMOTION, Kind.PROMOTION, PROMOTION_KEYS,
    (("title", "text"), ("valid_from", "valid_to", "period", "stores", "kind")),
)  # fmt: skip
RECORD_SPECS: Final = (PRODUCT, STORE, PROMOTION)

_KEYS: Final[Mapping[Shape, Mapping[str, str]]] = {
    spec.shape: {match_key(name): field for field, names in spec.synonyms for name in names}
    for spec in (QA, *RECORD_SPECS)
}


@dataclass(frozen=True, slots=True)
class Column:
    """A used column: its 1-based position, its header as written, and the field it fills."""

    index: int
    header: str
    field: str


@dataclass(frozen=True, slots=True)
class Unused:
    """A column no field reads: its 1-based position, its header as written ("" for none) and,
    for a second column of a field a QA table reads once, that field."""

    index: int
    header: str
    repeats: str = ""


@dataclass(frozen=True, slots=True)
class Layout:
    """A header row read in one shape; ``columns`` is aligned with it (None = not used).

    ``unused`` lists the columns not read, except ``序号``-like ones (understood as row numbers):
    a QA table's unknown and repeated columns, and any table's columns without a header (these
    matter only when their cells hold values; :mod:`knowledge.loaders.unused` decides).
    """

    spec: ShapeSpec
    columns: tuple[Column | None, ...]
    unused: tuple[Unused, ...] = ()

    def fields(self) -> frozenset[str]:
        return frozenset(c.field for c in self.columns if c is not None)

    def header(self, field: str) -> str:
        """The header of the (first) column filling ``field``, or how the field is shown."""
        column = next((c for c in self.columns if c is not None and c.field == field), None)
        return column.header if column is not None else self.spec.shown(field)


def detect(headers: Sequence[str]) -> ShapeSpec | None:
    """The shape a header row is (see the module doc), or None when none fits."""
    if "question" in QA.fields_of(headers):
        return QA
    fitting = [spec for spec in RECORD_SPECS if spec.fits(spec.fields_of(headers))]
    return max(fitting, key=lambda spec: _recognised(spec, headers), default=None)


def same_column(headers: Sequence[str]) -> dict[str, str]:
    """Each header → the first header meaning the same field in the shape they form (JSON objects
    may spell one key two ways: ``question`` in one item, ``问题`` in the next)."""
    spec = detect(headers)
    keys = spec.header_map() if spec is not None else {}
    first: dict[str, str] = {}
    merged: dict[str, str] = {}
    for header in headers:
        field = keys.get(match_key(header))
        merged[header] = header if field is None else first.setdefault(field, header)
    return merged


def file_layout(name: str, headers: Sequence[str], where: str, part: str = "") -> Layout:
    """The layout of a file's header row; LoaderError when no shape fits or a needed column is
    missing, MetadataError for an unknown or repeated column of a record table. ``part`` names
    the table inside the file in LoaderErrors (``"sheet 门店"``)."""
    prefix = f"{part}: " if part else ""
    spec = detect(headers)
    if spec is None:
        raise LoaderError(name, prefix + _no_shape(headers))
    layout = read_headers(spec, headers, where)
    missing = spec.missing(layout.fields())
    if missing:
        needed = " and a ".join(" or ".join(spec.shown(f) for f in group) for group in missing)
        raise LoaderError(
            name, f"{prefix}a {spec.label} needs a {needed} column (columns: {_listed(headers)})"
        )
    return layout


def document_layout(headers: Sequence[str], where: str) -> Layout | None:
    """The layout of a table inside a document, or None (the table is prose) unless a shape fits,
    the table is complete and every header is known to it."""
    spec = detect(headers)
    if spec is None:
        return None
    keys = spec.header_map()
    if any(match_key(h) not in keys and not _ignorable(h) for h in headers):
        return None
    try:
        layout = read_headers(spec, headers, where)
    except MetadataError:
        return None  # a repeated column: not a table of records, just a table
    return None if spec.missing(layout.fields()) else layout


def read_headers(
    spec: ShapeSpec, headers: Sequence[str], where: str, *, keyed: bool = False
) -> Layout:
    """Each header's column in ``spec``; ``where`` ("stores.csv header") starts errors.

    ``keyed`` reads front matter keys: errors say "key 'x'" instead of "column 3 'x'".
    """
    keys = spec.header_map()
    columns: list[Column | None] = []
    unused: list[Unused] = []
    for index, header in enumerate(headers, 1):
        field = keys.get(match_key(header))
        place = f"key {header.strip()!r}" if keyed else f"column {index} {header.strip()!r}"
        if field is None:
            _unknown(spec, header, where, place, keyed)
            columns.append(None)
            if match_key(header) not in _IGNORED:
                unused.append(Unused(index, header.strip()))
            continue
        column = Column(index, header.strip(), field)
        columns.append(_new_column(spec, columns, column, f"{where}, {place}"))
        if columns[-1] is None:
            unused.append(Unused(index, header.strip(), repeats=field))
    return Layout(spec, tuple(columns), tuple(unused))


def _new_column(
    spec: ShapeSpec, columns: list[Column | None], new: Column, where: str
) -> Column | None:
    first = next((c for c in columns if c is not None and c.field == new.field), None)
    if first is None or new.field in _MULTI:
        return new
    if not spec.strict:
        return None  # a QA table keeps the first of repeated columns, as it always has
    raise MetadataError(
        f"{where}: repeats {first.header!r} (both are {spec.shown(new.field)}); keep one of them"
    )


def _unknown(spec: ShapeSpec, header: str, where: str, place: str, keyed: bool) -> None:
    if _ignorable(header):
        return
    if not spec.strict:
        reject_near_miss(header, where)
        return
    written = {match_key(name): name for _, names in spec.synonyms for name in names}
    close = difflib.get_close_matches(match_key(header), list(written), n=1, cutoff=0.75)
    hint = f" (did you mean {written[close[0]]!r}?)" if close else ""
    what = f"key for a {spec.noun}" if keyed else f"column for a {spec.label}"
    raise MetadataError(f"{where}, {place}: unknown {what}{hint}; known: {spec.known()}")


def _ignorable(header: str) -> bool:
    key = match_key(header)
    return not key or key in _IGNORED


def _recognised(spec: ShapeSpec, headers: Sequence[str]) -> int:
    keys = spec.header_map()
    return sum(match_key(h) in keys for h in headers)


def _no_shape(headers: Sequence[str]) -> str:
    specs = (QA, *RECORD_SPECS)
    keys = [match_key(h) for h in headers]
    recognised = sorted(
        {spec.header_map()[k] for spec in specs for k in keys if k in spec.header_map()}
    )
    return (
        "no table shape fits the headers: a table needs question and answer columns "
        "(问题/question, 答案/answer), product columns (SKU/货号, 商品名称/name, "
        "售价/price), store columns (门店名称 or 门店编号, and 地址/营业时间/电话/停车) or "
        "promotion columns (活动名称 or 活动内容, and 开始日期/结束日期/适用门店); "
        f"recognised columns: {', '.join(recognised) or 'none'}"
    )


def _listed(headers: Sequence[str]) -> str:
    return ", ".join(h.strip() for h in headers if h.strip()) or "none"
