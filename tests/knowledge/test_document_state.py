"""Removing, disabling and enabling documents; duplicates of another document; strict ingest;
progress in entries. Real SQLite and Chroma in a temp dir; faults are real database faults (a
trigger that aborts the statement), not mocks."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from knowledge.base import KnowledgeBase
from knowledge.errors import LoaderError, StoreError
from knowledge.loaders import load_path
from tests.knowledge.test_record_tables import STORES_CSV, write
from tests.knowledge.test_replace import CountingEmbedder, config

FAQ_CSV = (
    "问题,答案,相似问题\n会员积分怎么兑换？,积分满100分可抵扣1元。,积分怎么用\n"
    "退货要几天？,七天无理由退货。,能退货吗\n"
)


@pytest.fixture
async def kb(data_dir: Path, engine: AsyncEngine) -> AsyncIterator[KnowledgeBase]:
    base = await KnowledgeBase.open(config(data_dir), engine, embedder=CountingEmbedder())
    yield base
    await base.close()


async def found(kb: KnowledgeBase, question: str = "积分怎么用") -> set[str]:
    result = await kb.search(question)
    return {h.chunk.doc_id for h in result.hits if h.confidence >= result.threshold}


async def abort_on(engine: AsyncEngine, name: str, event: str, table: str) -> None:
    """A real fault: the database refuses every ``event`` on ``table`` from now on."""
    async with engine.begin() as conn:
        await conn.execute(
            sa.text(
                f"CREATE TRIGGER {name} BEFORE {event} ON {table} "
                "BEGIN SELECT RAISE(ABORT, 'disk says no'); END"
            )
        )


async def test_disable_and_enable_leave_search_and_catalogue_and_never_re_embed(
    kb: KnowledgeBase, tmp_path: Path, data_dir: Path, engine: AsyncEngine
) -> None:
    await kb.ingest_path(write(tmp_path, "faq.csv", FAQ_CSV))
    await kb.ingest_path(write(tmp_path, "stores.csv", STORES_CSV))
    embedder = kb._embedder.inner
    assert isinstance(embedder, CountingEmbedder)
    assert await found(kb) == {"faq.csv"}
    assert len(kb.catalogue().stores) == 3

    info = await kb.disable("stores.csv")
    assert info is not None
    assert not info.enabled
    await kb.disable("faq.csv")
    assert await found(kb) == set()
    assert len(kb.catalogue().stores) == 0
    assert await kb._store.ids() == []  # their vectors left Chroma
    assert {d.doc_id: d.enabled for d in await kb.documents()} == {
        "faq.csv": False,
        "stores.csv": False,
    }
    assert len(await kb.stored_chunks("faq.csv")) == 2  # kept, for show and enable

    # Another process (a fresh open) sees the same state.
    other = await KnowledgeBase.open(config(data_dir), engine)
    try:
        assert await found(other) == set()
    finally:
        await other.close()

    embedded = len(embedder.passages)  # searches embed their queries
    await kb.enable("faq.csv")
    await kb.enable("stores.csv")
    assert embedder.passages[embedded:] == []  # nothing embedded again
    assert await found(kb) == {"faq.csv"}
    assert len(kb.catalogue().stores) == 3


async def test_a_running_instance_notices_another_process_disabling(
    kb: KnowledgeBase, tmp_path: Path, data_dir: Path, engine: AsyncEngine
) -> None:
    await kb.ingest_path(write(tmp_path, "faq.csv", FAQ_CSV))
    serving = await KnowledgeBase.open(config(data_dir), engine)
    try:
        assert await found(serving) == {"faq.csv"}
        await kb.disable("faq.csv")
        assert await serving.refresh()
        assert await found(serving) == set()
        await kb.enable("faq.csv")
        assert await serving.refresh()
        assert await found(serving) == {"faq.csv"}
    finally:
        await serving.close()


async def test_a_new_version_of_a_disabled_document_stays_disabled(
    kb: KnowledgeBase, tmp_path: Path
) -> None:
    path = write(tmp_path, "faq.csv", FAQ_CSV)
    await kb.ingest_path(path)
    await kb.disable("faq.csv")
    path.write_text(FAQ_CSV.replace("七天", "十五天"), encoding="utf-8")
    report = await kb.ingest_path(path)
    assert (report.version, report.disabled) == (2, True)
    assert await found(kb) == set()
    embedder = kb._embedder.inner
    assert isinstance(embedder, CountingEmbedder)
    before = len(embedder.passages)
    await kb.enable("faq.csv")
    assert len(embedder.passages) == before
    best = (await kb.search("退货要几天？")).best
    assert best is not None
    assert best.chunk.answer_text == "十五天无理由退货。"


async def test_unknown_documents(kb: KnowledgeBase) -> None:
    assert await kb.disable("nope") is None
    assert await kb.enable("nope") is None
    assert await kb.delete("nope") is False


async def test_a_failed_disable_leaves_the_document_served(
    kb: KnowledgeBase, tmp_path: Path, engine: AsyncEngine
) -> None:
    await kb.ingest_path(write(tmp_path, "faq.csv", FAQ_CSV))
    ids = sorted(await kb._store.ids())
    await abort_on(engine, "no_disable", "INSERT", "knowledge_disabled")
    with pytest.raises(StoreError, match=r"cannot disable 'faq.csv'"):
        await kb.disable("faq.csv")
    assert await found(kb) == {"faq.csv"}
    assert [d.enabled for d in await kb.documents()] == [True]
    assert sorted(await kb._store.ids()) == ids


async def test_a_failed_enable_leaves_it_disabled_without_stray_vectors(
    kb: KnowledgeBase, tmp_path: Path, engine: AsyncEngine
) -> None:
    await kb.ingest_path(write(tmp_path, "faq.csv", FAQ_CSV))
    await kb.disable("faq.csv")
    await abort_on(engine, "no_enable", "DELETE", "knowledge_disabled")
    with pytest.raises(StoreError, match=r"cannot enable 'faq.csv'"):
        await kb.enable("faq.csv")
    assert await found(kb) == set()
    assert [d.enabled for d in await kb.documents()] == [False]
    assert await kb._store.ids() == []


async def test_a_failed_rm_keeps_everything(
    kb: KnowledgeBase, tmp_path: Path, data_dir: Path, engine: AsyncEngine
) -> None:
    await kb.ingest_path(write(tmp_path, "faq.csv", FAQ_CSV))
    await abort_on(engine, "no_rm", "DELETE", "knowledge_document")
    with pytest.raises(StoreError, match=r"cannot remove 'faq.csv'"):
        await kb.delete("faq.csv")
    assert await found(kb) == {"faq.csv"}
    reopened = await KnowledgeBase.open(config(data_dir), engine)
    try:  # the chunk rows deleted before the abort came back with the rollback
        assert await found(reopened) == {"faq.csv"}
        assert len(await reopened.stored_chunks("faq.csv")) == 2
    finally:
        await reopened.close()
    async with engine.begin() as conn:
        await conn.execute(sa.text("DROP TRIGGER no_rm"))
    assert await kb.delete("faq.csv")
    assert await found(kb) == set()
    assert await kb.documents() == []


async def test_a_copy_under_another_name_is_a_warning_and_refused_when_strict(
    kb: KnowledgeBase, tmp_path: Path
) -> None:
    await kb.ingest_path(write(tmp_path, "faq.csv", FAQ_CSV))
    copy = write(tmp_path, "faq (1).csv", FAQ_CSV.replace("问题,答案", "question,answer"))
    ids = sorted(await kb._store.ids())
    with pytest.raises(LoaderError, match=r"refused under --strict \(1 warning\)"):
        await kb.ingest_path(copy, strict=True)
    assert [d.doc_id for d in await kb.documents()] == ["faq.csv"]
    assert sorted(await kb._store.ids()) == ids
    report = await kb.ingest_path(copy)
    assert report.warnings == (
        "faq (1).csv: 2 of its 2 entries are already in 'faq.csv' (which has 2 entries): a copy "
        "of that file under another name? Remove the one not wanted (siyu docs rm ID), or "
        "ignore this warning if both are meant",
    )
    # A file that repeats all of a smaller one and adds rows overlaps it too.
    more = FAQ_CSV + "营业时间？,十点到十点。,\n" * 1 + "停车吗？,免费两小时。,\n"
    bigger = await kb.ingest_path(write(tmp_path, "faq-2027.csv", more))
    assert len(bigger.warnings) == 1
    assert "2 of its 4 entries are already in" in bigger.warnings[0]


async def test_the_same_rows_for_other_stores_are_not_a_copy(
    kb: KnowledgeBase, tmp_path: Path
) -> None:
    text = "问题,答案,门店\n会员积分怎么兑换？,积分满100分可抵扣1元。,{}\n"
    await kb.ingest_path(write(tmp_path, "a.csv", text.format("sz-nanshan")))
    report = await kb.ingest_path(write(tmp_path, "b.csv", text.format("sz-futian")))
    assert not [w for w in report.warnings if "already in" in w]


async def test_strict_refuses_loader_warnings_and_writes_nothing(
    kb: KnowledgeBase, tmp_path: Path
) -> None:
    path = write(tmp_path, "faq.csv", FAQ_CSV.replace("相似问题", "负责人"))
    with pytest.raises(LoaderError, match="column 3 '负责人': not used") as caught:
        await kb.ingest_path(path, strict=True)
    assert str(caught.value).startswith("faq.csv: refused under --strict (1 warning):\n  ⚠ ")
    assert await kb.documents() == []
    assert load_path(path).warnings  # the plain ingest loads it, with the warning
    assert (await kb.ingest_path(path)).chunks == 2


async def test_progress_counts_entries_and_ends_at_the_report(
    kb: KnowledgeBase, tmp_path: Path
) -> None:
    path = write(tmp_path, "faq.csv", FAQ_CSV)  # 2 entries, 4 index texts
    calls: list[tuple[int, int]] = []
    report = await kb.ingest_path(path, progress=lambda d, t: calls.append((d, t)))
    assert {t for _, t in calls} == {report.chunks}
    assert calls[-1] == (2, 2)
    assert [d for d, _ in calls] == sorted(d for d, _ in calls)
    calls.clear()
    again = await kb.ingest_path(path, progress=lambda d, t: calls.append((d, t)))
    assert again.unchanged
    assert calls == [(2, 2)]
