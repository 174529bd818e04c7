"""The knowledge base: ingest documents as versions, replace them atomically, search them.

A replace never disturbs readers:

1. the new version's vectors go to Chroma under new ids (``{doc}:{version}:{ordinal}#q{i}``)
   while searches keep using the active snapshot, whose chunk ids filter out the new entries;
2. the new snapshot (chunks, BM25 index, SKU map, entry vectors) is built off to the side;
3. the registry flips the active version in one SQL transaction;
4. the snapshot is swapped by one reference assignment: a search holds the reference it started
   with, so it never mixes versions;
5. the old version's vectors are deleted.

A failure before step 3 removes the partial new vectors and leaves the old version serving. If
step 5 fails, the orphans are swept on the next :meth:`KnowledgeBase.open`, which builds the
snapshot from the SQL chunk rows and the embedding cache, and re-indexes active chunks missing
from Chroma (a new embedding backend's collection, a wiped server). Writers are serialised by
one lock per knowledge base.

Other processes (``siyu ingest`` while ``siyu serve`` runs, several workers at scale) are noticed
by :meth:`KnowledgeBase.refresh`, which a background task calls every ``refresh_seconds``: when
the registry's fingerprint moved, the snapshot is rebuilt from SQL and the new entries are
upserted into this process's Chroma client too — an embedded Chroma does not see vectors another
process wrote (measured: its HNSW index stays as it was loaded), and an upsert of the same id and
vector is a no-op on a shared server. Two processes must not ingest the same document at once.

Disabling a document (:meth:`KnowledgeBase.disable`) follows the same order as a replace: the
snapshot without it is built, the registry flips in one transaction, the snapshot is swapped, its
vectors are removed from Chroma. Enabling (:meth:`KnowledgeBase.enable`) re-adds its vectors
from the embedding cache (nothing is re-embedded) before the registry flips; a failure before
the flip removes them again. A crash between the steps leaves the previous state in SQL, and
:meth:`KnowledgeBase.open` sweeps or re-adds the vectors to match. A new version of a disabled
document is stored (and embedded into the cache) but stays disabled.

An ingest carries the loader's warnings plus one when the document largely repeats another
stored document (:mod:`knowledge.overlap`); ``strict=True`` refuses a document with any warning
before anything is written.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import re
import time
from bisect import bisect_right
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass
from datetime import datetime
from itertools import accumulate
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy.ext.asyncio import AsyncEngine

from knowledge.catalogue import Catalogue
from knowledge.config import KnowledgeConfig
from knowledge.embeddings import (
    AsyncEmbedder,
    CachedEmbedder,
    Embedder,
    Vectors,
    build_embedder,
    query_vectors,
)
from knowledge.errors import KnowledgeError, LoaderError, MetadataError, StoreError
from knowledge.keyword import Segmenter
from knowledge.overlap import EntryKey, chunk_key, duplicate_warning
from knowledge.registry import DocumentInfo, Registry
from knowledge.retriever import PATHS, HybridRetriever, Snapshot, index_texts
from knowledge.types import Chunk, Kind, SearchResult, SourceDocument
from knowledge.vectorstore import VectorEntry, VectorStore

if TYPE_CHECKING:
    from knowledge.metadata import MetaOverrides

__all__ = ["DocumentInfo", "IngestReport", "KnowledgeBase", "Progress"]

log = logging.getLogger(__name__)

Progress = Callable[[int, int], None]
"""Called with (entries done, entries in all) while a document is embedded and stored; the last
call is (n, n) with n = :attr:`IngestReport.chunks`, also for an unchanged document."""


@dataclass(frozen=True, slots=True)
class IngestReport:
    """What an ingest did. ``embedded`` chunks were computed now, ``reused`` came from the cache;
    ``warnings`` are the loader's and the duplicate check's; ``disabled``: the document is
    disabled, so the version is stored but not searched."""

    doc_id: str
    version: int
    chunks: int
    embedded: int
    reused: int
    unchanged: bool = False
    warnings: tuple[str, ...] = ()
    disabled: bool = False


def chunk_id(doc_id: str, version: int, ordinal: int) -> str:
    """A readable, Chroma-safe id: a slug of the doc id plus a short hash (slugs may collide)."""
    slug = re.sub(r"[^\w.-]+", "_", doc_id).strip("_")[:40] or "doc"
    digest = hashlib.sha256(doc_id.encode()).hexdigest()[:8]
    return f"{slug}-{digest}:{version}:{ordinal}"


def vector_entries(chunks: Sequence[Chunk]) -> list[tuple[VectorEntry, str]]:
    """One Chroma entry per index text of each chunk, with the text to embed."""
    return [
        (VectorEntry(f"{c.id}#q{i}", c.id, c.doc_id, c.version), text)
        for c in chunks
        for i, text in enumerate(index_texts(c.draft))
    ]


def by_chunk(chunks: Sequence[Chunk], vectors: Vectors) -> dict[str, Vectors]:
    """Split entry vectors (in :func:`vector_entries` order) into each chunk's rows."""
    out: dict[str, Vectors] = {}
    start = 0
    for c in chunks:
        end = start + len(index_texts(c.draft))
        out[c.id] = vectors[start:end]
        start = end
    return out


