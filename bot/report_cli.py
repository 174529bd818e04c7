"""``siyu report``: what happened in conversations over a period, as JSON.

Counts come from the message log (:meth:`bot.store.Store.counts`): messages members sent, the
distinct members who sent them, replies by how they were answered (``llm``, ``extractive``,
``retail``, ``smalltalk``, ``not_found``, ``command``, ``error``), handoffs to a person and, among
them, complaints. The period is ``--days`` days from ``--since`` (a date or date and time in the
brand's timezone), or the last ``--days`` days up to now. It reads the database only; the
knowledge base is not opened.
"""

from __future__ import annotations

import asyncio
import json
from datetime import datetime, timedelta, tzinfo
from typing import Annotated, Any, Final

import typer

from bot.db import create_engine
from bot.schema import upgrade
from bot.settings import Settings
from bot.store import HANDOFF_KINDS, Counts, Store
from knowledge.errors import KnowledgeError
from knowledge.metadata import parse_datetime

ANSWER_KINDS: Final = (
    "llm", "extractive", "retail", "smalltalk", "not_found", "command", "error",
)  # fmt: skip
"""Always present in the report's ``answered``, zero or not, so dashboards see stable keys."""


def report_dict(counts: Counts, since: datetime, until: datetime, tz: tzinfo) -> dict[str, Any]:
    """The report as printed: the period in the brand's timezone, then the counts."""
    answered = dict.fromkeys(ANSWER_KINDS, 0)
    for kind, n in counts.replies.items():
        if kind not in HANDOFF_KINDS:
            answered[kind] = answered.get(kind, 0) + n
    return {
        "since": since.astimezone(tz).isoformat(),
        "until": until.astimezone(tz).isoformat(),
        "messages": counts.messages,
        "members": counts.members,
        "answered": answered,
        "handoffs": counts.handoffs,
        "complaints": counts.complaints,
    }


def period(since: str | None, days: int, tz: tzinfo, now: datetime) -> tuple[datetime, datetime]:
    """``[since, since + days)``, or the last ``days`` days up to ``now``."""
    if since is None:
        return now - timedelta(days=days), now
    start = parse_datetime(since, tz)
    return start, start + timedelta(days=days)


async def conversation_report(
    settings: Settings, since: datetime, until: datetime
) -> dict[str, Any]:
    """Count the period's conversations in the configured database."""
    engine = create_engine(settings.resolved_database_url)
    try:
        await upgrade(engine)
        counts = await Store(engine).counts(since, until)
    finally:
        await engine.dispose()
    return report_dict(counts, since, until, settings.bot.timezone)


def report(
    since: Annotated[
        str | None,
        typer.Option(help="First day (or date and time) of the period, in the brand's timezone."),
    ] = None,
    days: Annotated[int, typer.Option(min=1, help="Length of the period in days.")] = 7,
) -> None:
    """Conversation counts over a period as JSON: messages, answers by kind, handoffs,
    complaints."""
    settings = Settings()
    tz = settings.bot.timezone
    try:
        start, end = period(since, days, tz, datetime.now(tz))
    except KnowledgeError as exc:
        raise typer.BadParameter(str(exc), param_hint="--since") from exc
    result = asyncio.run(conversation_report(settings, start, end))
    typer.echo(json.dumps(result, ensure_ascii=False, indent=2))
