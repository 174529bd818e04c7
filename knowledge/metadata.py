"""Reading and checking document metadata: front matter, table columns, JSON, the ingest call.

Metadata arrives in layers, each a :class:`PartialMeta` where ``None`` means "not given". The
effective :class:`~knowledge.types.DocumentMeta` takes every field from the first layer that gives
it, so callers list layers highest precedence first::

    row columns  >  ingest call (MetaOverrides)  >  front matter / JSON meta  >  defaults

Rules for raw values:

- Dates: ``2026-11-01``, ``2026/11/01``, ``2026.11.01``, ``2026年11月1日``, ``20261101``, with an
  optional time (``08:00`` or ``08:00:00``) and an optional offset (``+08:00``, ``Z``), or a
  spreadsheet's date cell. Naive values are in the caller's ``tz`` (Asia/Shanghai by default). A
  date-only ``valid_to`` means the end of that day. A date without a year (``12月8日``) is refused,
  never guessed.
- Stores: one store or several separated by ``,``, ``，``, ``、``, ``;``, ``|`` or spaces
  (``sz-nanshan,sz-futian``, ``深圳南山店、深圳福田店``). ``all``, ``*``, ``全部``, ``所有门店``,
  ``全部门店`` (and ``""`` in a MetaOverrides) mean every store. An empty cell or an empty
  front-matter value means "not given", never "all stores". Names are kept as written here;
  the loaders map them to store ids through the store directory (:mod:`knowledge.records`).
- Tags: a list, or a string separated by ``,``, ``，`` or ``、``.
- Kind: ``faq``/``promotion``/``product``/``policy``/``store`` or a Chinese alias (问答, 活动,
  商品, 政策, 门店, ...).
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from datetime import date, datetime, time, tzinfo
from typing import Any, Final

from knowledge.errors import MetadataError
from knowledge.types import DocumentMeta, Kind

RawValue = str | int | float | date | datetime | Sequence[str] | None
"""A value as it comes out of a parser: text, a spreadsheet's typed cell, or a list."""

ALL_STORES: Final[tuple[str, ...]] = ()
"""How a :class:`PartialMeta` says "every store" (``None`` there means "not given")."""

_ALL_STORE_WORDS: Final = frozenset(
    {"", "all", "*", "全部", "所有门店", "全部门店", "全国", "所有", "全店", "全部店铺", "通用"}
)
_STORE_SPLIT: Final = re.compile(r"[,，、;；|/\s]+")

_KIND_ALIASES: Final[Mapping[str, Kind]] = {
    **{k.value: k for k in Kind},
    "常见问题": Kind.FAQ,
    "问答": Kind.FAQ,
    "促销": Kind.PROMOTION,
    "活动": Kind.PROMOTION,
    "优惠": Kind.PROMOTION,
    "商品": Kind.PRODUCT,
    "产品": Kind.PRODUCT,
    "政策": Kind.POLICY,
    "规则": Kind.POLICY,
    "门店": Kind.STORE,
    "店铺": Kind.STORE,
    "门店信息": Kind.STORE,
}

META_KEYS: Final[Mapping[str, str]] = {
    "kind": "kind",
    "类型": "kind",
    "store_id": "stores",
    "store": "stores",
    "stores": "stores",
    "门店": "stores",
    "适用门店": "stores",
    "valid_from": "valid_from",
    "开始时间": "valid_from",
    "开始日期": "valid_from",
    "生效时间": "valid_from",
    "生效日期": "valid_from",
    "valid_to": "valid_to",
    "结束时间": "valid_to",
    "结束日期": "valid_to",
    "失效时间": "valid_to",
    "失效日期": "valid_to",
    "截止日期": "valid_to",
    "截止时间": "valid_to",
    "tags": "tags",
    "标签": "tags",
    "sku": "skus",
    "skus": "skus",
    "商品编码": "skus",
    "货号": "skus",
    "title": "title",
    "标题": "title",
}
"""Accepted spellings of metadata keys and columns → the :class:`PartialMeta` field they fill."""

_DATE_RE: Final = re.compile(
    r"(\d{4})[-/.年](\d{1,2})[-/.月](\d{1,2})日?"
    r"(?:[ T]+(\d{1,2}):(\d{2})(?::(\d{2})(?:\.(\d{1,6}))?)?)?"
    r"\s*(Z|[+-]\d{2}:?\d{2})?"
)
_COMPACT_DATE_RE: Final = re.compile(r"(\d{4})(\d{2})(\d{2})")
_NO_YEAR_RE: Final = re.compile(r"(\d{1,2})\s*[月/.-]\s*(\d{1,2})\s*[日号]?(?:\s.*)?")
_ASCII_KEYS: Final = [key for key in META_KEYS if key.isascii()]
_TAG_SPLIT: Final = re.compile(r"[,，、]")
_SKU_SPLIT: Final = re.compile(r"[,，、|;；\s]+")


