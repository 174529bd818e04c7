"""What a load needs besides the bytes: the time zone of naive dates and the store directory.

A store scope (a promotion row's 适用门店 cell, a front matter ``store_id``/``stores``/``适用门店``,
the ingest call's ``store_id``) is a list of tokens: store ids, store names or aliases
(``深圳南山店、深圳福田店``), or a word meaning every store (``全部门店``, ``all``, which
:func:`knowledge.metadata.parse_stores` has already turned into "every store"). Each token is
resolved to a store id with :meth:`knowledge.records.StoreDirectory.resolve`; a token the directory
does not know is a :class:`~knowledge.errors.MetadataError` naming the file, row and column, so a
promotion never silently misses the store it was written for.

Decision: when there is no directory (``stores=None``) or it is empty (nothing defining stores has
been loaded yet), tokens are kept verbatim and taken to be store ids. That keeps a brand without a
store file working with ids, as before; a brand that writes store *names* must load its store file
first (``bot.ingesting`` orders a batch that way), or keep stores and promotions in one workbook:
the stores of a file's store table are added to the directory for the rest of that file. Not
silently, though: the tokens kept that way are one warning per file (at the first place), so
``--strict`` refuses scopes nobody could check.

A context also collects the load's warnings (:meth:`LoadContext.warn`): what a parser understood
but did not use — a column no field reads, rows it skipped. Copies made by :meth:`with_stores`
share the list, so every table of a file reports into the one document.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import tzinfo
from typing import Final

from knowledge.errors import MetadataError
from knowledge.metadata import META_KEYS, PartialMeta, normalise_key
from knowledge.records import StoreDirectory, store_of
from knowledge.types import Chunk, ChunkDraft, DocumentMeta, Kind

_LISTED: Final = 8
_UNCHECKED: Final = "no store directory is loaded, so these stores are kept as store ids unchecked:"
_FIRST: Final = "(ingest the store file first, or in the same command)"
"""How many known stores an "unknown store" message lists."""


@dataclass(frozen=True, slots=True)
class LoadContext:
    """The zone naive dates are read in and the directory store names resolve through."""

    tz: tzinfo
    stores: StoreDirectory | None = None
    warnings: list[str] = field(default_factory=list, compare=False)
    """The load's warnings so far, in the order found (see :meth:`warn`)."""

    def warn(self, message: str) -> None:
        """Record one warning line (``"faq.csv, column 4 '负责人': not used …"``)."""
        if message not in self.warnings:
            self.warnings.append(message)

    def store_ids(self, tokens: tuple[str, ...], where: str) -> tuple[str, ...]:
        """Each token's store id (verbatim without a directory, with a warning); unknown →
        MetadataError."""
        directory = self.stores
        if not directory:
            for token in tokens:
                self._unchecked(token, where)
            return tokens
        return tuple(dict.fromkeys(_resolve(directory, token, where) for token in tokens))

    def _unchecked(self, token: str, where: str) -> None:
        """One warning per file, at the first place, naming every store id kept unchecked."""
        at = next((i for i, w in enumerate(self.warnings) if _UNCHECKED in w), None)
        if at is None:
            self.warnings.append(f"{where}: {_UNCHECKED} {token!r} {_FIRST}")
            return
        head, _, rest = self.warnings[at].partition(f"{_UNCHECKED} ")
        tokens, _, _ = rest.partition(f" {_FIRST}")
        if repr(token) not in tokens.split(", "):
            self.warnings[at] = f"{head}{_UNCHECKED} {tokens}, {token!r} {_FIRST}"

    def with_stores(self, source: str, drafts: Sequence[ChunkDraft]) -> LoadContext:
        """This context with the stores of ``drafts`` (store rows of the file being loaded) added
        to the directory, so a workbook's promotion sheet may name its store sheet's stores."""
        meta = DocumentMeta(source=source, kind=Kind.STORE)
        chunks = (Chunk("", source, 0, i, d, meta) for i, d in enumerate(drafts))
        own = [s for c in chunks if (s := store_of(c)) is not None]
        if not own:
            return self
        known = self.stores.stores if self.stores is not None else ()
        return replace(self, stores=StoreDirectory((*known, *own)))

    def scoped(self, layer: PartialMeta, where: str) -> PartialMeta:
        """``layer`` with its store tokens resolved to ids (``where`` names them in errors)."""
        if not layer.stores:
            return layer
        return replace(layer, stores=self.store_ids(layer.stores, where))


def scope_where(where: str, keys: Iterable[str]) -> str:
    """``where`` and the key holding the store scope: ``"p.md front matter, 适用门店"``."""
    key = next((k for k in keys if META_KEYS.get(normalise_key(k)) == "stores"), "")
    return f"{where}, {key}" if key else where


def _resolve(directory: StoreDirectory, token: str, where: str) -> str:
    store_id = directory.resolve(token)
    if store_id is None:
        raise MetadataError(f"{where}: unknown store {token!r}{_hint(directory, token)}")
    return store_id


def _hint(directory: StoreDirectory, token: str) -> str:
    close = difflib.get_close_matches(token, list(directory.names()), n=1, cutoff=0.6)
    guess = f" (did you mean {close[0]!r}?)" if close else ""
    known = [f"{s.name} ({s.store_id})" for s in directory.stores[:_LISTED]]
    more = ", …" if len(directory) > _LISTED else ""
    return f"{guess}; known stores: {', '.join(known)}{more}"
