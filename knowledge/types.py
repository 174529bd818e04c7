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


KIND_LABELS: dict[Kind, str] = {
    Kind.FAQ: "常见问题",
    Kind.PROMOTION: "活动信息",
    Kind.PRODUCT: "商品信息",
    Kind.POLICY: "服务政策",
    Kind.STORE: "门店信息",
}
"""What members are told a source is when its document has no title (never its file name)."""


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

    @property
    def label(self) -> str:
        """How members see this source named: the title, else :data:`KIND_LABELS` of the kind."""
        return self.title or KIND_LABELS[self.kind]

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
    """One loaded document: its metadata and its chunks, ready to be stored.

    ``warnings`` are what the loader understood but did not use (a column it ignores, rows it
    skipped), one line each naming the file (and row or column); they are not part of the
    content hash. ``siyu ingest --strict`` refuses a document that has any.
    """

    meta: DocumentMeta
    chunks: tuple[ChunkDraft, ...]
    content_hash: str
    warnings: tuple[str, ...] = ()


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
        """What an extractive answer quotes: the QA answer, else the chunk text without the
        heading path line it starts with (:func:`knowledge.chunking.with_heading`)."""
        draft = self.draft
        if draft.answer:
            return draft.answer
        return draft.text.removeprefix(f"{draft.heading}\n") if draft.heading else draft.text


@dataclass(frozen=True, slots=True)
class Citation:
    """Where an answer came from: ``title`` is shown to members (a document title or a label for
    its kind, never a file name), ``source`` (the file name) to operators only."""

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
        return Citation(c.doc_id, c.meta.source, c.meta.label, c.version, c.id)


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