@dataclass(frozen=True, slots=True)
class MetaOverrides:
    """Metadata given by the ingest call (CLI flags / console form). None = not given."""

    source: str | None = None
    kind: Kind | None = None
    store_id: str | None = None
    """One store or several (``a,b``); ``""``, ``"all"`` or ``"*"`` mean all stores (``None`` =
    not given)."""
    valid_from: datetime | None = None
    valid_to: datetime | None = None
    tags: tuple[str, ...] | None = None
    title: str | None = None


@dataclass(frozen=True, slots=True)
class PartialMeta:
    """One layer of metadata; ``None`` fields are not given. ``stores == ALL_STORES`` = all."""

    source: str | None = None
    kind: Kind | None = None
    stores: tuple[str, ...] | None = None
    valid_from: datetime | None = None
    valid_to: datetime | None = None
    tags: tuple[str, ...] | None = None
    skus: tuple[str, ...] | None = None
    title: str | None = None

    def is_empty(self) -> bool:
        """True when the layer gives nothing at all."""
        return all(getattr(self, f.name) is None for f in fields(self))


def from_overrides(overrides: MetaOverrides, tz: tzinfo) -> PartialMeta:
    """Normalise the ingest call's overrides into a layer (naive datetimes are read in ``tz``)."""
    return PartialMeta(
        source=(overrides.source or "").strip() or None,
        kind=overrides.kind,
        stores=None if overrides.store_id is None else parse_stores(overrides.store_id),
        valid_from=_aware(overrides.valid_from, tz),
        valid_to=_aware(overrides.valid_to, tz),
        tags=None if overrides.tags is None else parse_tags(list(overrides.tags)),
        title=None if overrides.title is None else overrides.title.strip(),
    )


def parse_raw_meta(raw: Mapping[str, RawValue], tz: tzinfo, *, where: str) -> PartialMeta:
    """Read a layer from raw keys (front matter, JSON ``meta``, table columns).

    Keys are matched through :data:`META_KEYS`; other keys are ignored, except near-misses of a
    known key (``vaild_to``), which are errors: silently dropping a misspelt end date would keep
    a promotion alive forever. Empty values are "not given". ``where`` ("faq.csv row 7")
    prefixes every error message.
    """
    values: dict[str, object] = {}
    for key, value in raw.items():
        name = META_KEYS.get(normalise_key(key))
        if name is None:
            reject_near_miss(key, where)
        if name is None or name in values or _is_blank(value):
            continue
        try:
            values[name] = parse_field(name, value, tz)
        except MetadataError as exc:
            raise MetadataError(f"{where}: {key}: {exc}") from exc
    layer = PartialMeta(**values)  # type: ignore[arg-type]  # keys come from META_KEYS
    check_window(layer.valid_from, layer.valid_to, where)
    return layer


def resolve(layers: Sequence[PartialMeta], *, source: str, where: str) -> DocumentMeta:
    """Merge layers (highest precedence first) over the defaults and check the result."""
    meta = DocumentMeta(
        source=_first(layers, "source") or source,
        kind=_first(layers, "kind") or Kind.FAQ,
        stores=_first(layers, "stores") or ALL_STORES,
        valid_from=_first(layers, "valid_from"),
        valid_to=_first(layers, "valid_to"),
        tags=_first(layers, "tags") or (),
        skus=_first(layers, "skus") or (),
        title=_first(layers, "title") or "",
    )
    check_window(meta.valid_from, meta.valid_to, where)
    return meta


def normalise_key(key: str) -> str:
    """Lower-case, trim, spaces/dashes to underscores, drop a trailing unit like ``（元）``."""
    key = re.sub(r"[（(][^)）]*[)）]\s*$", "", key.replace("\ufeff", "")).strip().lower()
    return re.sub(r"[\s\-]+", "_", key)


def parse_kind(value: str) -> Kind:
    """A kind name or Chinese alias → :class:`Kind`; unknown → MetadataError listing the kinds."""
    kind = _KIND_ALIASES.get(value.strip().lower())
    if kind is None:
        allowed = ", ".join(k.value for k in Kind)
        raise MetadataError(f"unknown kind {value!r}; allowed kinds: {allowed}")
    return kind


def parse_stores(value: RawValue) -> tuple[str, ...]:
    """Store ids or names as written, de-duplicated; :data:`ALL_STORES` when any item means
    every store (``全部门店``, ``all``, ...)."""
    if isinstance(value, str):
        items: list[str] = _STORE_SPLIT.split(value.strip())
    elif isinstance(value, int | float):
        items = [format_number(value)]
    else:
        items = [str(v).strip() for v in _seq(value)]
    if not items or any(item.lower() in _ALL_STORE_WORDS for item in items):
        return ALL_STORES
    return tuple(dict.fromkeys(items))


def parse_tags(value: RawValue) -> tuple[str, ...]:
    """Tags from a list or a ``,``/``，``/``、`` separated string, trimmed and de-duplicated."""
    items = _TAG_SPLIT.split(value) if isinstance(value, str) else [str(v) for v in _seq(value)]
    return tuple(dict.fromkeys(t.strip() for t in items if t.strip()))


