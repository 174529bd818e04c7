"""An OpenAI-compatible embeddings server failing: searches fall back to keyword retrieval in
time, the breaker stops asking it, a 4xx stays an error, and dense search comes back.

Real SQLite, Chroma in a temp dir, the fake server over HTTP (``tests/fakes/openai_server.py``);
the breaker's clock is moved by hand.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from knowledge.base import KnowledgeBase
from knowledge.breaker import COOL_DOWN
from knowledge.config import EmbeddingConfig, KnowledgeConfig
from knowledge.embeddings import QUERY_SECONDS
from knowledge.errors import EmbeddingError, EmbeddingUnavailable
from knowledge.types import ChunkDraft, DocumentMeta, SourceDocument
from tests.fakes.openai_server import FakeOpenAI, Outage, openai_server

__all__ = ["openai_server"]


@dataclass
class Monotonic:
    now: float = 0.0

    def __call__(self) -> float:
        return self.now


FAQ = (
    ChunkDraft("问：怎么退货\n答：7天内凭小票退货。", ("怎么退货",), "7天内凭小票退货。"),
    ChunkDraft("问：几点开门\n答：每天10点开门。", ("几点开门",), "每天10点开门。"),
)


@pytest.fixture
def monotonic() -> Monotonic:
    return Monotonic()


@pytest.fixture
async def kb(
    openai_server: FakeOpenAI, data_dir: Path, engine: AsyncEngine, monotonic: Monotonic
) -> AsyncIterator[KnowledgeBase]:
    """A knowledge base embedding with the fake server, the FAQ ingested and searched once
    while it was up."""
    emb = EmbeddingConfig(backend="openai", base_url=openai_server.base_url, model="m")
    config = KnowledgeConfig(data_dir=data_dir, embedding=emb, refresh_seconds=0)
    base = await KnowledgeBase.open(config, engine, monotonic=monotonic)
    try:
        await base.ingest(SourceDocument(DocumentMeta(source="faq.csv"), FAQ, "h"))
        await base.search("几点开门")  # warm: the first search loads the segmenter (about 1 s)
        yield base
    finally:
        await base.close()


@pytest.mark.parametrize("mode", ["down", "hang", "drip", "rate_limited", "garbage"])
async def test_search_falls_back_to_keywords_while_the_server_fails(
    kb: KnowledgeBase, openai_server: FakeOpenAI, mode: Outage
) -> None:
    openai_server.outage(mode, endpoint="embeddings")
    started = time.monotonic()
    result = await kb.search("怎么退货")
    assert time.monotonic() - started < QUERY_SECONDS + 2.0
    best = result.best
    assert best is not None
    assert result.found
    assert best.chunk.answer_text == "7天内凭小票退货。"
    assert best.matched_by == ("keyword",)


async def test_the_breaker_skips_a_failing_server_and_dense_search_returns(
    kb: KnowledgeBase, openai_server: FakeOpenAI, monotonic: Monotonic
) -> None:
    openai_server.outage("down", endpoint="embeddings")
    for _ in range(3):
        await kb.search("怎么退货")
    asked = len(openai_server.embedding_requests)
    best = (await kb.search("几点开门")).best
    assert best is not None
    assert best.chunk.answer_text == "每天10点开门。"
    assert len(openai_server.embedding_requests) == asked  # open: not asked

    openai_server.up("embeddings")
    monotonic.now += COOL_DOWN
    best = (await kb.search("怎么退货")).best
    assert best is not None
    assert "dense" in best.matched_by
    assert len(openai_server.embedding_requests) == asked + 1


async def test_a_rejected_request_is_still_an_error(
    kb: KnowledgeBase, openai_server: FakeOpenAI
) -> None:
    """A 400 means a wrong model or request: a keyword answer would hide a configuration error."""
    openai_server.fail_embeddings(400, "unknown model")
    with pytest.raises(EmbeddingError, match="unknown model") as caught:
        await kb.search("怎么退货")
    assert not isinstance(caught.value, EmbeddingUnavailable)


async def test_ingest_while_the_server_is_down_fails_and_keeps_nothing(
    kb: KnowledgeBase, openai_server: FakeOpenAI
) -> None:
    openai_server.outage("down", endpoint="embeddings")
    new = (ChunkDraft("问：能开发票吗\n答：可以。", ("能开发票吗",), "可以。"),)
    with pytest.raises(EmbeddingUnavailable):
        await kb.ingest(SourceDocument(DocumentMeta(source="invoice.csv"), new, "h2"))
    assert [d.source for d in await kb.documents()] == ["faq.csv"]
