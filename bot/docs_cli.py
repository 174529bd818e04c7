"""``siyu docs``: list, show, remove, disable and enable the knowledge base's documents.

Part of the composition root (with ``bot.cli``, which registers :data:`docs_app`):

- ``siyu docs``: one row per document, with summaries that stay true for a sheet whose rows carry
  their own kinds, stores and dates: kinds (``promotion×5``, ``faq×3, promotion×2``), stores
  (``all``, ``sz-nanshan``, ``3 stores``, or ``per entry (3 stores)`` when entries differ),
  validity (``2026-12-01 → 2026-12-08``; ``per entry: 2026-12-01 → 2026-12-31``, the earliest
  start and the latest end, when entries differ; ``-`` for no bound), and whether the document
  is enabled.
- ``siyu docs show ID``: each entry's kind, stores, validity and the start of its text.
- ``siyu docs rm ID`` / ``disable ID`` / ``enable ID``: each one step that leaves either the old
  or the new state (see :mod:`knowledge.base`); a disabled document is kept but not searched and
  not in the retail catalogue; enabling it does not embed anything again.

An unknown ID is one line and exit status 1. Dates show in the brand's time zone; a bound at
midnight (or at the end of a day) shows as the date alone.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime, time, tzinfo
from typing import Annotated, Final, TypeVar

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Column, Table

from bot.app import App
from bot.settings import Settings
from knowledge.registry import DocumentInfo
from knowledge.types import Chunk, DocumentMeta

docs_app = typer.Typer(
    help="List the knowledge documents (no command), or show / rm / disable / enable one.",
    invoke_without_command=True,
)
console = Console()

T = TypeVar("T")
_TEXT: Final = 40
_PIPE_WIDTH: Final = 240
_ID = Annotated[str, typer.Argument(help="The document's id, as `siyu docs` lists it.")]


@dataclass(frozen=True, slots=True)
class Summary:
    """What a document's entries say about kinds, stores and validity, as shown in the listing."""

    kinds: str
    stores: str
    validity: str


def summarise(chunks: Sequence[Chunk], tz: tzinfo) -> Summary:
    """The listing's columns for one document's entries (see the module doc)."""
    kinds = Counter(c.meta.kind.value for c in chunks)
    kinds_text = ", ".join(f"{k}×{n}" for k, n in kinds.most_common()) or "-"
    return Summary(kinds_text, _stores(chunks), _validity(chunks, tz))


def window(meta: DocumentMeta, tz: tzinfo) -> str:
    """``2026-12-01 → 2026-12-08``; ``-`` for a side without a bound, ``-`` for none at all."""
    if meta.valid_from is None and meta.valid_to is None:
        return "-"
    return f"{_when(meta.valid_from, tz)} → {_when(meta.valid_to, tz)}"


def _stores(chunks: Sequence[Chunk]) -> str:
    scopes = {c.meta.stores for c in chunks}
    named = sorted({s for scope in scopes for s in scope})
    if not named:
        return "all"
    shown = named[0] if len(named) == 1 else f"{len(named)} stores"
    if len(scopes) == 1:
        return shown
    return f"per entry ({shown}{', some all' if () in scopes else ''})"


def _validity(chunks: Sequence[Chunk], tz: tzinfo) -> str:
    windows = {(c.meta.valid_from, c.meta.valid_to) for c in chunks}
    if len(windows) <= 1:
        return window(chunks[0].meta, tz) if chunks else "-"
    starts = [s for c in chunks if (s := c.meta.valid_from) is not None]
    ends = [e for c in chunks if (e := c.meta.valid_to) is not None]
    span = f"{_when(min(starts, default=None), tz)} → {_when(max(ends, default=None), tz)}"
    return f"per entry: {span}"


def _when(moment: datetime | None, tz: tzinfo) -> str:
    if moment is None:
        return "-"
    local = moment.astimezone(tz)
    if local.time() in (time.min, time.max):
        return local.date().isoformat()
    return local.strftime("%Y-%m-%d %H:%M")


