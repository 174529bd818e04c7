"""Hybrid retrieval over one snapshot: exact SKU, dense (Chroma) and keyword (BM25), fused.

Order of a search:
1. Filter: only chunks of the snapshot that are valid at ``at`` and apply to ``store_id`` count;
   dense hits whose id is not in the snapshot (a version being written or deleted) are dropped.
2. Exact match: product codes in the query (``knowledge.loaders.extract_skus``) that the snapshot
   knows go first, confidence 1.0.
3. Dense candidates: the query vector against Chroma, over-fetched (``max(50, 5 * top_k)``
   entries, four times more while filtering leaves fewer than ``top_k``).
4. Keyword candidates: BM25 over character n-grams and whole product terms
   (:mod:`knowledge.keyword`).
5. Fusion over the union of candidates. ``weighted``: each candidate's best cosine and best BM25
   score are z-scored against the *whole corpus* (BM25 scores every entry anyway; the dense mean
   and deviation come exactly from the entry vectors' first two moments, see
   :meth:`Snapshot.dense_stats`) and mixed ``dense_weight : 1 - dense_weight``. ``rrf`` sums
   ``1 / (60 + rank)`` over the two candidate lists.
6. Specific words: when the best hit lacks a rare content word of the question (除夕 in
   除夕几点关门) that another found hit holds, that hit goes first (:func:`_specific_first`).

When the embeddings server is unavailable (:class:`knowledge.errors.EmbeddingUnavailable`: its
deadline passed or its circuit breaker is open) the search skips the dense path: keyword and SKU
candidates ranked by their keyword z-score, confidence their keyword coverage alone (the same
threshold then means "most of the question's words are in the entry"). A member still gets an
answer during the outage. Any other embedding error is raised.

Weighted fusion over whole-corpus z-scores is the default because it measured best on faq-bq
(``docs/measurements.md``): a candidate found by one path must keep its real score on the other.

Confidence (absolute, in [0, 1], compared with the "not found" threshold) mixes two signals:
``dense_share`` of the hit's best cosine rescaled per backend between a "noise" and a "sure"
cosine (e5 cosines crowd into 0.85–1.0 whatever the text), and the rest keyword coverage, the
fraction of the query's character bigrams found in the hit's best index text. An exact SKU hit
has confidence 1.0.

The local backend's calibration (noise 0.85, sure 0.95, share 0.7, threshold 0.50) and how it
sorts real and off-topic questions is in ``docs/measurements.md``; the openai defaults are a
guess: set ``min_confidence`` for your model.
"""

from __future__ import annotations

import itertools
import logging
import math
import re
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final

import numpy as np
import numpy.typing as npt

from knowledge.catalogue import Catalogue
from knowledge.config import EmbeddingBackend, RetrievalConfig
from knowledge.embeddings import Embedder, Vectors, query_vectors
from knowledge.errors import EmbeddingUnavailable, KnowledgeError
from knowledge.keyword import KeywordIndex, Segmenter, bigram_coverage, char_units, normalise
from knowledge.loaders.skus import extract_skus
from knowledge.types import Chunk, ChunkDraft, Hit, Kind, SearchResult
from knowledge.vectorstore import VectorStore

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Calibration:
    """How a backend's cosine maps to confidence: ``(cos - noise) / (sure - noise)``, clipped."""

    noise: float
    sure: float
    dense_share: float
    """Weight of the dense signal in confidence; the rest is keyword coverage."""


CALIBRATION: dict[EmbeddingBackend, Calibration] = {
    "local": Calibration(noise=0.85, sure=0.95, dense_share=0.7),
    "hash": Calibration(noise=0.10, sure=0.80, dense_share=0.7),
    "openai": Calibration(noise=0.30, sure=0.85, dense_share=0.7),
}

DEFAULT_MIN_CONFIDENCE: dict[EmbeddingBackend, float] = {
    "local": 0.50,
    "hash": 0.40,
    "openai": 0.45,
}

RRF_K = 60
PATHS = ("sku", "dense", "keyword")


def index_texts(draft: ChunkDraft) -> tuple[str, ...]:
    """The texts that find a chunk: its index texts, else heading and text."""
    if draft.index_texts:
        return draft.index_texts
    return (f"{draft.heading}\n{draft.text}" if draft.heading else draft.text,)


def chunk_skus(chunk: Chunk) -> tuple[str, ...]:
    """Product codes a chunk is about (its own, else its metadata's), upper-cased."""
    return tuple(s.upper() for s in (chunk.draft.skus or chunk.meta.skus))


