"""Does a document repeat one already stored under another id? (A sheet re-saved as a new file.)

Re-saving ``faq.csv`` as ``faq (1).csv`` and ingesting both doubles every entry, and search then
returns each answer twice. :func:`duplicate_warning` compares a document's entries with every
other stored document's, by a normalised key: the entry's text (NFKC, lower-case, without
whitespace) with its effective store scope and validity, so the same promotion written once per
store is not a duplicate, and no embedding is needed.

Decision: two documents overlap when at least :data:`OVERLAP` (80%) of the entries of either
one are in the other (a new file that repeats all of an old one and adds rows counts too). The
document still loads; the warning names the other document (``siyu ingest --strict`` refuses
it). Disabled documents count: enabling one later would bring the duplicates back.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable
from typing import Final

from knowledge.types import Chunk, DocumentMeta, SourceDocument

OVERLAP: Final = 0.8
"""The share of either document's entries found in the other from which they overlap."""

EntryKey = tuple[str, tuple[str, ...], str, str]


def entry_key(text: str, meta: DocumentMeta) -> EntryKey:
    """What two entries share when one repeats the other."""
    plain = "".join(unicodedata.normalize("NFKC", text).lower().split())
    start = meta.valid_from.isoformat() if meta.valid_from else ""
    end = meta.valid_to.isoformat() if meta.valid_to else ""
    return plain, tuple(sorted(meta.stores)), start, end


def chunk_key(chunk: Chunk) -> EntryKey:
    """:func:`entry_key` of a stored chunk."""
    return entry_key(chunk.draft.text, chunk.meta)


def duplicate_warning(
    doc_id: str, doc: SourceDocument, stored: Iterable[tuple[str, EntryKey]]
) -> str | None:
    """A warning naming the stored document ``doc`` overlaps most, or None (see the module doc).

    ``stored`` holds (doc id, :func:`chunk_key`) of every stored chunk; ``doc_id``'s own are
    ignored.
    """
    mine = {entry_key(d.text, d.meta or doc.meta) for d in doc.chunks}
    if not mine:
        return None
    others: dict[str, set[EntryKey]] = {}
    for other_id, key in stored:
        if other_id != doc_id:
            others.setdefault(other_id, set()).add(key)
    best = max(_scored(mine, others.items()), default=None)
    if best is None or best[0] < OVERLAP:
        return None
    _, shared, other, other_size = best
    verb = "is" if shared == 1 else "are"
    return (
        f"{doc_id}: {shared} of its {_entries(len(mine))} {verb} already in {other!r} (which has "
        f"{_entries(other_size)}): a copy of that file under another name? Remove the one not "
        f"wanted (siyu docs rm ID), or ignore this warning if both are meant"
    )


def _entries(n: int) -> str:
    return f"{n} entr{'y' if n == 1 else 'ies'}"


def _scored(
    mine: set[EntryKey], others: Iterable[tuple[str, set[EntryKey]]]
) -> Iterable[tuple[float, int, str, int]]:
    for other, keys in others:
        shared = len(mine & keys)
        if shared:
            yield max(shared / len(mine), shared / len(keys)), shared, other, len(keys)
