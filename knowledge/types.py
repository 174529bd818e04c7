"""Value types shared by every knowledge module: document metadata, chunks, hits, citations.

All datetimes are timezone-aware. A document whose ``stores`` is empty applies to every store;
otherwise to each store id listed. ``valid_from`` / ``valid_to`` of ``None`` mean "no bound" on
that side.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import datetime


class Kind(enum.StrEnum):
    """What a document is about; drives how answers quote it."""

    FAQ = "faq"
    PROMOTION = "promotion"
    PRODUCT = "product"
    POLICY = "policy"
    STORE = "store"


@dataclass(frozen=True, slots=True)
class DocumentMeta:
    """Metadata every document carries, from front matter, table columns or the ingest call."""

    source: str
    kind: Kind = Kind.FAQ
    stores: tuple[str, ...] = ()
    """The store ids this applies to; empty = every store."""
    valid_from: datetime | None = None
    valid_to: datetime | None = None
    tags: tuple[str, ...] = ()
    skus: tuple[str, ...] = ()
    title: str = ""

    def is_valid_at(self, when: datetime) -> bool:
        """True when ``when`` lies inside the validity window (bounds inclusive)."""
        if self.valid_from is not None and when < self.valid_from:
            return False
        return not (self.valid_to is not None and when > self.valid_to)

    def applies_to_store(self, store_id: str | None) -> bool:
        """True for all-store documents, and for store-scoped ones when asked from one of theirs.

        A question with no store (``store_id=None``) sees only all-store documents.
        """
        return not self.stores or store_id in self.stores


@dataclass(frozen=True, slots=True)
class ChunkDraft:
    """A piece of a document before it is stored: what to embed and what to show.

    ``index_texts`` are the texts that find this chunk (for a QA row: the question and its
    variants); ``text`` is what is shown and quoted. When ``index_texts`` is empty, ``text``
    itself is indexed. ``answer`` is the extractive answer for QA rows ("" for prose chunks,
    whose ``text`` is the answer).
    """

    text: str
    index_texts: tuple[str, ...] = ()
    answer: str = ""
    heading: str = ""
    skus: tuple[str, ...] = ()
    meta: DocumentMeta | None = None
    """Per-row metadata from table columns; when set it replaces the document's for this chunk."""
    fields: tuple[tuple[str, str], ...] = ()
    """A record's named values (a store's address, a product's price, ...), as written in the
    file; :mod:`knowledge.records` reads them. Empty for prose and QA chunks."""

    def value(self, name: str) -> str:
        """The record field ``name``, or "" when the chunk has none."""
        return next((value for key, value in self.fields if key == name), "")


@dataclass(frozen=True, slots=True)
class SourceDocument:
    """One loaded document: its metadata and its chunks, ready to be stored."""

    meta: DocumentMeta
    chunks: tuple[ChunkDraft, ...]
    content_hash: str


@dataclass(frozen=True, slots=True)
class Chunk:
    """A stored chunk of the active version of a document."""

    id: str
    doc_id: str
    version: int
    ordinal: int
    draft: ChunkDraft
    meta: DocumentMeta
    """The chunk's effective metadata: ``draft.meta`` when set, else the document's."""

    @property
    def answer_text(self) -> str:
        """What an extractive answer quotes: the QA answer, else the chunk text."""
        return self.draft.answer or self.draft.text


@dataclass(frozen=True, slots=True)
class Citation:
    """Where an answer came from, shown to members and operators."""

    doc_id: str
    source: str
    title: str
    version: int
    chunk_id: str


@dataclass(frozen=True, slots=True)
class Hit:
    """A retrieval result. ``score`` ranks hits (fused); ``confidence`` in [0, 1] is compared
    with the "not found" threshold; ``matched_by`` says which paths found it
    (``"sku"``, ``"dense"``, ``"keyword"``)."""

    chunk: Chunk
    score: float
    confidence: float
    matched_by: tuple[str, ...] = field(default=())

    @property
    def citation(self) -> Citation:
        c = self.chunk
        return Citation(c.doc_id, c.meta.source, c.meta.title or c.draft.heading, c.version, c.id)


@dataclass(frozen=True, slots=True)
class SearchResult:
    """Hits best first, and whether the best clears the confidence threshold."""

    query: str
    hits: tuple[Hit, ...]
    threshold: float

    @property
    def found(self) -> bool:
        return bool(self.hits) and self.hits[0].confidence >= self.threshold

    @property
    def best(self) -> Hit | None:
        return self.hits[0] if self.hits else None