@asynccontextmanager
async def _app() -> AsyncIterator[App]:
    app = await App.build(Settings())
    try:
        yield app
    finally:
        await app.close()


def _run(work: Callable[[App], Awaitable[T]]) -> T:
    async def main() -> T:
        async with _app() as app:
            return await work(app)

    return asyncio.run(main())


def _unknown(doc_id: str) -> typer.Exit:
    console.print(f"[red]✗ no document {escape(repr(doc_id))} (siyu docs lists them)[/red]")
    return typer.Exit(1)


@docs_app.callback()
def listing(ctx: typer.Context) -> None:
    """List the documents: kinds, stores, validity, version, entries and status."""
    if ctx.invoked_subcommand is not None:
        return

    async def show(app: App) -> None:
        tz = app.settings.bot.timezone
        chunks: dict[str, list[Chunk]] = {}
        for chunk in await app.knowledge.stored_chunks():
            chunks.setdefault(chunk.doc_id, []).append(chunk)
        doc_id = Column("doc_id", overflow="fold")  # shown whole: operators copy it
        table = Table(doc_id, "status", "kinds", "stores", "validity", "version", "entries")
        for d in await app.knowledge.documents():
            s = summarise(chunks.get(d.doc_id, []), tz)
            table.add_row(
                escape(d.doc_id), _status(d), s.kinds, escape(s.stores), s.validity,
                str(d.version), str(d.chunks),
            )  # fmt: skip
        _print(table)

    _run(show)


@docs_app.command("show")
def show(doc_id: _ID) -> None:
    """List a document's entries: kind, stores, validity and the start of each text."""

    async def main(app: App) -> DocumentInfo | None:
        info = next((d for d in await app.knowledge.documents() if d.doc_id == doc_id), None)
        if info is None:
            return None
        tz = app.settings.bot.timezone
        console.print(
            f"{escape(info.doc_id)}: v{info.version}, {info.chunks} entries, {_status(info)}"
        )
        table = Table("#", "kind", "stores", "validity", "text")
        for c in await app.knowledge.stored_chunks(doc_id):
            text = " ".join(c.draft.text.split())
            short = text if len(text) <= _TEXT else text[: _TEXT - 1] + "…"
            stores = ", ".join(c.meta.stores) or "all"
            table.add_row(
                str(c.ordinal + 1), c.meta.kind.value, escape(stores), window(c.meta, tz),
                escape(short),
            )  # fmt: skip
        _print(table)
        return info

    if _run(main) is None:
        raise _unknown(doc_id)


@docs_app.command("rm")
def rm(doc_id: _ID) -> None:
    """Remove a document and its entries (enabled or not)."""
    if not _run(lambda app: app.knowledge.delete(doc_id)):
        raise _unknown(doc_id)
    console.print(f"✓ removed {escape(doc_id)}")


@docs_app.command("disable")
def disable(doc_id: _ID) -> None:
    """Stop searching a document and leave it out of the catalogue; it stays stored."""
    if _run(lambda app: app.knowledge.disable(doc_id)) is None:
        raise _unknown(doc_id)
    console.print(f"✓ disabled {escape(doc_id)} (siyu docs enable {escape(doc_id)} brings it back)")


@docs_app.command("enable")
def enable(doc_id: _ID) -> None:
    """Search a disabled document again (nothing is re-embedded)."""
    if _run(lambda app: app.knowledge.enable(doc_id)) is None:
        raise _unknown(doc_id)
    console.print(f"✓ enabled {escape(doc_id)}")


def _print(table: Table) -> None:
    """A table as wide as it needs when the output is a file or a pipe (lines stay whole for grep
    and scripts); a terminal's width otherwise."""
    out = console if console.is_terminal else Console(file=console.file, width=_PIPE_WIDTH)
    out.print(table)


def _status(info: DocumentInfo) -> str:
    return "enabled" if info.enabled else "[yellow]disabled[/yellow]"
