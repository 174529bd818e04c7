"""Retail knowledge as records: the store directory, the product catalogue and the promotions.

Members ask about *today* and *their store* ("what deals are on", "how much is X now", "when does
the store close"); those are answered from records, not by hoping one text chunk matches. The
loaders keep each record's values, as written in the file, in ``ChunkDraft.fields`` of a chunk of
kind ``store`` or ``product`` (field names: :data:`STORE_FIELDS`, :data:`PRODUCT_FIELDS`);
promotions are documents (or sheet rows) of kind ``promotion`` whose title, text, store scope,
validity and SKUs are their metadata. :meth:`Catalogue.build` turns the active chunks into typed
records (:class:`knowledge.catalogue.Catalogue`); the knowledge base builds one with every
snapshot, so the records always match what retrieval sees.

A promotion written as several chunks (a long Markdown section) is put back together in position
order: chunks are grouped by (document, metadata), because a sheet gives each row its own validity
and stores; when one document yields several promotions each is keyed ``"<doc_id>#<ordinal>"``.
The repeated section heading and the packing overlap are dropped when joining, so a promotion
never says the same sentence twice.

Store names: a promotion's scope may name stores by id, name or alias; :class:`StoreDirectory`
resolves them. Besides the names a file gives, each store answers to its name without the city
(``深圳南山店`` → ``南山店``) and without the trailing ``店`` (``南山``), when that is still unique.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Final

from knowledge.types import Chunk, Citation, DocumentMeta, Kind

STORE_FIELDS: Final = (
    "store_id", "name", "aliases", "city", "address", "hours", "phone", "parking", "notes",
)  # fmt: skip
"""The values a store record may carry (``aliases``: names separated by ``,``/``、``/``|``)."""

PRODUCT_FIELDS: Final = (
    "sku", "name", "aliases", "spec", "price", "category", "description",
)  # fmt: skip
"""The values a product record may carry (``price`` as written: ``159``, ``3.99``, ``¥39.9``)."""

PROMOTION_FIELDS: Final = ("category",)
"""Values a promotion row may carry beyond its metadata (title, stores, validity, SKUs)."""

_CITY_NAMES: Final = """
北京 上海 广州 深圳 天津 重庆 杭州 苏州 南京 成都 武汉 西安 长沙 郑州 青岛 厦门 宁波 佛山 东莞
合肥 福州 济南 昆明 沈阳 大连 哈尔滨 长春 石家庄 太原 南昌 南宁 贵阳 兰州 海口 三亚 无锡 常州
温州 珠海 中山 惠州 泉州 烟台 徐州 扬州 嘉兴 绍兴 金华 台州 潍坊 洛阳 呼和浩特 乌鲁木齐 银川
西宁 拉萨 香港 澳门 南通 镇江 湖州 芜湖 江门 汕头 保定 唐山 廊坊 威海 临沂 绵阳 宜昌 襄阳
"""
KNOWN_CITIES: Final = tuple(_CITY_NAMES.split())
"""Cities recognised at the start of a store's name or address when no city is written."""

_MIN_OVERLAP = 8
"""Shortest repeated text (characters) treated as chunk overlap rather than coincidence."""
_LIST_SPLIT: Final = re.compile(r"[,，、|;；/]+")
_CITY_IN_ADDRESS: Final = re.compile(r"^(?:[^省市]{2,3}省)?([^省市区县]{2,4})市")


def split_list(value: str) -> tuple[str, ...]:
    """Items of a ``,``/``、``/``|`` separated cell, trimmed and de-duplicated."""
    return tuple(dict.fromkeys(v.strip() for v in _LIST_SPLIT.split(value) if v.strip()))


@dataclass(frozen=True, slots=True)
class Store:
    """One store of the brand, as its directory row says."""

    store_id: str
    name: str
    city: str = ""
    address: str = ""
    hours: str = ""
    phone: str = ""
    parking: str = ""
    notes: str = ""
    aliases: tuple[str, ...] = ()
    citation: Citation | None = None

    @property
    def short_names(self) -> tuple[str, ...]:
        """Names members use besides the full one: without the city, without the final 店."""
        names: list[str] = []
        for name in (self.name, *self.aliases):
            bare = name.removeprefix(self.city) if self.city else name
            names += [bare, bare.removesuffix("店")]
        return tuple(n for n in dict.fromkeys(names) if len(n) >= 2)


