"""Atomic replace: readers never see a mix of versions; a failed replace leaves the old one serving;
the embedding cache re-embeds only what changed."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from knowledge.base import KnowledgeBase
from knowledge.config import EmbeddingConfig, KnowledgeConfig
from knowledge.embeddings import HashEmbedder, Vectors
from knowledge.errors import EmbeddingError
from knowledge.loaders import content_hash
from knowledge.types import ChunkDraft, DocumentMeta, SourceDocument

CONFIG_BATCH = 32


class CountingEmbedder(HashEmbedder):
    """A real hash embedder that counts the passages it embeds."""

    def __init__(self) -> None:
        super().__init__()
        self.passages: list[str] = []

    def embed_passages(self, texts: Sequence[str]) -> Vectors:
        self.passages.extend(texts)
        return super().embed_passages(texts)


class FailingEmbedder(HashEmbedder):
    """Raises on the second batch of passages after ``armed`` is set."""

    def __init__(self) -> None:
        super().__init__()
        self.armed = False
        self.batches = 0

    def embed_passages(self, texts: Sequence[str]) -> Vectors:
        if self.armed:
            self.batches += 1
            if self.batches == 2:
                raise EmbeddingError("backend went away")
        return super().embed_passages(texts)


def versioned_doc(label: str, n: int = 300) -> SourceDocument:
    meta = DocumentMeta(source="manual.md")
    chunks = tuple(ChunkDraft(text=f"第{i}条 说明 {label}") for i in range(n))
    return SourceDocument(meta, chunks, content_hash(meta, chunks))


def faq_doc(rows: Sequence[tuple[str, str]]) -> SourceDocument:
    meta = DocumentMeta(source="faq.csv")
    chunks = tuple(ChunkDraft(f"问：{q}\n答：{a}", (q,), a) for q, a in rows)
    return SourceDocument(meta, chunks, content_hash(meta, chunks))


def config(data_dir: Path) -> KnowledgeConfig:
    return KnowledgeConfig(
        data_dir=data_dir, embedding=EmbeddingConfig(backend="hash", batch_size=CONFIG_BATCH)
    )


async def test_replace_under_concurrent_searches_never_mixes_versions(
    data_dir: Path, engine: AsyncEngine
) -> None:
    kb = await KnowledgeBase.open(config(data_dir), engine)
    try:
        await kb.ingest(versioned_doc("版本A"))
        done = asyncio.Event()
        seen: list[list[set[str]]] = [[] for _ in range(4)]

        async def reader(mine: list[set[str]]) -> None:
            while not done.is_set():
                result = await kb.search("说明 版本", top_k=20)
                mine.append({h.chunk.draft.text.rsplit(" ", 1)[1] for h in result.hits})

        async def writer() -> None:
            await asyncio.sleep(0.01)  # let the readers start first
            try:
                await kb.ingest(versioned_doc("版本B"))
            finally:
                done.set()

        await asyncio.gather(writer(), *(reader(mine) for mine in seen))
        for mine in seen:
            assert all(len(s) == 1 for s in mine), [s for s in mine if len(s) != 1]
            labels = [next(iter(s)) for s in mine]
            assert labels[0] == "版本A"  # readers did run while the replace was under way
            # Per reader, once the new version shows, the old one never comes back.
            flip = labels.index("版本B") if "版本B" in labels else len(labels)
            assert set(labels[flip:]) <= {"版本B"}
        after = await kb.search("说明 版本", top_k=20)
        assert {h.chunk.draft.text.rsplit(" ", 1)[1] for h in after.hits} == {"版本B"}
        assert len(await kb._store.ids()) == 300  # the old version's vectors are gone
    finally:
        await kb.close()


async def test_failed_replace_keeps_the_old_version_and_leaves_no_orphans(
    data_dir: Path, engine: AsyncEngine
) -> None:
    embedder = FailingEmbedder()
    kb = await KnowledgeBase.open(config(data_dir), engine, embedder=embedder)
    try:
        await kb.ingest(versioned_doc("版本A", n=100))
        ids_before = sorted(await kb._store.ids())
        embedder.armed = True
        with pytest.raises(EmbeddingError):
            await kb.ingest(versioned_doc("版本B", n=100))
        assert embedder.batches == 2  # the first batch went through: partial work existed
        result = await kb.search("说明 版本", top_k=10)
        assert {h.chunk.draft.text.rsplit(" ", 1)[1] for h in result.hits} == {"版本A"}
        [info] = await kb.documents()
        assert info.version == 1
        assert sorted(await kb._store.ids()) == ids_before
        # The batch that did succeed is cached: retrying embeds only the rest.
        embedder.armed = False
        report = await kb.ingest(versioned_doc("版本B", n=100))
        assert (report.version, report.reused, report.embedded) == (
            2,
            CONFIG_BATCH,
            100 - CONFIG_BATCH,
        )
    finally:
        await kb.close()


async def test_changing_one_faq_row_embeds_only_that_row(
    data_dir: Path, engine: AsyncEngine
) -> None:
    rows = [(f"第{i}个问题是什么", f"第{i}个答案") for i in range(50)]
    embedder = CountingEmbedder()
    kb = await KnowledgeBase.open(config(data_dir), engine, embedder=embedder)
    try:
        first = await kb.ingest(faq_doc(rows))
        assert (first.embedded, len(embedder.passages)) == (50, 50)
        embedder.passages.clear()

        again = await kb.ingest(faq_doc(rows))
        assert again.unchanged
        assert embedder.passages == []

        rows[7] = ("第7个问题改成了什么", "新的答案")
        changed = await kb.ingest(faq_doc(rows))
        assert (changed.version, changed.embedded, changed.reused) == (2, 1, 49)
        assert embedder.passages == ["第7个问题改成了什么"]
        best = (await kb.search("第7个问题改成了什么")).best
        assert best is not None
        assert best.chunk.answer_text == "新的答案"
    finally:
        await kb.close()


async def test_progress_reports_index_texts_done(data_dir: Path, engine: AsyncEngine) -> None:
    kb = await KnowledgeBase.open(config(data_dir), engine)
    calls: list[tuple[int, int]] = []
    try:
        await kb.ingest(versioned_doc("版本A", n=70), progress=lambda d, t: calls.append((d, t)))
    finally:
        await kb.close()
    assert calls[0] == (0, 70)
    assert calls[-1] == (70, 70)
    assert [d for d, _ in calls] == sorted(d for d, _ in calls)
