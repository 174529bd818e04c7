"""Markdown front matter → the document's metadata and, for a store or product file, its record.

- ``kind: store`` or ``kind: product`` with record keys (``store_id``, ``name``, ``address``,
  ``hours``, ``phone``, ``parking``, ``aliases``, ``city`` / ``sku``, ``name``, ``price``, ...; any
  header the store or product table accepts, ``门店名称``, ``售价``): the front matter *is* that
  record, one chunk with the same text and fields as a table row. Its other keys (kind, title,
  tags; for a product also store scope and validity) are the document's metadata. Every key must
  be known: a misspelt ``adress`` must not silently drop the address.
- Otherwise: metadata keys as :func:`knowledge.metadata.parse_raw_meta` reads them (other keys
  ignored, near-misses refused); a promotion's ``category``/``类目`` becomes a field of its first
  chunk.

Store scopes (``store_id: a,b``, ``stores: [a, b]``, ``适用门店: 深圳南山店、深圳福田店``) resolve
through the :class:`~knowledge.loaders.scope.LoadContext`; an unknown store names the key.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from knowledge.errors import MetadataError
from knowledge.loaders.frontmatter import FrontMatter
from knowledge.loaders.parsed import Piece
from knowledge.loaders.retail import Fields, product_draft, store_draft
from knowledge.loaders.rows import META_FIELDS, TableRow, field_text, is_filled, read_meta
from knowledge.loaders.scope import LoadContext, scope_where
from knowledge.loaders.shapes import PRODUCT, STORE, ShapeSpec, match_key, read_headers
from knowledge.metadata import META_KEYS, PartialMeta, normalise_key, parse_kind, parse_raw_meta
from knowledge.types import Kind

_RECORD_SPECS: Final = {Kind.STORE: STORE, Kind.PRODUCT: PRODUCT}
_CATEGORY_KEYS: Final = frozenset(map(match_key, ("category", "类目", "品类", "类别", "分类")))


@dataclass(frozen=True, slots=True)
class FrontMatterRead:
    """What the front matter gives: the document's layer, its record, fields for chunk one."""

    meta: PartialMeta
    record: Piece | None = None
    fields: Fields = ()


def read_front_matter(name: str, front: FrontMatter, ctx: LoadContext) -> FrontMatterRead:
    """Read ``front`` (see the module doc); errors start with ``"<name> front matter"``."""
    where = f"{name} front matter"
    spec = _record_spec(front, where)
    if spec is not None:
        return _record(spec, front, where, ctx)
    layer = parse_raw_meta(front, ctx.tz, where=where)
    meta = ctx.scoped(layer, scope_where(where, front))
    fields: Fields = ()
    if meta.kind is Kind.PROMOTION:
        fields = tuple(
            ("category", text)
            for key, value in front.items()
            if match_key(key) in _CATEGORY_KEYS and (text := field_text(value))
        )[:1]
    return FrontMatterRead(meta, fields=fields)


def _record_spec(front: FrontMatter, where: str) -> ShapeSpec | None:
    """The store/product shape when the front matter says so and carries record keys."""
    raw = next((v for k, v in front.items() if META_KEYS.get(normalise_key(k)) == "kind"), None)
    if not isinstance(raw, str) or not raw.strip():
        return None
    try:
        spec = _RECORD_SPECS.get(parse_kind(raw))
    except MetadataError as exc:
        raise MetadataError(f"{where}: kind: {exc}") from exc
    if spec is None:
        return None
    keys = spec.header_map()
    record_keys = [k for k in front if keys.get(match_key(k)) not in (None, *META_FIELDS)]
    return spec if record_keys else None


def _record(spec: ShapeSpec, front: FrontMatter, where: str, ctx: LoadContext) -> FrontMatterRead:
    headers = tuple(front)
    layout = read_headers(spec, headers, where, keyed=True)
    pairs = zip(layout.columns, front.values(), strict=True)
    cells = tuple((c, v) for c, v in pairs if c is not None and is_filled(v))
    row = TableRow(where, layout, cells, cell_word="key")
    draft = store_draft(row) if spec is STORE else product_draft(row)
    names = tuple(f for f in META_FIELDS if f in layout.fields())
    return FrontMatterRead(read_meta(row, ctx, names), record=Piece(draft, where=where))
