"""Retrieval evaluation: metrics, input checks, and a run on a slice of faq-bq."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from knowledge.config import EmbeddingConfig, KnowledgeConfig
from knowledge.errors import LoaderError
from knowledge.evaluation import evaluate_retrieval, metrics, read_jsonl


def write_jsonl(path: Path, rows: list[dict[str, str]]) -> Path:
    path.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in rows), encoding="utf-8")
    return path


def test_metrics_from_gold_ranks() -> None:
    out = metrics([1, 3, None, 7])
    assert out == {"recall@1": 0.25, "recall@5": 0.5, "recall@10": 0.75, "mrr@10": 0.3690}


def test_bad_jsonl_is_a_loader_error(tmp_path: Path) -> None:
    bad = tmp_path / "faq.jsonl"
    bad.write_text('{"faq_id": "a", "faq_question": "q"}\n{not json}\n', encoding="utf-8")
    with pytest.raises(LoaderError, match="line 2"):
        read_jsonl(bad, ("faq_id", "faq_question"))
    missing = write_jsonl(tmp_path / "q.jsonl", [{"query": "q"}])
    with pytest.raises(LoaderError, match="faq_id"):
        read_jsonl(missing, ("query", "faq_id"))


async def test_tiny_benchmark_end_to_end(tmp_path: Path, engine: AsyncEngine) -> None:
    faq = write_jsonl(
        tmp_path / "faq.jsonl",
        [
            {"faq_id": "f1", "faq_question": "怎么申请退货"},
            {"faq_id": "f2", "faq_question": "会员积分怎么兑换"},
            {"faq_id": "f3", "faq_question": "门店营业时间是几点"},
        ],
    )
    queries = write_jsonl(
        tmp_path / "q.jsonl",
        [{"query": "我要退货怎么申请", "faq_id": "f1"}, {"query": "积分兑换", "faq_id": "f2"}],
    )
    config = KnowledgeConfig(data_dir=tmp_path / "unused", embedding=EmbeddingConfig("hash"))
    report = await evaluate_retrieval(faq, queries, config, engine)
    assert report["queries"] == 2
    assert report["recall@1"] == 1.0
    assert report["config"]["faq_entries"] == 3
    assert report["config"]["fusion"] == "weighted"
    assert set(report["dense"]) >= {"recall@1", "recall@5", "recall@10", "mrr@10"}
    assert report["keyword"]["recall@1"] == 1.0
    assert not (tmp_path / "unused").exists()  # the throw-away knowledge base lives elsewhere


async def test_faq_bq_slice_recalls_well_above_chance(
    shared_data: Path, tmp_path: Path, engine: AsyncEngine
) -> None:
    bq = shared_data / "faq-bq"
    queries = read_jsonl(bq / "queries.jsonl", ("query", "faq_id"))[:150]
    gold = {q["faq_id"] for q in queries}
    faq = read_jsonl(bq / "faq.jsonl", ("faq_id", "faq_question"))
    distractors = [r for r in faq if r["faq_id"] not in gold][:150]
    subset = [r for r in faq if r["faq_id"] in gold] + distractors
    faq_path = write_jsonl(tmp_path / "faq.jsonl", subset)
    q_path = write_jsonl(tmp_path / "queries.jsonl", queries)
    config = KnowledgeConfig(data_dir=tmp_path, embedding=EmbeddingConfig("hash"))
    report = await evaluate_retrieval(faq_path, q_path, config, engine, limit=120)
    chance_at_5 = 5 / len(subset)
    assert report["queries"] == 120
    # The hash embedder and char-BM25 reach about 0.4 at R@5 on the full set; chance is ~0.02.
    assert report["recall@5"] > 10 * chance_at_5
    assert report["keyword"]["recall@5"] > 10 * chance_at_5
    assert report["recall@10"] >= report["recall@5"] >= report["recall@1"]
