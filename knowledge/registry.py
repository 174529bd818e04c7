"""The document registry and the embedding cache, in SQL (SQLite or PostgreSQL).

Tables (all keyed by ``collection`` so several knowledge bases can share one database):

- ``knowledge_document``: one row per document: active version, content hash, metadata (JSON).
- ``knowledge_chunk``: the active version's chunks (draft as JSON). SQL, not Chroma metadata, is
  the source of truth for chunk text: Chroma metadata must be flat scalars (a QA row's variants,
  per-row validity and SKUs do not fit well), and keeping the text here lets the knowledge base
  rebuild its snapshot and re-index a fresh Chroma collection (another embedding backend, a lost
  server) without re-reading the uploads.
- ``knowledge_embedding_cache``: vectors by (model id, sha256 of the text), float32 bytes.
- ``knowledge_disabled``: one row per disabled document (``siyu docs disable``). A disabled
  document keeps its rows here and in the two tables above; it is left out of
  :meth:`Registry.active_chunks` (so of the snapshot, search and the catalogue) until enabled.

The tables register on ``SQLModel.metadata``; the application's migrations create them
(``bot.schema``), knowledge creates none itself.

The active version flips in one transaction: the new chunk rows, the document row and the removal
of the old chunk rows commit together or not at all. Disabling or enabling is one transaction too
(the state row and the document's ``updated_at``, which moves the :meth:`Registry.fingerprint`
other processes watch).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from sqlmodel import Field, SQLModel

from knowledge.embeddings import Vectors
from knowledge.errors import StoreError
from knowledge.sql import upsert
from knowledge.types import Chunk, ChunkDraft, DocumentMeta, Kind

_BATCH = 500  # keeps IN lists under SQLite's bound-parameter limit


class KnowledgeDocument(SQLModel, table=True):
    """A document's active version."""

    __tablename__ = "knowledge_document"
    collection: str = Field(primary_key=True, max_length=200)
    doc_id: str = Field(primary_key=True, max_length=500)
    version: int
    content_hash: str = Field(max_length=128)
    meta_json: str = Field(sa_column=sa.Column(sa.Text, nullable=False))
    chunks: int
    updated_at: datetime = Field(sa_column=sa.Column(sa.DateTime(timezone=True), nullable=False))


class KnowledgeChunk(SQLModel, table=True):
    """One chunk of a document's active version."""

    __tablename__ = "knowledge_chunk"
    collection: str = Field(primary_key=True, max_length=200)
    chunk_id: str = Field(primary_key=True, max_length=600)
    doc_id: str = Field(index=True, max_length=500)
    version: int
    ordinal: int
    draft_json: str = Field(sa_column=sa.Column(sa.Text, nullable=False))


class KnowledgeEmbedding(SQLModel, table=True):
    """A cached vector of one text under one model."""

    __tablename__ = "knowledge_embedding_cache"
    model_id: str = Field(primary_key=True, max_length=300)
    text_sha256: str = Field(primary_key=True, max_length=64)
    dim: int
    vector: bytes = Field(sa_column=sa.Column(sa.LargeBinary, nullable=False))


class KnowledgeDisabled(SQLModel, table=True):
    """A document taken out of search and the catalogue, its chunks kept."""

    __tablename__ = "knowledge_disabled"
    collection: str = Field(primary_key=True, max_length=200)
    doc_id: str = Field(primary_key=True, max_length=500)
    disabled_at: datetime = Field(sa_column=sa.Column(sa.DateTime(timezone=True), nullable=False))


@dataclass(frozen=True, slots=True)
class DocumentInfo:
    """What operators see about a stored document."""

    doc_id: str
    source: str
    kind: Kind
    version: int
    chunks: int
    content_hash: str
    updated_at: datetime
    stores: tuple[str, ...]
    valid_from: datetime | None
    valid_to: datetime | None
    title: str = ""
    enabled: bool = True
    """False after ``siyu docs disable``: not searched, not in the catalogue."""