@dataclass(frozen=True, slots=True)
class Snapshot:
    """The active chunks with their keyword index, entry vectors and SKU map.

    Swapped whole by the knowledge base, never mutated. Entry ``i`` (one index text) is row ``i``
    of ``vectors`` and entry ``i`` of ``keyword``; ``spans[chunk_id]`` is its chunk's entry range.
    Keeping the vectors (about 1.5 kB per entry for a 384-d model) gives exact cosines for every
    candidate and the corpus moments behind the dense z-score (see :meth:`dense_stats`).
    """

    chunks: Mapping[str, Chunk]
    keyword: KeywordIndex
    skus: Mapping[str, tuple[str, ...]]
    vectors: Vectors
    spans: Mapping[str, tuple[int, int]]
    mean: Vectors
    second: Vectors
    catalogue: Catalogue
    """The snapshot's stores, products and promotions as records."""
    bigram_df: Mapping[str, int]
    """How many chunks' index texts hold each character bigram (see :func:`_specific_first`)."""

    @classmethod
    def build(
        cls, chunks: Sequence[Chunk], vectors: Mapping[str, Vectors], segmenter: Segmenter
    ) -> Snapshot:
        """Index ``chunks``; ``vectors[chunk_id]`` holds one row per index text (blocking)."""
        entries = [(c.id, text) for c in chunks for text in index_texts(c.draft)]
        keyword = KeywordIndex(entries, segmenter.vocabulary(_terms(chunks)))
        spans: dict[str, tuple[int, int]] = {}
        start = 0
        for c in chunks:
            spans[c.id] = (start, start + len(index_texts(c.draft)))
            start = spans[c.id][1]
        rows = [vectors[c.id] for c in chunks]
        matrix = np.concatenate(rows).astype(np.float32) if rows else np.zeros((0, 0), np.float32)
        if matrix.shape[0] != len(entries):
            raise KnowledgeError(f"{matrix.shape[0]} vectors for {len(entries)} index texts")
        n = max(matrix.shape[0], 1)
        mean = matrix.sum(axis=0) / n
        second = (matrix.T @ matrix) / n
        return cls(
            {c.id: c for c in chunks}, keyword, _sku_map(chunks), matrix, spans, mean, second,
            Catalogue.build(chunks), _bigram_df(chunks),
        )  # fmt: skip

    @classmethod
    def empty(cls) -> Snapshot:
        return cls.build([], {}, Segmenter())

    def cosine(self, chunk_id: str, query: Vectors) -> float:
        """The best cosine between ``query`` and the chunk's index texts."""
        start, end = self.spans[chunk_id]
        return float(np.max(self.vectors[start:end] @ query))

    def dense_stats(self, query: Vectors) -> tuple[float, float]:
        """Mean and standard deviation of ``query``'s cosine over every entry, exactly, from the
        first two moments of the entry vectors (no need to score the whole corpus)."""
        if self.vectors.shape[0] == 0:
            return 0.0, 1.0
        mean = float(query @ self.mean)
        var = float(query @ self.second @ query) - mean * mean
        return mean, math.sqrt(max(var, 1e-12))

    def keyword_score(self, chunk_id: str, scores: npt.NDArray[np.float32]) -> float:
        """The chunk's best entry score in ``scores`` (one BM25 score per entry)."""
        start, end = self.spans[chunk_id]
        return float(np.max(scores[start:end]))


def _terms(chunks: Sequence[Chunk]) -> set[str]:
    """Whole terms for jieba's user dictionary: SKUs, product and promotion names."""
    terms: set[str] = set()
    for chunk in chunks:
        terms.update(chunk_skus(chunk))
        if chunk.meta.title and chunk.meta.kind in (Kind.PRODUCT, Kind.PROMOTION):
            terms.add(chunk.meta.title)
        if chunk.draft.heading and chunk.meta.kind is Kind.PRODUCT:
            terms.add(chunk.draft.heading)
    return terms


def _bigrams(text: str) -> set[str]:
    units = char_units(text)
    return {a + b for a, b in itertools.pairwise(units)}


def _bigram_df(chunks: Sequence[Chunk]) -> dict[str, int]:
    df: Counter[str] = Counter()
    for chunk in chunks:
        df.update(set().union(*(_bigrams(t) for t in index_texts(chunk.draft))))
    return dict(df)


SPECIFIC_DF = 3
"""A question word held by at most this many chunks is *specific* (除夕 in 除夕几点关门)."""

