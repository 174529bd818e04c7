"""Loading several knowledge files in one go, store directory first.

A promotion's store scope may name stores ("深圳南山店、深圳福田店"); the loaders resolve those
names through the store directory the knowledge base already holds. So files that define stores
(every chunk of kind ``store``) are ingested before the others, whatever order the operator gave.
A file that cannot be loaded is reported with its reason and the others still load; the caller
decides what a refusal means (``siyu ingest`` exits non-zero). A loaded file's warnings (unused
columns, skipped rows, a copy of another document) travel in its report; ``strict`` refuses a
file with any.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from knowledge.base import IngestReport, KnowledgeBase, Progress
from knowledge.errors import KnowledgeError
from knowledge.loaders import load_path
from knowledge.metadata import MetaOverrides
from knowledge.types import Kind


@dataclass(frozen=True, slots=True)
class FileResult:
    """What became of one file: its ingest report, or the error that refused it."""

    path: Path
    report: IngestReport | None = None
    error: str | None = None

    @property
    def warnings(self) -> tuple[str, ...]:
        """The loaded file's warnings (none for a refused file: its error says it all)."""
        return self.report.warnings if self.report is not None else ()


def defines_stores(path: Path) -> bool:
    """True when ``path`` loads as store records only (a store directory file)."""
    try:
        doc = load_path(path)
    except KnowledgeError:
        return False
    kinds = {(c.meta or doc.meta).kind for c in doc.chunks}
    return kinds == {Kind.STORE}


async def ingest_files(
    knowledge: KnowledgeBase,
    paths: Sequence[Path],
    overrides: MetaOverrides,
    *,
    progress: Callable[[Path], Progress | None] = lambda _: None,
    done: Callable[[FileResult], None] = lambda _: None,
    strict: bool = False,
) -> list[FileResult]:
    """Ingest ``paths`` (store files first); one result per file, in ingest order. ``strict``:
    a file with any warning is refused."""
    firsts = await asyncio.gather(*(asyncio.to_thread(defines_stores, p) for p in paths))
    ordered = [p for p, first in zip(paths, firsts, strict=True) if first]
    ordered += [p for p, first in zip(paths, firsts, strict=True) if not first]
    results = []
    for path in ordered:
        try:
            report = await knowledge.ingest_path(
                path, overrides, progress=progress(path), strict=strict
            )
            result = FileResult(path, report=report)
        except KnowledgeError as exc:
            result = FileResult(path, error=str(exc))
        done(result)
        results.append(result)
    return results