def meta_to_dict(meta: DocumentMeta) -> dict[str, Any]:
    """JSON-ready metadata (datetimes as ISO 8601 with offset)."""
    d = asdict(meta)
    d["kind"] = meta.kind.value
    for key in ("valid_from", "valid_to"):
        d[key] = d[key].isoformat() if d[key] else None
    d["tags"], d["skus"], d["stores"] = list(meta.tags), list(meta.skus), list(meta.stores)
    return d


def meta_from_dict(d: dict[str, Any]) -> DocumentMeta:
    """Inverse of :func:`meta_to_dict`."""
    return DocumentMeta(
        source=d["source"],
        kind=Kind(d.get("kind", "faq")),
        stores=_stores(d),
        valid_from=_parse_dt(d.get("valid_from")),
        valid_to=_parse_dt(d.get("valid_to")),
        tags=tuple(d.get("tags", ())),
        skus=tuple(d.get("skus", ())),
        title=d.get("title", ""),
    )


def _stores(d: dict[str, Any]) -> tuple[str, ...]:
    # Rows written before store scopes became lists carry one "store_id" (None = every store).
    if "stores" in d:
        return tuple(d["stores"])
    return (d["store_id"],) if d.get("store_id") else ()


def draft_to_json(draft: ChunkDraft) -> str:
    d: dict[str, Any] = {
        "text": draft.text,
        "index_texts": list(draft.index_texts),
        "answer": draft.answer,
        "heading": draft.heading,
        "skus": list(draft.skus),
        "meta": meta_to_dict(draft.meta) if draft.meta else None,
        "fields": [list(pair) for pair in draft.fields],
    }
    return json.dumps(d, ensure_ascii=False)


def draft_from_json(raw: str) -> ChunkDraft:
    d = json.loads(raw)
    return ChunkDraft(
        text=d["text"],
        index_texts=tuple(d["index_texts"]),
        answer=d["answer"],
        heading=d["heading"],
        skus=tuple(d["skus"]),
        meta=meta_from_dict(d["meta"]) if d["meta"] else None,
        fields=tuple((str(k), str(v)) for k, v in d.get("fields", ())),
    )


def _parse_dt(raw: str | None) -> datetime | None:
    return datetime.fromisoformat(raw) if raw else None


def _aware(dt: datetime) -> datetime:
    # SQLite hands back naive datetimes; everything is written in UTC.
    return dt if dt.tzinfo else dt.replace(tzinfo=UTC)


def _info(row: KnowledgeDocument, enabled: bool = True) -> DocumentInfo:
    meta = meta_from_dict(json.loads(row.meta_json))
    return DocumentInfo(
        doc_id=row.doc_id,
        source=meta.source,
        kind=meta.kind,
        version=row.version,
        chunks=row.chunks,
        content_hash=row.content_hash,
        updated_at=_aware(row.updated_at),
        stores=meta.stores,
        valid_from=meta.valid_from,
        valid_to=meta.valid_to,
        title=meta.title,
        enabled=enabled,
    )