_ASKING: Final = re.compile(r"[几么哪吗呢啥谁怎什]|多少|是否|能否|可否|可以|有没有|请问")
"""Question words: they say what kind of answer is wanted (几点 → a time), not what about."""


def _specific_terms(snap: Snapshot, query: str) -> dict[str, int]:
    """The question's content words that at most :data:`SPECIFIC_DF` chunks hold, with that count.

    A word's chunk count is its rarest bigram's (exact for two characters, a bound beyond)."""
    terms: dict[str, int] = {}
    for word in snap.keyword.words(query):
        grams = _bigrams(word)
        if grams and not _ASKING.search(word):
            df = min(snap.bigram_df.get(g, 0) for g in grams)
            if 0 < df <= SPECIFIC_DF:
                terms[normalise(word)] = df
    return terms


def _specific_first(
    snap: Snapshot, query: str, hits: list[Hit], threshold: float
) -> tuple[Hit, ...]:
    """Put first the found hit holding most of the question's specific words (each weighs
    1 / the chunks holding it, so the rarer counts more), when the best lacks some of them;
    ties keep the fused order.

    A short FAQ variant (几点关门) outranks a notice's section (除夕……18:00 准时关门) on both
    paths for 除夕几点关门: the variant is shorter (BM25) and closer (dense) but says nothing about
    除夕. The words few chunks hold are what the member is asking about; a found hit that holds
    more of them answers better. An exact SKU hit is never moved.
    """
    if not hits or "sku" in hits[0].matched_by:
        return tuple(hits)
    terms = _specific_terms(snap, query)

    def held(hit: Hit) -> float:
        texts = [normalise(t) for t in index_texts(hit.chunk.draft)]
        return sum(1 / df for term, df in terms.items() if any(term in t for t in texts))

    best, most = 0, held(hits[0])
    if most >= sum(1 / df for df in terms.values()):
        return tuple(hits)
    for i, hit in enumerate(hits[1:], start=1):
        if hit.confidence >= threshold and held(hit) > most:
            best, most = i, held(hit)
    return (hits[best], *hits[:best], *hits[best + 1 :])


def _sku_map(chunks: Sequence[Chunk]) -> dict[str, tuple[str, ...]]:
    skus: dict[str, list[str]] = {}
    for chunk in chunks:
        for sku in chunk_skus(chunk):
            skus.setdefault(sku, []).append(chunk.id)
    return {k: tuple(v) for k, v in skus.items()}


