"""Retrieval evaluation on an FAQ benchmark (``siyu eval retrieval --faq FILE --queries FILE``).

Input: the faq-bq jsonl formats, ``faq.jsonl`` lines ``{"faq_id", "faq_question"}`` and
``queries.jsonl`` lines ``{"query", "faq_id"}``. Every FAQ question becomes one QA chunk of one
document in a throw-away knowledge base (embedded Chroma in a temporary directory, the collection
``siyu-eval`` in the database the caller gives, whose schema the caller's migrations made: the
CLI uses a temporary SQLite) built with the given embedding and retrieval settings; every query
is searched three times: fused (the real path), dense only and keyword only, so the gain of
fusion is visible.

The figures of the current code, and the command that reproduces them, are in
``docs/measurements.md``.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Sequence
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

from knowledge.base import KnowledgeBase
from knowledge.config import KnowledgeConfig
from knowledge.errors import LoaderError
from knowledge.types import ChunkDraft, DocumentMeta, Kind, SourceDocument

PATHS: dict[str, tuple[str, ...]] = {
    "fused": ("sku", "dense", "keyword"),
    "dense": ("dense",),
    "keyword": ("keyword",),
}
CUTOFFS = (1, 5, 10)


def read_jsonl(path: Path, fields: Sequence[str]) -> list[dict[str, str]]:
    """Rows of a jsonl file, each checked to carry ``fields`` as strings."""
    rows = []
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise LoaderError(path.name, f"cannot read: {exc}") from exc
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise LoaderError(path.name, f"line {number}: not JSON ({exc.msg})") from exc
        if not isinstance(row, dict) or not all(isinstance(row.get(f), str) for f in fields):
            raise LoaderError(path.name, f"line {number}: needs string fields {list(fields)}")
        rows.append(row)
    return rows


def faq_document(faq: list[dict[str, str]]) -> SourceDocument:
    """One QA chunk per FAQ question, in file order."""
    meta = DocumentMeta(source="faq.jsonl", kind=Kind.FAQ)
    chunks = tuple(
        ChunkDraft(text=r["faq_question"], index_texts=(r["faq_question"],), answer=r["faq_id"])
        for r in faq
    )
    return SourceDocument(meta, chunks, content_hash="eval")


def metrics(ranks: Sequence[int | None]) -> dict[str, float]:
    """recall@1/5/10 and MRR@10 from the 1-based rank of each query's gold (None: not in top 10)."""
    n = max(len(ranks), 1)
    out = {f"recall@{k}": sum(1 for r in ranks if r is not None and r <= k) / n for k in CUTOFFS}
    out["mrr@10"] = sum(1.0 / r for r in ranks if r is not None and r <= 10) / n
    return {k: round(v, 4) for k, v in out.items()}


async def evaluate_retrieval(
    faq_path: Path,
    queries_path: Path,
    config: KnowledgeConfig,
    engine: AsyncEngine,
    *,
    limit: int | None = None,
) -> dict[str, Any]:
    """Recall and MRR of fused, dense-only and keyword-only retrieval (first ``limit`` queries),
    the knowledge base's rows in ``engine`` (a throw-away database: its collection ``siyu-eval``
    is replaced)."""
    faq = read_jsonl(faq_path, ("faq_id", "faq_question"))
    queries = read_jsonl(queries_path, ("query", "faq_id"))[:limit]
    if not faq:
        raise LoaderError(faq_path.name, "no FAQ entries to search")
    with tempfile.TemporaryDirectory(prefix="siyu-eval-") as tmp:
        run_config = replace(config, data_dir=Path(tmp), chroma_url=None, collection="siyu-eval")
        kb = await KnowledgeBase.open(run_config, engine)
        try:
            await kb.ingest(faq_document(faq), doc_id="faq")
            report = await _run(kb, queries)
        finally:
            await kb.close()
    fused = report.pop("fused")
    return {
        "queries": len(queries),
        **fused,
        "config": {
            "faq_entries": len(faq),
            "embedding": config.embedding.backend,
            **asdict(config.retrieval),
            "threshold": kb.threshold,
        },
        **report,
    }


async def _run(kb: KnowledgeBase, queries: list[dict[str, str]]) -> dict[str, dict[str, float]]:
    out: dict[str, dict[str, float]] = {}
    for name, paths in PATHS.items():
        ranks: list[int | None] = []
        found = 0
        for q in queries:
            result = await kb.search(q["query"], top_k=10, paths=paths)
            answers = [h.chunk.draft.answer for h in result.hits]
            ranks.append(answers.index(q["faq_id"]) + 1 if q["faq_id"] in answers else None)
            found += result.found
        out[name] = {**metrics(ranks), "found_rate": round(found / max(len(queries), 1), 4)}
    return out
