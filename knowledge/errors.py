"""Exceptions raised by the knowledge package.

KnowledgeError
├── LoaderError          a file could not be read or parsed (bad format, broken upload)
│   └── UnsupportedFormat   the file type has no loader
├── MetadataError        front matter / columns / call arguments carry invalid metadata
├── EmbeddingError       the embedding backend failed (network, bad response, dimension change)
│   └── EmbeddingUnavailable   the embeddings server is not answering (also ServiceUnavailable)
├── ServiceUnavailable   a remote service (LLM, embeddings) timed out, failed transiently or its
│                        circuit breaker is open: the caller falls back (knowledge.remote)
└── StoreError           the vector store or the registry failed; a replace is rolled back
"""

from __future__ import annotations


class KnowledgeError(Exception):
    """Root of every error the knowledge package raises."""


class LoaderError(KnowledgeError):
    """A file could not be read or parsed; ``source`` names it."""

    def __init__(self, source: str, reason: str) -> None:
        super().__init__(f"{source}: {reason}")
        self.source = source
        self.reason = reason


class UnsupportedFormat(LoaderError):
    """No loader handles this file's type."""


class MetadataError(KnowledgeError):
    """Invalid metadata (unknown kind, unparseable date, valid_to before valid_from, ...)."""


class EmbeddingError(KnowledgeError):
    """The embedding backend failed or returned something unusable."""


class StoreError(KnowledgeError):
    """The vector store or the document registry failed."""


class ServiceUnavailable(KnowledgeError):
    """A remote OpenAI-compatible service did not answer usefully within its deadline (timeout,
    refused connection, 5xx, 429, an unreadable body) or its circuit breaker is open
    (``breaker_open``: nothing was sent). Callers fall back; see :mod:`knowledge.remote`."""

    def __init__(self, message: str, *, breaker_open: bool = False) -> None:
        super().__init__(message)
        self.breaker_open = breaker_open


class EmbeddingUnavailable(EmbeddingError, ServiceUnavailable):
    """The embeddings server is unavailable: a search falls back to keyword retrieval; an
    ingest fails (and can be retried)."""