def parse_skus(value: RawValue) -> tuple[str, ...]:
    """SKUs from a list or a separated string, upper-cased and de-duplicated."""
    if isinstance(value, str):
        items: list[str] = _SKU_SPLIT.split(value)
    elif isinstance(value, int | float):
        items = [format_number(value)]
    else:
        items = [str(v) for v in _seq(value)]
    return tuple(dict.fromkeys(s.strip().upper() for s in items if s.strip()))


def parse_datetime(value: RawValue, tz: tzinfo, *, end_of_day: bool = False) -> datetime:
    """Read a date or datetime; naive → ``tz``; date-only with ``end_of_day`` → 23:59:59.999999."""
    if isinstance(value, datetime):
        return _aware(value, tz)  # type: ignore[return-value]  # not None for a datetime
    if isinstance(value, date):
        return datetime.combine(value, time.max if end_of_day else time.min, tzinfo=tz)
    if isinstance(value, int | float) and float(value).is_integer():
        value = str(int(value))  # a spreadsheet's 20261108
    if not isinstance(value, str):
        raise MetadataError(f"cannot read a date from {value!r}")
    text = value.strip()
    compact = _COMPACT_DATE_RE.fullmatch(text)
    if compact is not None:
        text = "-".join(compact.groups())
    match = _DATE_RE.fullmatch(text)
    if match is None:
        raise MetadataError(_date_advice(text))
    return _from_match(match, value, tz, end_of_day)


def _date_advice(text: str) -> str:
    """Why ``text`` is not a date, with the spelling to use instead."""
    no_year = _NO_YEAR_RE.fullmatch(text)
    if no_year is not None:
        month, day = (int(g) for g in no_year.groups())
        if 1 <= month <= 12 and 1 <= day <= 31:
            return (
                f"cannot read date {text!r}: the year is missing "
                f"(write 2026-{month:02d}-{day:02d}; a year is never guessed)"
            )
    return (
        f"cannot read date {text!r} (write 2026-11-01, 2026-11-01 08:00, 2026/11/01, "
        "2026年11月1日 or 2026-11-01T08:00:00+08:00)"
    )


def format_number(value: int | float) -> str:
    """``30.0`` → ``"30"``, ``29.9`` → ``"29.9"`` (spreadsheets hand out floats for integers)."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _from_match(match: re.Match[str], raw: str, tz: tzinfo, end_of_day: bool) -> datetime:
    y, mo, d, h, mi, s, frac, offset = match.groups()
    try:
        day = date(int(y), int(mo), int(d))
        if h is None:
            return datetime.combine(day, time.max if end_of_day else time.min, tzinfo=tz)
        micro = int((frac or "0").ljust(6, "0"))
        clock = time(int(h), int(mi), int(s or 0), micro)
    except ValueError as exc:
        raise MetadataError(f"invalid date {raw!r}: {exc}") from exc
    if offset is None:
        return datetime.combine(day, clock, tzinfo=tz)
    iso = f"{day.isoformat()}T{clock.isoformat()}{'+00:00' if offset == 'Z' else offset}"
    return datetime.fromisoformat(iso)


def parse_field(name: str, value: RawValue, tz: tzinfo) -> object:
    """A raw value read as the :class:`PartialMeta` field ``name`` (else MetadataError)."""
    if name in ("valid_from", "valid_to"):
        return parse_datetime(value, tz, end_of_day=name == "valid_to")
    if name == "tags":
        return parse_tags(value)
    if name == "skus":
        return parse_skus(value)
    if name == "stores":
        return parse_stores(value)
    text = _scalar_text(value)
    if name == "kind":
        return parse_kind(text)
    return text


def _scalar_text(value: RawValue) -> str:
    if isinstance(value, str):
        return value.strip()
    if isinstance(value, int | float):
        return format_number(value)
    raise MetadataError(f"expected a single value, got {value!r}")


def reject_near_miss(key: str, where: str) -> None:
    """MetadataError when ``key`` is unknown but close to a metadata key (``vaild_to``)."""
    close = difflib.get_close_matches(normalise_key(key), _ASCII_KEYS, n=1, cutoff=0.8)
    if close:
        raise MetadataError(f"{where}: unknown key {key!r} (did you mean {close[0]!r}?)")


def check_window(start: datetime | None, end: datetime | None, where: str) -> None:
    """MetadataError (prefixed with ``where``) when ``end`` is before ``start``."""
    if start is not None and end is not None and end < start:
        raise MetadataError(
            f"{where}: valid_to {end.isoformat()} is before valid_from {start.isoformat()}"
        )


def _first(layers: Sequence[PartialMeta], name: str) -> Any:
    # Any: each field keeps its own type; resolve() reads them by name.
    return next((v for v in (getattr(layer, name) for layer in layers) if v is not None), None)


def _aware(value: datetime | None, tz: tzinfo) -> datetime | None:
    if value is None or value.tzinfo is not None:
        return value
    return value.replace(tzinfo=tz)


def _seq(value: RawValue) -> Sequence[object]:
    if isinstance(value, list | tuple):
        return value
    raise MetadataError(f"expected a list or text, got {value!r}")


def _is_blank(value: RawValue) -> bool:
    if value is None:
        return True
    if isinstance(value, str):
        return not value.strip()
    return isinstance(value, list | tuple) and not value