class Registry:
    """SQL access for one collection: documents, active chunks and the embedding cache."""

    def __init__(self, engine: AsyncEngine, collection: str) -> None:
        self._engine = engine
        self._collection = collection

    async def documents(self) -> list[DocumentInfo]:
        """Every document's active version (enabled or not), by doc id."""
        t = KnowledgeDocument.__table__  # type: ignore[attr-defined]
        q = sa.select(t).where(t.c.collection == self._collection).order_by(t.c.doc_id)
        async with self._engine.connect() as conn:
            rows = (await conn.execute(q)).mappings().all()
            disabled = await self._disabled(conn)
        return [_info(KnowledgeDocument(**r), r["doc_id"] not in disabled) for r in rows]

    async def _disabled(self, conn: AsyncConnection) -> set[str]:
        x = KnowledgeDisabled.__table__  # type: ignore[attr-defined]
        q = sa.select(x.c.doc_id).where(x.c.collection == self._collection)
        return set((await conn.execute(q)).scalars())

    async def fingerprint(self) -> tuple[int, int, str]:
        """(documents, sum of active versions, last update): changes whenever any writer ingests
        or deletes, so a process can tell cheaply that another one changed the knowledge."""
        t = KnowledgeDocument.__table__  # type: ignore[attr-defined]
        q = sa.select(
            sa.func.count(),
            sa.func.coalesce(sa.func.sum(t.c.version), 0),
            sa.func.max(t.c.updated_at),
        ).where(t.c.collection == self._collection)
        async with self._engine.connect() as conn:
            count, versions, last = (await conn.execute(q)).one()
        return int(count), int(versions), str(last)

    async def document(self, doc_id: str) -> DocumentInfo | None:
        """One document's active version, or None."""
        t = KnowledgeDocument.__table__  # type: ignore[attr-defined]
        q = sa.select(t).where(t.c.collection == self._collection, t.c.doc_id == doc_id)
        async with self._engine.connect() as conn:
            row = (await conn.execute(q)).mappings().first()
            disabled = await self._disabled(conn) if row else set()
        return _info(KnowledgeDocument(**row), doc_id not in disabled) if row else None

    async def active_chunks(self) -> list[Chunk]:
        """The active chunks of every enabled document, in document and ordinal order."""
        x = KnowledgeDisabled.__table__  # type: ignore[attr-defined]
        off = sa.select(x.c.doc_id).where(x.c.collection == self._collection)
        return await self._chunks(KnowledgeChunk.__table__.c.doc_id.not_in(off))  # type: ignore[attr-defined]

    async def stored_chunks(self, doc_id: str | None = None) -> list[Chunk]:
        """The active version's chunks of ``doc_id`` (default: every document), disabled ones
        included."""
        c = KnowledgeChunk.__table__  # type: ignore[attr-defined]
        return await self._chunks(sa.true() if doc_id is None else c.c.doc_id == doc_id)

    async def set_enabled(self, doc_id: str, enabled: bool) -> bool:
        """Enable or disable a document in one transaction; False when there is no such
        document. Moves its ``updated_at`` so other processes' :meth:`fingerprint` changes."""
        d = KnowledgeDocument.__table__  # type: ignore[attr-defined]
        x = KnowledgeDisabled.__table__  # type: ignore[attr-defined]
        now = datetime.now(UTC)
        mine = sa.and_(x.c.collection == self._collection, x.c.doc_id == doc_id)
        try:
            async with self._engine.begin() as conn:
                res = await conn.execute(
                    sa.update(d)
                    .where(d.c.collection == self._collection, d.c.doc_id == doc_id)
                    .values(updated_at=now)
                )
                if not res.rowcount:
                    return False
                await conn.execute(sa.delete(x).where(mine))
                if not enabled:
                    row = {"collection": self._collection, "doc_id": doc_id, "disabled_at": now}
                    await conn.execute(sa.insert(x).values(**row))
        except sa.exc.SQLAlchemyError as exc:
            verb = "enable" if enabled else "disable"
            raise StoreError(f"cannot {verb} {doc_id!r}: {exc}") from exc
        return True

    async def _chunks(self, where: sa.ColumnElement[bool]) -> list[Chunk]:
        d = KnowledgeDocument.__table__  # type: ignore[attr-defined]
        c = KnowledgeChunk.__table__  # type: ignore[attr-defined]
        q = (
            sa.select(
                c.c.chunk_id, c.c.doc_id, c.c.version, c.c.ordinal, c.c.draft_json, d.c.meta_json
            )
            .join(d, sa.and_(d.c.collection == c.c.collection, d.c.doc_id == c.c.doc_id))
            .where(c.c.collection == self._collection, c.c.version == d.c.version, where)
            .order_by(c.c.doc_id, c.c.ordinal)
        )
        async with self._engine.connect() as conn:
            rows = (await conn.execute(q)).all()
        metas: dict[str, DocumentMeta] = {}
        out = []
        for cid, doc_id, version, ordinal, draft_json, meta_json in rows:
            meta = metas.get(doc_id) or metas.setdefault(
                doc_id, meta_from_dict(json.loads(meta_json))
            )
            draft = draft_from_json(draft_json)
            out.append(Chunk(cid, doc_id, version, ordinal, draft, draft.meta or meta))
        return out

    async def activate(
        self,
        doc_id: str,
        version: int,
        content_hash: str,
        meta: DocumentMeta,
        chunks: Sequence[Chunk],
    ) -> DocumentInfo:
        """Make ``version`` (with ``chunks``) the active one, in one transaction."""
        d = KnowledgeDocument.__table__  # type: ignore[attr-defined]
        c = KnowledgeChunk.__table__  # type: ignore[attr-defined]
        row = KnowledgeDocument(
            collection=self._collection,
            doc_id=doc_id,
            version=version,
            content_hash=content_hash,
            meta_json=json.dumps(meta_to_dict(meta), ensure_ascii=False),
            chunks=len(chunks),
            updated_at=datetime.now(UTC),
        )
        key = sa.and_(c.c.collection == self._collection, c.c.doc_id == doc_id)
        try:
            async with self._engine.begin() as conn:
                await conn.execute(sa.delete(c).where(key))
                await conn.execute(
                    sa.delete(d).where(d.c.collection == self._collection, d.c.doc_id == doc_id)
                )
                await conn.execute(sa.insert(d).values(**row.model_dump()))
                if chunks:
                    await conn.execute(sa.insert(c), [self._chunk_row(ch) for ch in chunks])
        except sa.exc.SQLAlchemyError as exc:
            raise StoreError(f"cannot activate {doc_id!r} v{version}: {exc}") from exc
        return _info(row)

    def _chunk_row(self, chunk: Chunk) -> dict[str, Any]:
        return {
            "collection": self._collection,
            "chunk_id": chunk.id,
            "doc_id": chunk.doc_id,
            "version": chunk.version,
            "ordinal": chunk.ordinal,
            "draft_json": draft_to_json(chunk.draft),
        }

    async def remove(self, doc_id: str) -> bool:
        """Forget a document, its chunks and its disabled state in one transaction; False when it
        was not there."""
        d = KnowledgeDocument.__table__  # type: ignore[attr-defined]
        c = KnowledgeChunk.__table__  # type: ignore[attr-defined]
        x = KnowledgeDisabled.__table__  # type: ignore[attr-defined]
        try:
            async with self._engine.begin() as conn:
                for t in (c, x):
                    await conn.execute(
                        sa.delete(t).where(t.c.collection == self._collection, t.c.doc_id == doc_id)
                    )
                res = await conn.execute(
                    sa.delete(d).where(d.c.collection == self._collection, d.c.doc_id == doc_id)
                )
        except sa.exc.SQLAlchemyError as exc:
            raise StoreError(f"cannot remove {doc_id!r}: {exc}") from exc
        return bool(res.rowcount)

    async def cached_vectors(self, model_id: str, keys: Iterable[str]) -> dict[str, Vectors]:
        """Cached vectors of ``keys`` (text hashes) under ``model_id``; missing keys are absent."""
        t = KnowledgeEmbedding.__table__  # type: ignore[attr-defined]
        wanted = sorted(set(keys))
        out: dict[str, Vectors] = {}
        async with self._engine.connect() as conn:
            for start in range(0, len(wanted), _BATCH):
                part = wanted[start : start + _BATCH]
                q = sa.select(t.c.text_sha256, t.c.vector).where(
                    t.c.model_id == model_id, t.c.text_sha256.in_(part)
                )
                for key, blob in (await conn.execute(q)).all():
                    out[key] = np.frombuffer(blob, dtype=np.float32)
        return out

    async def store_vectors(self, model_id: str, items: dict[str, Vectors]) -> None:
        """Add vectors to the cache (existing keys are left as they are)."""
        if not items:
            return
        t = KnowledgeEmbedding.__table__  # type: ignore[attr-defined]
        rows = [
            {"model_id": model_id, "text_sha256": k, "dim": int(v.shape[0]), "vector": v.tobytes()}
            for k, v in items.items()
        ]
        stmt = upsert(self._engine.dialect, t)
        async with self._engine.begin() as conn:
            for start in range(0, len(rows), _BATCH):
                await conn.execute(stmt, rows[start : start + _BATCH])
