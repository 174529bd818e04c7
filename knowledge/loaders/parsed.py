"""What each format's parser hands back before metadata layers are merged."""

from __future__ import annotations

from dataclasses import dataclass, field

from knowledge.metadata import PartialMeta
from knowledge.types import ChunkDraft


@dataclass(frozen=True, slots=True)
class Piece:
    """A chunk draft (without effective metadata yet) and, for a table row, the row's own layer.

    ``where`` ("faq.csv row 7") locates the piece in the file for error messages. ``shape_meta``
    is what the row's table shape implies (a product table's rows are ``kind: product``); it sits
    below the ingest call and above the file's own metadata, so a product table inside a
    ``kind: policy`` document still yields products.
    """

    draft: ChunkDraft
    row_meta: PartialMeta | None = None
    where: str = ""
    shape_meta: PartialMeta | None = None


@dataclass(frozen=True, slots=True)
class Parsed:
    """A parsed file: its pieces, the metadata the file itself states, and format defaults.

    ``file_meta`` is front matter / a JSON ``meta`` object; ``defaults`` are what the format implies
    (a product table is ``kind: product``; a Markdown H1 is the title). The ingest call's overrides
    sit between the two.
    """

    pieces: tuple[Piece, ...]
    file_meta: PartialMeta = field(default_factory=PartialMeta)
    defaults: PartialMeta = field(default_factory=PartialMeta)