@dataclass(frozen=True, slots=True)
class Product:
    """One product row: SKU, name, spec and list price as written."""

    sku: str
    name: str
    price: str
    spec: str = ""
    category: str = ""
    description: str = ""
    aliases: tuple[str, ...] = ()
    meta: DocumentMeta | None = None
    citation: Citation | None = None

    @property
    def price_text(self) -> str:
        """The list price with its unit: ``159`` → ``159元``; ``¥39.9`` stays as written."""
        return price_with_unit(self.price)


def price_with_unit(price: str) -> str:
    """``159`` → ``159元``; a price already carrying ``元`` or a currency sign is kept."""
    price = price.strip()
    if not price or price.endswith("元") or price[0] in "¥￥$":
        return price
    return f"{price}元"


@dataclass(frozen=True, slots=True)
class Promotion:
    """One promotion: its text as the knowledge has it, validity window and store scope."""

    doc_id: str
    title: str
    text: str
    stores: tuple[str, ...]
    """Store ids it is for; empty = every store."""
    valid_from: datetime | None
    valid_to: datetime | None
    tags: tuple[str, ...]
    source: str
    skus: tuple[str, ...] = ()
    category: str = ""
    citation: Citation | None = None

    def is_valid_at(self, when: datetime) -> bool:
        """True when ``when`` is inside the validity window (bounds inclusive)."""
        return not (self.has_not_started(when) or self.has_ended(when))

    def has_not_started(self, when: datetime) -> bool:
        """True before ``valid_from``."""
        return self.valid_from is not None and when < self.valid_from

    def has_ended(self, when: datetime) -> bool:
        """True after ``valid_to``."""
        return self.valid_to is not None and when > self.valid_to

    def applies_to_store(self, store_id: str | None) -> bool:
        """All-store promotions apply everywhere; store-scoped ones only to their stores."""
        return not self.stores or store_id in self.stores


class StoreDirectory:
    """The brand's stores, found by id, name, alias or short name."""

    def __init__(self, stores: Iterable[Store]) -> None:
        self.stores: tuple[Store, ...] = tuple(stores)
        self._by_id = {s.store_id: s for s in self.stores}
        self._names = _name_index(self.stores)

    def __len__(self) -> int:
        return len(self.stores)

    def get(self, store_id: str | None) -> Store | None:
        """The store with this id, or None."""
        return self._by_id.get(store_id) if store_id else None

    def resolve(self, name: str) -> str | None:
        """The id of the store ``name`` means (id, name, alias or unique short name), or None."""
        name = name.strip()
        if name in self._by_id:
            return name
        return self._names.get(name) or self._names.get(name.lower())

    def names(self) -> Mapping[str, str]:
        """Every name a store answers to → its id (full names, aliases, unique short names)."""
        return self._names

    def cities(self) -> tuple[str, ...]:
        """The cities the stores are in, in directory order."""
        return tuple(dict.fromkeys(s.city for s in self.stores if s.city))

    def in_city(self, city: str) -> list[Store]:
        """The stores of ``city``."""
        return [s for s in self.stores if s.city == city]


def _name_index(stores: Sequence[Store]) -> dict[str, str]:
    names: dict[str, str] = {}
    for store in stores:
        for name in (store.name, *store.aliases):
            names.setdefault(name, store.store_id)
            names.setdefault(name.lower(), store.store_id)
    counts: dict[str, set[str]] = {}
    for store in stores:
        for short in store.short_names:
            counts.setdefault(short, set()).add(store.store_id)
    for short, ids in counts.items():
        if len(ids) == 1:
            names.setdefault(short, next(iter(ids)))
    return names


def city_of(name: str, address: str) -> str:
    """The city a store is in: ``深圳市南山区…`` → ``深圳``; else a well-known city its name or
    address starts with (``北京朝阳店``); else "" (a city column says it)."""
    match = _CITY_IN_ADDRESS.match(address.strip())
    if match is not None:
        return match.group(1)
    return next((c for c in KNOWN_CITIES if name.startswith(c) or address.startswith(c)), "")