def _by_entries(chunks: Sequence[Chunk], progress: Progress | None) -> Progress | None:
    """``progress`` fed with entries done, from the embedder's index texts done."""
    if progress is None:
        return None
    ends = list(accumulate(len(index_texts(c.draft)) for c in chunks))
    return lambda done, _total: progress(bisect_right(ends, done), len(chunks))


def _strict_refusal(warnings: Sequence[str]) -> str:
    count = f"{len(warnings)} warning{'s' if len(warnings) > 1 else ''}"
    return f"refused under --strict ({count}):\n" + "\n".join(f"  ⚠ {w}" for w in warnings)


class KnowledgeBase:
    """Documents, their active versions and hybrid search over them. Open with :meth:`open`."""

    def __init__(
        self,
        config: KnowledgeConfig,
        registry: Registry,
        store: VectorStore,
        embedder: CachedEmbedder,
        segmenter: Segmenter,
    ) -> None:
        self._config = config
        self._registry = registry
        self._store = store
        self._embedder = embedder
        self._segmenter = segmenter
        self._retriever = HybridRetriever(
            embedder.inner, store, config.retrieval, config.embedding.backend
        )
        self._snapshot = Snapshot.empty()
        self._lock = asyncio.Lock()
        self._fingerprint: tuple[int, int, str] | None = None
        self._watcher: asyncio.Task[None] | None = None
        self._entry_keys: dict[Chunk, EntryKey] = {}

    @classmethod
    async def open(
        cls,
        config: KnowledgeConfig,
        engine: AsyncEngine,
        *,
        embedder: Embedder | None = None,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> KnowledgeBase:
        """Open Chroma, build the embedder and load the active snapshot. The registry's tables
        must exist: the caller's migrations create them (``bot.schema``; knowledge runs none).

        ``embedder`` replaces the one ``config.embedding`` names (tests wrap a real one);
        ``monotonic`` is an embeddings server's circuit breaker's clock.
        """
        registry = Registry(engine, config.collection)
        inner = embedder
        if inner is None:
            inner = await asyncio.to_thread(build_embedder, config.embedding, clock=monotonic)
        store = await VectorStore.open(config, inner)
        cached = CachedEmbedder(inner, registry, config.embedding.batch_size)
        # The segmenter's jieba dictionary is loaded here (the empty snapshot), before any question.
        kb = cls(config, registry, store, cached, Segmenter())
        try:
            await kb._load()
        except BaseException:
            await store.close()
            raise
        if config.refresh_seconds > 0:
            kb._watcher = asyncio.create_task(kb._watch(config.refresh_seconds))
        return kb

    async def close(self) -> None:
        """Stop watching for other writers, release Chroma and an embeddings server's
        connections. The SQL engine is the caller's."""
        if self._watcher is not None:
            self._watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watcher
        try:
            await self._store.close()
        finally:
            if isinstance(self._embedder.inner, AsyncEmbedder):
                await self._embedder.inner.aclose()

    async def refresh(self) -> bool:
        """Pick up documents another process ingested or deleted; False when nothing changed."""
        async with self._lock:
            fingerprint = await self._registry.fingerprint()
            if fingerprint == self._fingerprint:
                return False
            old = self._snapshot
            chunks = await self._registry.active_chunks()
            fresh = [c for c in chunks if c.id not in old.chunks]
            entries = vector_entries(fresh)
            vectors, _ = await self._embedder.embed([t for _, t in entries], None)
            if entries:
                await self._store.add([e for e, _ in entries], vectors)
            rows = {
                c.id: old.vectors[slice(*old.spans[c.id])] for c in chunks if c.id in old.chunks
            }
            rows |= by_chunk(fresh, vectors)
            self._snapshot = await asyncio.to_thread(Snapshot.build, chunks, rows, self._segmenter)
            self._fingerprint = fingerprint
        log.info("knowledge refreshed: %d chunks (%d new)", len(chunks), len(fresh))
        return True

    async def _watch(self, interval: float) -> None:
        """Refresh every ``interval`` seconds. The one place a failed background refresh is
        reported: once when the failures start (type and message; the traceback at DEBUG, each
        time) and once when a refresh works again, so a database outage is two lines, not one
        traceback per tick."""
        failures = 0
        while True:
            await asyncio.sleep(interval)
            try:
                await self.refresh()
            except Exception as exc:
                failures += 1
                log.debug("knowledge refresh failed", exc_info=True)
                if failures == 1:
                    why = (str(exc).strip().splitlines() or [""])[0][:200]
                    log.warning(
                        "knowledge refresh failed (%s: %s); still serving the previous "
                        "snapshot, retrying every %g s", type(exc).__name__, why, interval,
                    )  # fmt: skip
                continue
            if failures:
                log.warning("knowledge refresh works again after %d failed attempts", failures)
                failures = 0

    @property
    def threshold(self) -> float:
        """The confidence below which a search counts as "not found"."""
        return self._retriever.threshold

    async def ingest(
        self,
        doc: SourceDocument,
        *,
        doc_id: str | None = None,
        progress: Progress | None = None,
        strict: bool = False,
    ) -> IngestReport:
        """Store ``doc`` as the new active version of ``doc_id`` (default: its source).

        ``strict``: a document with any warning is refused (LoaderError listing them), nothing
        written.
        """
        key = (doc_id if doc_id is not None else doc.meta.source).strip()
        if not key:
            raise MetadataError("a document needs a non-empty doc_id or source")
        async with self._lock:
            current = await self._registry.document(key)
            unchanged = current is not None and current.content_hash == doc.content_hash
            warnings = doc.warnings if unchanged else await self._warnings(key, doc)
            if strict and warnings:
                raise LoaderError(key, _strict_refusal(warnings))
            if current is not None and unchanged:
                if progress:
                    progress(current.chunks, current.chunks)
                return IngestReport(
                    key, current.version, current.chunks, 0, 0, True, warnings, not current.enabled
                )
            version = current.version + 1 if current else 1
            chunks = [
                Chunk(chunk_id(key, version, i), key, version, i, d, d.meta or doc.meta)
                for i, d in enumerate(doc.chunks)
            ]
            disabled = current is not None and not current.enabled
            if disabled:
                embedded = await self._store_disabled(key, version, doc, chunks, progress)
            else:
                embedded, vectors = await self._write(chunks, _by_entries(chunks, progress))
                await self._activate(key, version, doc, chunks, vectors, current)
        if progress:
            progress(len(chunks), len(chunks))
        reused = len(chunks) - embedded
        return IngestReport(key, version, len(chunks), embedded, reused, False, warnings, disabled)

    async def _warnings(self, key: str, doc: SourceDocument) -> tuple[str, ...]:
        """The loader's warnings and, when ``doc`` repeats another document, that one's.

        Enabled documents' chunks come from the snapshot, disabled ones' from SQL; their entry
        keys are kept between ingests, by chunk value, for the chunks still stored.
        """
        chunks = list(self._snapshot.chunks.values())
        for info in await self._registry.documents():
            if not info.enabled and info.doc_id != key:
                chunks += await self._registry.stored_chunks(info.doc_id)
        self._entry_keys = {c: self._entry_keys.get(c) or chunk_key(c) for c in chunks}
        stored = ((c.doc_id, self._entry_keys[c]) for c in chunks)
        duplicate = duplicate_warning(key, doc, stored)
        return (*doc.warnings, duplicate) if duplicate else doc.warnings

    async def _store_disabled(
        self,
        key: str,
        version: int,
        doc: SourceDocument,
        chunks: list[Chunk],
        progress: Progress | None,
    ) -> int:
        """A disabled document's new version: embedded into the cache (so enabling it does not
        embed) and registered, but not added to Chroma or the snapshot."""
        entries = vector_entries(chunks)
        texts = [t for _, t in entries]
        _, fresh = await self._embedder.embed(texts, _by_entries(chunks, progress))
        await self._registry.activate(key, version, doc.content_hash, doc.meta, chunks)
        self._fingerprint = await self._registry.fingerprint()
        return len({e.chunk_id for (e, _), f in zip(entries, fresh, strict=True) if f})

    async def ingest_path(
        self,
        path: Path,
        overrides: MetaOverrides | None = None,
        progress: Progress | None = None,
        *,
        strict: bool = False,
    ) -> IngestReport:
        """Load a file with :func:`knowledge.loaders.load_path` and ingest it.

        Store names in the file's scopes resolve through the stores already loaded (an unknown
        store refuses the file); with none loaded yet they are kept as written, as ids.
        """
        from knowledge.loaders import load_path
        from knowledge.metadata import MetaOverrides

        stores = self.catalogue().stores
        doc = await asyncio.to_thread(load_path, path, overrides or MetaOverrides(), stores=stores)
        return await self.ingest(doc, progress=progress, strict=strict)

    async def delete(self, doc_id: str) -> bool:
        """Remove a document (enabled or not); False when there was none. One SQL transaction:
        a failure leaves it stored and searched as before."""
        async with self._lock:
            if await self._registry.document(doc_id) is None:
                return False
            snap = await self._rebuild(drop=doc_id, add=(), vectors={})
            await self._registry.remove(doc_id)
            self._snapshot = snap
            self._fingerprint = await self._registry.fingerprint()
            await self._sweep(doc_id, version=None)
        return True

    async def disable(self, doc_id: str) -> DocumentInfo | None:
        """Take a document out of search and the catalogue, keeping it stored; None when there
        is no such document. Disabling a disabled document changes nothing."""
        async with self._lock:
            current = await self._registry.document(doc_id)
            if current is None or not current.enabled:
                return current
            snap = await self._rebuild(drop=doc_id, add=(), vectors={})
            await self._registry.set_enabled(doc_id, False)
            self._snapshot = snap
            self._fingerprint = await self._registry.fingerprint()
            await self._sweep(doc_id, version=None)
        return await self._registry.document(doc_id)

    async def enable(self, doc_id: str) -> DocumentInfo | None:
        """Bring a disabled document back into search and the catalogue without re-embedding it
        (its vectors come from the embedding cache); None when there is no such document."""
        async with self._lock:
            current = await self._registry.document(doc_id)
            if current is None or current.enabled:
                return current
            chunks = await self._registry.stored_chunks(doc_id)
            _, vectors = await self._write(chunks, None)
            await self._publish(doc_id, chunks, vectors, self._registry.set_enabled(doc_id, True))
        return await self._registry.document(doc_id)

    async def documents(self) -> list[DocumentInfo]:
        """Every stored document's active version (``enabled`` says whether it is searched)."""
        return await self._registry.documents()

    async def stored_chunks(self, doc_id: str | None = None) -> list[Chunk]:
        """The active version's chunks of ``doc_id`` (default: every document), disabled
        documents included, in document and position order."""
        return await self._registry.stored_chunks(doc_id)

    async def search(
        self,
        query: str,
        *,
        store_id: str | None = None,
        at: datetime | None = None,
        top_k: int | None = None,
        paths: Sequence[str] = PATHS,
    ) -> SearchResult:
        """Hybrid search over the active snapshot (see :mod:`knowledge.retriever`).

        ``paths`` limits the search to some of "sku", "dense", "keyword" (for evaluation).
        """
        snap = self._snapshot  # one reference for the whole search: never mixes versions
        return await self._retriever.search(
            snap, query, store_id=store_id, at=at, top_k=top_k, paths=paths
        )

    def active_chunks(self, kind: Kind | None = None) -> list[Chunk]:
        """The active chunks (of ``kind``, if given) in document and position order; campaigns
        read promotions here and apply validity and store scope themselves."""
        chunks = self._snapshot.chunks.values()
        picked = [c for c in chunks if kind is None or c.meta.kind is kind]
        return sorted(picked, key=lambda c: (c.doc_id, c.ordinal))

    async def embed_queries(self, texts: Sequence[str]) -> Vectors:
        """Unit vectors of ``texts`` embedded as queries (off the event loop), one row each."""
        return await query_vectors(self._embedder.inner, texts)

    @property
    def embedding_backend(self) -> str:
        """The configured embedding backend (``local``, ``openai``, ``hash``)."""
        return self._config.embedding.backend

    def catalogue(self) -> Catalogue:
        """The active stores, products and promotions as records (see :mod:`knowledge.records`)."""
        return self._snapshot.catalogue

    async def ping(self) -> int:
        """How many entries the vector store holds: a cheap call that proves it answers
        (readiness checks). Raises :class:`~knowledge.errors.StoreError` when it does not."""
        return await self._store.count()

    def chunk_count(self) -> int:
        """Number of active chunks."""
        return len(self._snapshot.chunks)

    async def _write(
        self, chunks: Sequence[Chunk], progress: Progress | None
    ) -> tuple[int, dict[str, Vectors]]:
        """Embed and store the new version's vectors; on failure remove what was written.

        Returns how many chunks needed a fresh embedding, and each chunk's vectors.
        """
        entries = vector_entries(chunks)
        try:
            vectors, fresh = await self._embedder.embed([t for _, t in entries], progress)
            await self._store.add([e for e, _ in entries], vectors)
        except BaseException:
            await self._discard([e.id for e, _ in entries])
            raise
        fresh_chunks = {e.chunk_id for (e, _), f in zip(entries, fresh, strict=True) if f}
        return len(fresh_chunks), by_chunk(chunks, vectors)

    async def _activate(
        self,
        key: str,
        version: int,
        doc: SourceDocument,
        chunks: list[Chunk],
        vectors: dict[str, Vectors],
        current: DocumentInfo | None,
    ) -> None:
        """Build the new snapshot, flip the registry, swap the snapshot, drop old vectors."""
        flip = self._registry.activate(key, version, doc.content_hash, doc.meta, chunks)
        await self._publish(key, chunks, vectors, flip)
        if current is not None:
            await self._sweep(key, version=current.version)

    async def _publish(
        self,
        key: str,
        chunks: Sequence[Chunk],
        vectors: dict[str, Vectors],
        flip: Coroutine[Any, Any, object],
    ) -> None:
        """Build the snapshot with ``chunks`` as ``key``'s, run the registry ``flip``, swap the
        snapshot; on a failure before the swap, remove the chunks' new vectors from Chroma."""
        try:
            snap = await self._rebuild(drop=key, add=chunks, vectors=vectors)
            await flip
        except BaseException:
            flip.close()  # never awaited when the rebuild failed
            await self._discard([e.id for e, _ in vector_entries(chunks)])
            raise
        self._snapshot = snap
        self._fingerprint = await self._registry.fingerprint()

    async def _rebuild(
        self, drop: str, add: Sequence[Chunk], vectors: dict[str, Vectors]
    ) -> Snapshot:
        """The current snapshot without ``drop``'s chunks, plus ``add`` (with ``vectors``)."""
        old = self._snapshot
        kept = [c for c in old.chunks.values() if c.doc_id != drop]
        rows = {c.id: old.vectors[slice(*old.spans[c.id])] for c in kept} | vectors
        return await asyncio.to_thread(Snapshot.build, [*kept, *add], rows, self._segmenter)

    async def _discard(self, ids: list[str]) -> None:
        try:
            await self._store.delete_ids(ids)
        except StoreError:
            # The registry never pointed at these ids; the next open sweeps them.
            log.exception(
                "could not remove %d partial vectors; they are swept on next open", len(ids)
            )

    async def _sweep(self, doc_id: str, version: int | None) -> None:
        """Delete one version's vectors (all when None); failures wait for the next open."""
        try:
            if version is None:
                await self._store.delete_ids(await self._store.ids({"doc_id": doc_id}))
            else:
                await self._store.delete_version(doc_id, version)
        except KnowledgeError:
            log.exception("could not delete old vectors of %r; they are swept on next open", doc_id)

    async def _load(self) -> None:
        """Build the snapshot from SQL and make Chroma match it (re-index missing, drop orphans)."""
        fingerprint = await self._registry.fingerprint()  # before reading: a later write is seen
        chunks = await self._registry.active_chunks()
        entries = vector_entries(chunks)
        # Vectors come from the SQL cache; only texts missing there are embedded again.
        vectors, _ = await self._embedder.embed([t for _, t in entries], None)
        expected = {e.id: i for i, (e, _) in enumerate(entries)}
        present = set(await self._store.ids())
        orphans = [i for i in present if i not in expected]
        missing = [i for vid, i in expected.items() if vid not in present]
        if orphans:
            log.info("removing %d orphan vectors from Chroma", len(orphans))
            await self._store.delete_ids(orphans)
        if missing:
            log.info("indexing %d vectors missing from Chroma", len(missing))
            await self._store.add([entries[i][0] for i in missing], vectors[missing])
        rows = by_chunk(chunks, vectors)
        self._snapshot = await asyncio.to_thread(Snapshot.build, chunks, rows, self._segmenter)
        self._fingerprint = fingerprint
