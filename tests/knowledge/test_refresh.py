"""A running knowledge base picks up what another process ingests (``siyu ingest`` while
``siyu serve`` runs): the registry's fingerprint moves, the snapshot is rebuilt, and the dense
path finds the new entries although an embedded Chroma client does not see another process's
vectors by itself."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

from sqlalchemy.ext.asyncio import AsyncEngine

from knowledge.base import KnowledgeBase
from knowledge.config import EmbeddingConfig, KnowledgeConfig
from knowledge.loaders import load_path

FIRST = "question,answer\n门店几点开门？,每天早上8点开门。\n"
SECOND = "question,answer\n可以开发票吗？,可以，扫描小票二维码开具电子发票。\n"


def config(data_dir: Path, refresh_seconds: float = 0) -> KnowledgeConfig:
    return KnowledgeConfig(
        data_dir=data_dir,
        embedding=EmbeddingConfig(backend="hash"),
        refresh_seconds=refresh_seconds,
    )


async def ingest_in_another_process(data_dir: Path, path: Path) -> None:
    env = {
        **os.environ,
        "SIYU_DATA_DIR": str(data_dir),
        "SIYU_EMBEDDING": "hash",
        "SIYU_KNOWLEDGE_REFRESH_SECONDS": "0",
    }
    siyu = Path(sys.executable).with_name("siyu")
    proc = await asyncio.create_subprocess_exec(
        str(siyu), "ingest", str(path), cwd=path.parent, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    out, _ = await proc.communicate()
    assert proc.returncode == 0, out.decode()


async def test_refresh_sees_another_process_ingest(
    data_dir: Path, engine: AsyncEngine, tmp_path: Path
) -> None:
    first, second = tmp_path / "hours.csv", tmp_path / "invoice.csv"
    first.write_text(FIRST, encoding="utf-8")
    second.write_text(SECOND, encoding="utf-8")
    kb = await KnowledgeBase.open(config(data_dir), engine)
    try:
        await kb.ingest(load_path(first))
        assert not await kb.refresh()  # our own write is already served
        await ingest_in_another_process(data_dir, second)
        before = await kb.search("可以开发票吗", paths=("dense",))
        assert all(h.chunk.doc_id != "invoice.csv" for h in before.hits)

        assert await kb.refresh()
        after = await kb.search("可以开发票吗", paths=("dense",))
        assert after.best is not None
        assert after.best.chunk.doc_id == "invoice.csv"
        fused = await kb.search("可以开发票吗")
        assert fused.found
        assert "电子发票" in fused.hits[0].chunk.answer_text
        assert not await kb.refresh()
    finally:
        await kb.close()


async def test_background_watch_refreshes_by_itself(
    data_dir: Path, engine: AsyncEngine, tmp_path: Path
) -> None:
    second = tmp_path / "invoice.csv"
    second.write_text(SECOND, encoding="utf-8")
    kb = await KnowledgeBase.open(config(data_dir, refresh_seconds=0.05), engine)
    try:
        await ingest_in_another_process(data_dir, second)
        async with asyncio.timeout(30):
            while kb.chunk_count() == 0:  # noqa: ASYNC110 (observing a background task)
                await asyncio.sleep(0.05)
        assert (await kb.search("可以开发票吗")).found
    finally:
        await kb.close()
