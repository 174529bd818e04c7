"""KnowledgeBase storage: ingest/search round trip, versions, delete, reopen, registry backends."""

from __future__ import annotations

import asyncio
import shutil
import socket
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from knowledge.base import KnowledgeBase, chunk_id
from knowledge.config import EmbeddingConfig, KnowledgeConfig
from knowledge.errors import KnowledgeError, MetadataError
from knowledge.loaders import content_hash
from knowledge.types import ChunkDraft, DocumentMeta, Kind, SourceDocument
from tests.sql import sql_engine


def hash_config(data_dir: Path, **kw: object) -> KnowledgeConfig:
    return KnowledgeConfig(data_dir=data_dir, embedding=EmbeddingConfig(backend="hash"), **kw)  # type: ignore[arg-type]


def qa(question: str, answer: str, *variants: str) -> ChunkDraft:
    return ChunkDraft(
        text=f"问：{question}\n答：{answer}", index_texts=(question, *variants), answer=answer
    )


def make_doc(source: str, *chunks: ChunkDraft, **meta: object) -> SourceDocument:
    m = DocumentMeta(source=source, **meta)  # type: ignore[arg-type]
    return SourceDocument(m, chunks, content_hash(m, chunks))


FAQ = make_doc(
    "faq.csv",
    qa("怎么退货", "收货后7天内可无理由退货。", "如何退换货"),
    qa("会员积分怎么用", "100积分抵1元，结账时使用。"),
    qa("门店几点营业", "每天10:00-22:00营业。"),
)


@pytest.fixture
async def kb(data_dir: Path, engine: AsyncEngine) -> AsyncIterator[KnowledgeBase]:
    base = await KnowledgeBase.open(hash_config(data_dir), engine)
    yield base
    await base.close()


async def test_ingest_then_search_finds_the_right_answer(kb: KnowledgeBase) -> None:
    report = await kb.ingest(FAQ)
    assert (report.doc_id, report.version, report.chunks, report.embedded) == ("faq.csv", 1, 3, 3)
    result = await kb.search("我想退货怎么弄")
    assert result.best is not None
    assert result.best.chunk.answer_text == "收货后7天内可无理由退货。"
    assert result.best.citation.doc_id == "faq.csv"
    assert kb.chunk_count() == 3


async def test_a_variant_question_finds_its_row(kb: KnowledgeBase) -> None:
    await kb.ingest(FAQ)
    result = await kb.search("如何退换货")
    assert result.best is not None
    assert result.best.chunk.draft.index_texts[0] == "怎么退货"
    # One hit per chunk even though the row has two vectors.
    assert len({h.chunk.id for h in result.hits}) == len(result.hits)


async def test_unchanged_upload_is_a_no_op(kb: KnowledgeBase) -> None:
    await kb.ingest(FAQ)
    again = await kb.ingest(FAQ)
    assert again.unchanged
    assert (again.version, again.embedded) == (1, 0)
    [info] = await kb.documents()
    assert info.version == 1


async def test_changed_upload_bumps_the_version_and_serves_only_new_content(
    kb: KnowledgeBase,
) -> None:
    await kb.ingest(FAQ)
    new = make_doc("faq.csv", qa("怎么退货", "现在支持30天无理由退货。"))
    report = await kb.ingest(new)
    # Same question text: its vector comes from the cache although the answer changed.
    assert (report.version, report.chunks, report.embedded, report.reused) == (2, 1, 0, 1)
    result = await kb.search("怎么退货")
    assert [h.chunk.answer_text for h in result.hits] == ["现在支持30天无理由退货。"]
    assert all(h.chunk.version == 2 for h in result.hits)
    [info] = await kb.documents()
    assert (info.version, info.chunks, info.content_hash) == (2, 1, new.content_hash)


async def test_documents_lists_metadata(kb: KnowledgeBase) -> None:
    promo = make_doc(
        "双十一.md",
        ChunkDraft(text="全场满300减50"),
        kind=Kind.PROMOTION,
        stores=("sh-01",),
        title="双十一",
    )
    await kb.ingest(promo)
    await kb.ingest(FAQ, doc_id="faq")
    infos = {i.doc_id: i for i in await kb.documents()}
    assert set(infos) == {"双十一.md", "faq"}
    assert infos["双十一.md"].kind is Kind.PROMOTION
    assert infos["双十一.md"].stores == ("sh-01",)
    assert infos["faq"].source == "faq.csv"
    assert infos["faq"].updated_at.tzinfo is not None


async def test_delete_removes_the_document_and_its_vectors(kb: KnowledgeBase) -> None:
    await kb.ingest(FAQ)
    await kb.ingest(make_doc("other.md", ChunkDraft(text="退货请联系客服")))
    assert await kb.delete("faq.csv")
    assert not await kb.delete("faq.csv")
    result = await kb.search("怎么退货")
    assert {h.chunk.doc_id for h in result.hits} == {"other.md"}
    assert [i.doc_id for i in await kb.documents()] == ["other.md"]
    assert kb.chunk_count() == 1
    assert len(await kb._store.ids()) == 1


async def test_reopen_serves_the_same_results(data_dir: Path, engine: AsyncEngine) -> None:
    first = await KnowledgeBase.open(hash_config(data_dir), engine)
    await first.ingest(FAQ)
    await first.ingest(make_doc("faq.csv", *FAQ.chunks[:2]))
    before = await first.search("积分怎么用")
    await first.close()

    second = await KnowledgeBase.open(hash_config(data_dir), engine)
    try:
        after = await second.search("积分怎么用")
        assert [(h.chunk.id, h.confidence) for h in after.hits] == [
            (h.chunk.id, h.confidence) for h in before.hits
        ]
        assert second.chunk_count() == 2
        assert (await second.ingest(make_doc("faq.csv", *FAQ.chunks[:2]))).unchanged
    finally:
        await second.close()


