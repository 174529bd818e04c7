"""One snapshot's retail records and the lookup over their names (see :mod:`knowledge.records`
and :mod:`knowledge.lookup`)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from knowledge.lookup import Lookup
from knowledge.records import (
    Product,
    Promotion,
    StoreDirectory,
    product_of,
    promotions_from_chunks,
    store_of,
)
from knowledge.types import Chunk, Kind

_PROSE: Final = frozenset({Kind.FAQ, Kind.POLICY})
"""Texts whose common words make a name's substring unspecific (see :mod:`knowledge.lookup`)."""


@dataclass(frozen=True, slots=True)
class Catalogue:
    """The records of one snapshot: stores, products and promotions."""

    stores: StoreDirectory
    products: tuple[Product, ...]
    promotions: tuple[Promotion, ...]
    lookup: Lookup
    """Finds the records a message names."""

    @classmethod
    def empty(cls) -> Catalogue:
        return cls.build(())

    @classmethod
    def build(cls, chunks: Sequence[Chunk]) -> Catalogue:
        """Records from the active chunks (any order; sorted by document and position here)."""
        ordered = sorted(chunks, key=lambda c: (c.doc_id, c.ordinal))
        stores = [s for c in ordered if c.meta.kind is Kind.STORE and (s := store_of(c))]
        products = [p for c in ordered if c.meta.kind is Kind.PRODUCT and (p := product_of(c))]
        promotions = promotions_from_chunks(ordered)
        directory = StoreDirectory(stores)
        texts = (c.draft.text for c in ordered if c.meta.kind in _PROSE)
        lookup = Lookup(directory, products, promotions, texts)
        return cls(directory, tuple(products), tuple(promotions), lookup)

    def product(self, sku: str) -> Product | None:
        """The product with this SKU, or None."""
        return next((p for p in self.products if p.sku == sku.upper()), None)