class HybridRetriever:
    """Runs searches over whatever snapshot it is handed."""

    def __init__(
        self,
        embedder: Embedder,
        store: VectorStore,
        config: RetrievalConfig,
        backend: EmbeddingBackend,
    ) -> None:
        self._embedder = embedder
        self._store = store
        self._config = config
        self._calibration = CALIBRATION[backend]
        self.threshold = (
            config.min_confidence
            if config.min_confidence is not None
            else DEFAULT_MIN_CONFIDENCE[backend]
        )

    async def search(
        self,
        snap: Snapshot,
        query: str,
        *,
        store_id: str | None = None,
        at: datetime | None = None,
        top_k: int | None = None,
        paths: Sequence[str] = PATHS,
    ) -> SearchResult:
        """Best ``top_k`` hits for ``query`` as seen from ``store_id`` at ``at`` (default now)."""
        when = _check_time(at)
        k = self._config.top_k if top_k is None else top_k
        if k < 1:
            raise KnowledgeError(f"top_k must be at least 1, got {k}")
        query = query.strip()
        if not char_units(query) or not snap.chunks:  # nothing but spaces, punctuation, emoji
            return SearchResult(query, (), self.threshold)

        def keep(cid: str) -> bool:
            meta = snap.chunks[cid].meta
            return meta.is_valid_at(when) and meta.applies_to_store(store_id)

        qvec = await self._query_vector(query) if "dense" in paths else None
        n = max(50, 5 * k)
        dense = await self._dense(snap, qvec, n, k, keep) if qvec is not None else set()
        kw_scores = snap.keyword.scores(query)
        keyword = set(snap.keyword.top(kw_scores, n, keep)) if "keyword" in paths else set()
        sku_ids = _sku_hits(snap, query, keep) if "sku" in paths else []
        cands = dense | keyword | set(sku_ids)
        cos = {cid: snap.cosine(cid, qvec) for cid in cands} if qvec is not None else {}
        fused = self._fuse(snap, qvec, kw_scores, cos, dense, keyword)
        ranked = sorted(dense | keyword, key=lambda c: (-fused[c], c))
        order = list(dict.fromkeys([*sku_ids, *ranked]))[:k]
        top = max(fused.values(), default=0.0) + 1.0  # exact SKU hits rank above everything
        hits = []
        for cid in order:
            by = tuple(
                p
                for p, ids in (("sku", sku_ids), ("dense", dense), ("keyword", keyword))
                if cid in ids
            )
            is_sku = cid in sku_ids
            conf = 1.0 if is_sku else self._confidence(query, snap.chunks[cid], cos.get(cid))
            hits.append(Hit(snap.chunks[cid], top if is_sku else fused[cid], conf, by))
        return SearchResult(
            query, _specific_first(snap, query, hits, self.threshold), self.threshold
        )

    async def _query_vector(self, query: str) -> Vectors | None:
        """The question's vector; None when the embeddings server is unavailable (the search is
        then keyword and SKU only: a member still gets an answer; the breaker logged why)."""
        try:
            vectors = await query_vectors(self._embedder, [query])
        except EmbeddingUnavailable as exc:
            log.debug("searching by keyword only: %s", exc)
            return None
        row: Vectors = vectors[0]
        return row

    async def _dense(
        self, snap: Snapshot, qvec: Vectors, n: int, k: int, keep: Callable[[str], bool]
    ) -> set[str]:
        """Kept chunks among Chroma's nearest entries; widens the fetch while too few remain."""
        while True:
            found = await self._store.query(qvec, n)
            best = {cid for cid, _ in found if cid in snap.chunks and keep(cid)}
            if len(best) >= k or len(found) < n:
                return best
            n *= 4

    def _fuse(
        self,
        snap: Snapshot,
        qvec: Vectors | None,
        kw_scores: npt.NDArray[np.float32],
        cos: dict[str, float],
        dense: set[str],
        keyword: set[str],
    ) -> dict[str, float]:
        """Fused score of every candidate. Weighted: z-scores against the whole corpus (both
        lists' statistics are exact), so a candidate found by one path still gets its real score
        on the other (candidate-only z-scores measured worse: ``docs/measurements.md``)."""
        cands = dense | keyword
        kw = {cid: snap.keyword_score(cid, kw_scores) for cid in cands}
        if self._config.fusion == "rrf":
            return _rrf([{c: cos[c] for c in dense}, {c: kw[c] for c in keyword}])
        mu_k, sd_k = float(kw_scores.mean()), float(kw_scores.std())
        keyword_z = {cid: (kw[cid] - mu_k) / sd_k if sd_k else 0.0 for cid in cands}
        if qvec is None:  # no query vector: keyword only
            return keyword_z
        w = self._config.dense_weight if dense and keyword else (1.0 if dense else 0.0)
        mu_d, sd_d = snap.dense_stats(qvec)
        return {cid: w * (cos[cid] - mu_d) / sd_d + (1 - w) * keyword_z[cid] for cid in cands}

    def _confidence(self, query: str, chunk: Chunk, cosine: float | None) -> float:
        cal = self._calibration
        coverage = max(bigram_coverage(query, t) for t in index_texts(chunk.draft))
        if cosine is None:  # keyword only: the question's bigrams the entry holds
            return round(coverage, 4)
        dense = (cosine - cal.noise) / (cal.sure - cal.noise)
        value = cal.dense_share * min(max(dense, 0.0), 1.0) + (1 - cal.dense_share) * coverage
        return round(min(max(value, 0.0), 1.0), 4)


def _check_time(at: datetime | None) -> datetime:
    if at is None:
        return datetime.now(UTC)
    if at.tzinfo is None or at.utcoffset() is None:
        raise KnowledgeError("search time 'at' must be timezone-aware")
    return at


def _sku_hits(snap: Snapshot, query: str, keep: Callable[[str], bool]) -> list[str]:
    ids = [cid for sku in extract_skus(query) for cid in snap.skus.get(sku, ())]
    return [cid for cid in dict.fromkeys(ids) if keep(cid)]


def _rrf(lists: Sequence[dict[str, float]]) -> dict[str, float]:
    out: dict[str, float] = {}
    for scores in lists:
        ranked = sorted(scores, key=lambda c: (-scores[c], c))
        for rank, cid in enumerate(ranked, start=1):
            out[cid] = out.get(cid, 0.0) + 1.0 / (RRF_K + rank)
    return out
