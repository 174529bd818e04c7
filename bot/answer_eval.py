"""``siyu eval answers``: how many of a brand's member questions the bot answers right.

The knowledge files are loaded into a fresh temporary data dir (their own SQLite database and
Chroma collection; nothing of the operator's data is touched), then every question goes through
the same answerer as a member's message, as a member of its ``store_id``, now. Each line of the
questions file (the format of ``../shared/data/retail-qa/make_kb.py``)::

    {"id", "category", "store_id", "question",
     "must_all": [...], "must_any": [...], "must_not": [...]}

A reply passes when it contains every string of ``must_all``, at least one of ``must_any`` (when
given) and none of ``must_not``. The report gives the pass rate overall and per category, and
each failure with its reply. Questions are asked now, or at noon of ``--today`` in
``SIYU_TIMEZONE``: pass the day the files were generated for (``make_kb.py --today``), since a
"today only" promotion is judged in the brand's time zone.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from bot.app import App
from bot.clock import utc_now
from bot.errors import ConfigError
from bot.ingesting import ingest_files
from bot.settings import Settings
from knowledge.metadata import MetaOverrides


@dataclass(frozen=True, slots=True)
class Question:
    """One graded member question."""

    id: str
    category: str
    store_id: str | None
    question: str
    must_all: tuple[str, ...] = ()
    must_any: tuple[str, ...] = ()
    must_not: tuple[str, ...] = ()

    def passes(self, reply: str) -> bool:
        """The grading rule of the module docstring."""
        if any(s not in reply for s in self.must_all):
            return False
        if self.must_any and not any(s in reply for s in self.must_any):
            return False
        return not any(s in reply for s in self.must_not)


@dataclass
class Tally:
    """Passes and totals per category, and the failures."""

    total: dict[str, int] = field(default_factory=dict)
    passed: dict[str, int] = field(default_factory=dict)
    failures: list[dict[str, Any]] = field(default_factory=list)

    def add(self, q: Question, reply: str) -> None:
        self.total[q.category] = self.total.get(q.category, 0) + 1
        if q.passes(reply):
            self.passed[q.category] = self.passed.get(q.category, 0) + 1
            return
        self.failures.append(
            {"id": q.id, "category": q.category, "store_id": q.store_id,
             "question": q.question, "reply": reply, "must_all": list(q.must_all),
             "must_any": list(q.must_any), "must_not": list(q.must_not)}
        )  # fmt: skip

    def report(self, *, llm: bool, loaded: int, refused: Sequence[str]) -> dict[str, Any]:
        n, ok = sum(self.total.values()), sum(self.passed.values())
        per = {c: round(self.passed.get(c, 0) / t, 3) for c, t in sorted(self.total.items())}
        return {
            "mode": "llm" if llm else "offline",
            "files_loaded": loaded,
            "files_refused": list(refused),
            "questions": n,
            "passed": ok,
            "pass_rate": round(ok / n, 3) if n else 0.0,
            "per_category": per,
            "failures": self.failures,
        }


def read_questions(path: Path) -> list[Question]:
    """The questions file; a malformed line is a ConfigError naming its line number."""
    out = []
    for number, line in enumerate(path.read_text("utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            out.append(_question(json.loads(line), number))
        except (ValueError, KeyError, TypeError) as exc:
            raise ConfigError(f"{path.name} line {number}: not a question ({exc})") from exc
    return out


def _question(row: dict[str, Any], number: int) -> Question:
    return Question(
        id=str(row.get("id", number)), category=str(row.get("category", "")),
        store_id=row.get("store_id") or None, question=str(row["question"]),
        must_all=tuple(row.get("must_all", ())), must_any=tuple(row.get("must_any", ())),
        must_not=tuple(row.get("must_not", ())),
    )  # fmt: skip


def knowledge_files(kb: Path) -> list[Path]:
    """Every file under ``kb`` (recursively), in path order."""
    return sorted(p for p in kb.rglob("*") if p.is_file() and not p.name.startswith("."))


async def evaluate_answers(
    kb: Path,
    questions: Path,
    settings: Settings,
    *,
    llm: bool = False,
    at: datetime | None = None,
) -> dict[str, Any]:
    """Load ``kb`` into a temporary data dir, ask every question as of ``at`` (default now),
    grade the replies."""
    asked = read_questions(questions)
    with tempfile.TemporaryDirectory(prefix="siyu-eval-") as tmp:
        update: dict[str, Any] = {
            "data_dir": Path(tmp), "database_url": None,
            "knowledge": settings.knowledge.model_copy(
                update={"chroma_url": None, "refresh_seconds": 0.0}
            ),
        }  # fmt: skip
        if not llm:
            update["llm"] = settings.llm.model_copy(update={"model": None})
        elif not settings.llm.enabled:
            raise ConfigError("--llm needs an LLM (SIYU_LLM_MODEL and SIYU_LLM_BASE_URL)")
        app = await App.build(settings.model_copy(update=update))
        try:
            results = await ingest_files(app.knowledge, knowledge_files(kb), MetaOverrides())
            refused = [f"{r.path.name}: {r.error}" for r in results if r.error]
            tally = Tally()
            for q in asked:
                tally.add(
                    q, await app.preview_answer(q.question, store_id=q.store_id, at=utc_now())
                )
        finally:
            await app.close()
    return tally.report(llm=llm, loaded=len(results) - len(refused), refused=refused)
