"""Promotions as campaigns see them: one value per promotion document, chosen by validity and store.

The knowledge base stores a promotion as chunks (:meth:`KnowledgeBase.active_chunks` with
``Kind.PROMOTION``); :func:`promotions_from_chunks` puts each document back together, chunks in
position order, texts joined with ``"\\n"``. Two refinements keep the text true to the document:

- A table (CSV, sheet) of promotions gives each row its own metadata. Rows with their own validity
  or store are separate promotions, so chunks are grouped by (document, metadata); when one
  document yields several, each is ``"<doc_id>#<first ordinal>"``.
- A long section is packed into chunks that repeat the section heading and overlap by a few
  sentences (:mod:`knowledge.chunking`); the repeated heading and overlap are dropped when
  joining, so a promotion never says the same sentence twice.

:func:`valid_promotions` applies the retail rules of DESIGN.md §4: a promotion is used only while it
is valid (bounds inclusive, as :meth:`DocumentMeta.is_valid_at`) and only for its store. Validity
is judged at ``start`` (the send time, or the start of the day's window): a promotion that ends
later that day is still today's deal, and the outbox row carrying it expires at its ``valid_to``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from knowledge.types import Chunk, DocumentMeta, Kind

_MIN_OVERLAP = 8
"""Shortest repeated text (characters) treated as chunk overlap rather than coincidence."""


@dataclass(frozen=True, slots=True)
class Promotion:
    """One promotion: its text as the knowledge has it, validity window and store scope."""

    doc_id: str
    title: str
    text: str
    store_id: str | None
    valid_from: datetime | None
    valid_to: datetime | None
    tags: tuple[str, ...]
    source: str

    def is_valid_at(self, when: datetime) -> bool:
        """True when ``when`` is inside the validity window (bounds inclusive)."""
        if self.valid_from is not None and when < self.valid_from:
            return False
        return self.valid_to is None or when <= self.valid_to

    def applies_to_store(self, store_id: str | None) -> bool:
        """All-store promotions apply everywhere; store-scoped ones only to that store."""
        return self.store_id is None or self.store_id == store_id


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


def _promotion(doc_id: str, meta: DocumentMeta, chunks: Sequence[Chunk]) -> Promotion:
    title = meta.title or chunks[0].draft.heading or doc_id
    return Promotion(
        doc_id=doc_id, title=title, text=join_chunks(chunks), store_id=meta.store_id,
        valid_from=meta.valid_from, valid_to=meta.valid_to, tags=meta.tags, source=meta.source,
    )  # fmt: skip


def join_chunks(chunks: Sequence[Chunk]) -> str:
    """The chunks' texts joined with newlines, minus repeated headings and packing overlap."""
    parts: list[str] = []
    previous_heading: str | None = None
    previous_body = ""
    for chunk in chunks:
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


def valid_promotions(
    promotions: Sequence[Promotion],
    *,
    store_id: str | None,
    start: datetime,
    end: datetime | None = None,
) -> list[Promotion]:
    """The promotions valid at ``start`` for ``store_id``, in their given order.

    ``store_id=None`` (a chain-wide audience) gets all-store promotions only. ``end`` names the
    window being planned (e.g. :func:`day_window`); it does not narrow the choice: being valid
    at ``start`` is enough, and a promotion that starts after ``start`` is never used.
    """
    if start.tzinfo is None:
        raise ValueError("valid_promotions needs an aware start datetime")
    if end is not None and end < start:
        raise ValueError(f"the window ends ({end}) before it starts ({start})")
    return [p for p in promotions if p.applies_to_store(store_id) and p.is_valid_at(start)]


def day_window(day: date, tz: ZoneInfo) -> tuple[datetime, datetime]:
    """Local midnight of ``day`` to the next local midnight, as aware UTC datetimes."""
    start = datetime.combine(day, time(0), tzinfo=tz)
    end = datetime.combine(day + timedelta(days=1), time(0), tzinfo=tz)
    return start.astimezone(UTC), end.astimezone(UTC)