async def test_reopen_sweeps_orphans_and_reindexes_missing_vectors(
    data_dir: Path, engine: AsyncEngine
) -> None:
    first = await KnowledgeBase.open(hash_config(data_dir), engine)
    await first.ingest(FAQ)
    from knowledge.vectorstore import VectorEntry

    orphan = VectorEntry("ghost:1:0#q0", "ghost:1:0", "ghost", 1)
    vecs = first._embedder.inner.embed_passages(["幽灵"])
    await first._store.add([orphan], vecs)
    await first._store.delete_ids([f"{chunk_id('faq.csv', 1, 2)}#q0"])
    await first.close()

    second = await KnowledgeBase.open(hash_config(data_dir), engine)
    try:
        ids = set(await second._store.ids())
        assert "ghost:1:0#q0" not in ids
        assert f"{chunk_id('faq.csv', 1, 2)}#q0" in ids
        best = (await second.search("门店几点营业")).best
        assert best is not None
        assert "dense" in best.matched_by
    finally:
        await second.close()


async def test_two_collections_share_one_database(data_dir: Path, engine: AsyncEngine) -> None:
    a = await KnowledgeBase.open(hash_config(data_dir, collection="brand-a"), engine)
    b = await KnowledgeBase.open(hash_config(data_dir, collection="brand-b"), engine)
    try:
        await a.ingest(FAQ)
        assert await b.documents() == []
        assert (await b.search("怎么退货")).hits == ()
    finally:
        await a.close()
        await b.close()


async def test_bad_input_gets_typed_errors(kb: KnowledgeBase) -> None:
    with pytest.raises(MetadataError):
        await kb.ingest(make_doc("  ", ChunkDraft(text="x")))
    from datetime import datetime

    with pytest.raises(KnowledgeError, match="timezone-aware"):
        await kb.search("退货", at=datetime(2026, 1, 1))
    with pytest.raises(KnowledgeError, match="top_k"):
        await kb.search("退货", top_k=0)
    assert (await kb.search("   ")).hits == ()
    await kb.ingest(FAQ)
    assert (await kb.search("？？！")).hits == ()  # punctuation only: nothing to look for


async def test_ingest_path_loads_a_file(kb: KnowledgeBase, tmp_path: Path) -> None:
    path = tmp_path / "faq.csv"
    path.write_text("问题,答案\n怎么开发票,在订单页申请电子发票。\n", encoding="utf-8")
    report = await kb.ingest_path(path)
    assert report.doc_id == "faq.csv"
    best = (await kb.search("开发票")).best
    assert best is not None
    assert best.chunk.answer_text == "在订单页申请电子发票。"


@pytest.mark.postgres
async def test_registry_round_trip_on_postgresql(data_dir: Path) -> None:
    async with sql_engine("postgres", data_dir) as engine:
        collection = f"test-{uuid.uuid4().hex[:12]}"
        kb = await KnowledgeBase.open(hash_config(data_dir, collection=collection), engine)
        try:
            await kb.ingest(FAQ)
            assert (await kb.ingest(FAQ)).unchanged
            await kb.ingest(make_doc("faq.csv", qa("怎么退货", "30天无理由。")))
            [info] = await kb.documents()
            assert info.version == 2
            assert await kb.delete("faq.csv")
            assert await kb.documents() == []
        finally:
            await kb.close()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def chroma_server(tmp_path: Path) -> Iterator[str]:
    exe = shutil.which("chroma") or str(Path(sys.executable).with_name("chroma"))
    if not Path(exe).exists():
        pytest.skip("the chroma CLI is not installed")
    port = _free_port()
    proc = subprocess.Popen(
        [
            exe,
            "run",
            "--path",
            str(tmp_path / "server"),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


async def _wait_for_port(url: str, seconds: float = 20.0) -> None:
    port = int(url.rsplit(":", 1)[1])
    for _ in range(int(seconds * 10)):
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            await asyncio.sleep(0.1)
            continue
        writer.close()
        await writer.wait_closed()
        return
    pytest.fail(f"chroma run did not listen on {url}")


@pytest.mark.slow
async def test_round_trip_through_a_chroma_server(
    data_dir: Path, engine: AsyncEngine, chroma_server: str
) -> None:
    await _wait_for_port(chroma_server)
    kb = await KnowledgeBase.open(hash_config(data_dir, chroma_url=chroma_server), engine)
    try:
        await kb.ingest(FAQ)
        best = (await kb.search("积分怎么用")).best
        assert best is not None
        assert best.chunk.answer_text == "100积分抵1元，结账时使用。"
        assert "dense" in best.matched_by
    finally:
        await kb.close()


async def test_documents_without_searchable_text_are_stored(kb: KnowledgeBase) -> None:
    assert (await kb.ingest(make_doc("empty.md"))).chunks == 0
    blank = make_doc("blank.md", ChunkDraft(text=""), ChunkDraft(text="，。！"))
    assert (await kb.ingest(blank)).chunks == 2
    assert kb.chunk_count() == 2
    assert {i.doc_id for i in await kb.documents()} == {"empty.md", "blank.md"}
    assert not (await kb.search("退货")).found