def cite(chunk: Chunk, title: str = "") -> Citation:
    """Where a record came from, for the answer's source line."""
    meta = chunk.meta
    return Citation(chunk.doc_id, meta.source, title or meta.label, chunk.version, chunk.id)


def store_of(chunk: Chunk) -> Store | None:
    """The store record a ``store`` chunk carries (None for a store chunk without an id)."""
    d = chunk.draft
    store_id, name = d.value("store_id"), d.value("name")
    if not store_id and not name:
        return None
    address = d.value("address")
    return Store(
        store_id=store_id or name, name=name or store_id,
        city=d.value("city") or city_of(name, address), address=address,
        hours=d.value("hours"), phone=d.value("phone"), parking=d.value("parking"),
        notes=d.value("notes"), aliases=split_list(d.value("aliases")),
        citation=cite(chunk),
    )  # fmt: skip


def product_of(chunk: Chunk) -> Product | None:
    """The product record a ``product`` chunk carries (None for product prose)."""
    d = chunk.draft
    sku = d.value("sku") or (d.skus[0] if d.skus and d.fields else "")
    name = d.value("name")
    if not sku or not name:
        return None
    return Product(
        sku=sku.upper(), name=name, price=d.value("price"), spec=d.value("spec"),
        category=d.value("category"), description=d.value("description"),
        aliases=split_list(d.value("aliases")), meta=chunk.meta, citation=cite(chunk),
    )  # fmt: skip


def promotions_from_chunks(chunks: Sequence[Chunk]) -> list[Promotion]:
    """Promotion chunks grouped back into promotions, in order of first appearance."""
    groups: dict[tuple[str, DocumentMeta], list[Chunk]] = {}
    for chunk in chunks:
        if chunk.meta.kind is Kind.PROMOTION:
            groups.setdefault((chunk.doc_id, chunk.meta), []).append(chunk)
    metas_per_doc: dict[str, int] = {}
    for doc_id, _meta in groups:
        metas_per_doc[doc_id] = metas_per_doc.get(doc_id, 0) + 1
    promotions = []
    for (doc_id, meta), members in groups.items():
        ordered = sorted(members, key=lambda c: c.ordinal)
        key = doc_id if metas_per_doc[doc_id] == 1 else f"{doc_id}#{ordered[0].ordinal}"
        promotions.append(_promotion(key, meta, ordered))
    return promotions


def _promotion(key: str, meta: DocumentMeta, chunks: Sequence[Chunk]) -> Promotion:
    title = meta.title or chunks[0].draft.heading or key
    skus = dict.fromkeys((*meta.skus, *(s for c in chunks for s in c.draft.skus)))
    category = next((v for c in chunks if (v := c.draft.value("category"))), "")
    return Promotion(
        doc_id=key, title=title, text=join_chunks(chunks), stores=meta.stores,
        valid_from=meta.valid_from, valid_to=meta.valid_to, tags=meta.tags, source=meta.source,
        skus=tuple(skus), category=category, citation=cite(chunks[0], title),
    )  # fmt: skip


def join_chunks(chunks: Sequence[Chunk]) -> str:
    """The chunks' texts (a QA row's answer) joined with newlines, minus repeated headings and
    packing overlap."""
    parts: list[str] = []
    previous_heading: str | None = None
    previous_body = ""
    for chunk in chunks:
        if chunk.draft.answer:  # a QA row: the answer is the promotion's text
            parts.append(chunk.draft.answer)
            previous_heading, previous_body = None, ""
            continue
        heading, text = chunk.draft.heading, chunk.draft.text
        body = text.removeprefix(f"{heading}\n") if heading else text
        if heading and heading == previous_heading:
            parts.append(_without_overlap(previous_body, body))
        else:
            parts.append(text)
        previous_heading, previous_body = heading, body
    return "\n".join(p for p in parts if p)


def _without_overlap(previous: str, body: str) -> str:
    """``body`` without its longest prefix that ``previous`` ends with (if long enough)."""
    for size in range(min(len(previous), len(body)), _MIN_OVERLAP - 1, -1):
        if previous.endswith(body[:size]):
            return body[size:].lstrip()
    return body
