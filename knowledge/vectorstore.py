"""The Chroma side of the knowledge base: one collection of index-text vectors.

Chroma holds one vector per *index text*, not per chunk: a QA row with a question and two variants
is three entries (``{chunk_id}#q0``, ``#q1``, ``#q2``) whose metadata names the same chunk; the
retriever keeps the best entry per chunk. Vectors are always computed by us and passed as
``embeddings=`` / ``query_embeddings=`` (so the embedding cache works and Chroma never falls back
to its default model, which would try to download one). The embedding function is still passed
explicitly and registered, so opening the collection from elsewhere builds ours too.

The collection name carries a short hash of the embedder's ``model_id``: switching backends opens
a fresh collection instead of mixing vector spaces; the knowledge base re-indexes it from the SQL
chunk rows. Chroma calls block, so every method here runs them with ``asyncio.to_thread``.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import chromadb
from chromadb.api.types import Documents, EmbeddingFunction, Embeddings
from chromadb.config import Settings as ChromaSettings
from chromadb.utils.embedding_functions import register_embedding_function

from knowledge.config import EmbeddingConfig, KnowledgeConfig
from knowledge.embeddings import Embedder, Vectors, build_embedder
from knowledge.errors import StoreError


class SiyuEmbeddingFunction(EmbeddingFunction[Documents]):
    """Chroma's view of our :class:`Embedder`; its config names the backend (never the key)."""

    def __init__(self, embedder: Embedder, config: EmbeddingConfig | None = None) -> None:
        self._embedder = embedder
        self._config = config or EmbeddingConfig(backend="hash")

    def __call__(self, input: Documents) -> Embeddings:
        return list(self._embedder.embed_passages(list(input)))

    def embed_query(self, input: Documents) -> Embeddings:
        return list(self._embedder.embed_queries(list(input)))

    @staticmethod
    def name() -> str:
        return "siyu"

    def get_config(self) -> dict[str, Any]:
        c = self._config
        return {"backend": c.backend, "base_url": c.base_url, "model": c.model}

    @staticmethod
    def build_from_config(config: dict[str, Any]) -> SiyuEmbeddingFunction:
        emb = EmbeddingConfig(
            backend=config.get("backend", "hash"),
            base_url=config.get("base_url"),
            model=config.get("model"),
        )
        return SiyuEmbeddingFunction(build_embedder(emb), emb)

    def default_space(self) -> Any:
        return "cosine"


register_embedding_function(SiyuEmbeddingFunction)  # type: ignore[no-untyped-call]


@dataclass(frozen=True, slots=True)
class VectorEntry:
    """One vector to store: its Chroma id, the chunk it finds, and the vector."""

    id: str
    chunk_id: str
    doc_id: str
    version: int


def collection_name(base: str, model_id: str) -> str:
    """``base`` plus a short hash of the model id (Chroma allows [a-zA-Z0-9._-], 3-512 chars)."""
    digest = hashlib.sha256(model_id.encode()).hexdigest()[:10]
    return f"{base}-{digest}"


def _client(config: KnowledgeConfig) -> Any:
    settings = ChromaSettings(anonymized_telemetry=False)
    if config.chroma_url:
        url = urlsplit(config.chroma_url)
        return chromadb.HttpClient(
            host=url.hostname or "127.0.0.1",
            port=url.port or (443 if url.scheme == "https" else 8000),
            ssl=url.scheme == "https",
            settings=settings,
        )
    path = config.data_dir / "chroma"
    path.mkdir(parents=True, exist_ok=True)
    return chromadb.PersistentClient(path=str(path), settings=settings)


def _close_client(client: Any) -> None:
    # chromadb 1.5's HTTP client (and the admin client it makes) never close their httpx
    # sessions when their systems stop: a leaked socket. HTTP clients never share a system
    # (each gets a fresh identifier), so closing both sessions here is safe.
    owners = (client, getattr(client, "_admin_client", None))
    sessions = [getattr(getattr(o, "_server", None), "_session", None) for o in owners]
    client.close()
    for session in sessions:
        if session is not None:
            session.close()


class VectorStore:
    """Async facade over one Chroma collection; one client per knowledge base."""

    def __init__(self, client: Any, collection: Any) -> None:
        self._client = client
        self._collection = collection

    @classmethod
    async def open(cls, config: KnowledgeConfig, embedder: Embedder) -> VectorStore:
        """Connect (embedded or ``chroma_url``) and get or create the collection."""
        ef = SiyuEmbeddingFunction(embedder, config.embedding)
        name = collection_name(config.collection, embedder.model_id)

        def _open() -> VectorStore:
            client = _client(config)
            collection = client.get_or_create_collection(
                name,
                embedding_function=ef,
                configuration={"hnsw": {"space": "cosine"}},
                metadata={"model_id": embedder.model_id},
            )
            return cls(client, collection)

        try:
            return await asyncio.to_thread(_open)
        except Exception as exc:  # chromadb raises many types (HTTP, Rust bindings, value errors)
            raise StoreError(f"cannot open the Chroma collection {name!r}: {exc}") from exc

    async def close(self) -> None:
        """Release the client (stops the embedded system when no other client shares it)."""
        await asyncio.to_thread(_close_client, self._client)

    async def add(
        self, entries: Sequence[VectorEntry], vectors: Vectors, batch: int = 1000
    ) -> None:
        """Store ``entries`` with their vectors (rows of ``vectors`` in the same order)."""
        for start in range(0, len(entries), batch):
            part = entries[start : start + batch]
            await self._call(
                self._collection.upsert,
                ids=[e.id for e in part],
                embeddings=vectors[start : start + batch],
                metadatas=[
                    {"chunk_id": e.chunk_id, "doc_id": e.doc_id, "version": e.version} for e in part
                ],
            )

    async def query(self, vector: Vectors, n: int) -> list[tuple[str, float]]:
        """Up to ``n`` nearest entries as (chunk id, cosine similarity), nearest first.

        No ``count()`` first: Chroma 1.5 answers ``n_results`` above the collection size (even an
        empty one) with what it has, and the extra call costs a round trip per question.
        """
        res = await self._call(
            self._collection.query,
            query_embeddings=vector.reshape(1, -1),
            n_results=n,
            include=["metadatas", "distances"],
        )
        metas, dists = res["metadatas"][0], res["distances"][0]
        return [(str(m["chunk_id"]), 1.0 - float(d)) for m, d in zip(metas, dists, strict=True)]

    async def ids(self, where: dict[str, Any] | None = None) -> list[str]:
        """Ids of every stored entry (optionally filtered by metadata)."""
        res = await self._call(self._collection.get, where=where, include=[])
        return [str(i) for i in res["ids"]]

    async def delete_ids(self, ids: Sequence[str], batch: int = 1000) -> None:
        """Remove entries by id."""
        for start in range(0, len(ids), batch):
            await self._call(self._collection.delete, ids=list(ids[start : start + batch]))

    async def delete_version(self, doc_id: str, version: int) -> None:
        """Remove every entry of one version of a document."""
        where = {"$and": [{"doc_id": doc_id}, {"version": version}]}
        await self._call(self._collection.delete, where=where)

    async def count(self) -> int:
        """Number of stored entries (vectors, not chunks)."""
        return int(await self._call(self._collection.count))

    async def _call(self, fn: Any, /, **kwargs: Any) -> Any:
        try:
            return await asyncio.to_thread(fn, **kwargs)
        except Exception as exc:  # chromadb raises many types; callers see one
            raise StoreError(f"Chroma {getattr(fn, '__name__', 'call')} failed: {exc}") from exc
