"""Exceptions raised by the knowledge package.

KnowledgeError
├── LoaderError          a file could not be read or parsed (bad format, broken upload)
│   └── UnsupportedFormat   the file type has no loader
├── MetadataError        front matter / columns / call arguments carry invalid metadata
├── EmbeddingError       the embedding backend failed (network, bad response, dimension change)
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
