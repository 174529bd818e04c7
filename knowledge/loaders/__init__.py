"""Loading uploaded files into :class:`~knowledge.types.SourceDocument` values.

    doc = load_path(Path("promotions/双十一.md"), MetaOverrides(store_id="sh-xuhui"))
    doc = load_bytes("promotions.csv", upload_bytes, stores=catalogue.stores)

The file's suffix picks the parser (:data:`SUPPORTED_SUFFIXES`): Markdown (front matter, headings,
Q/A sections, record tables), plain text, CSV/XLSX/JSON tables (QA, product, store or promotion,
told apart by their headers: :mod:`knowledge.loaders.shapes`), PDF, DOCX. Metadata is merged as
``row columns > overrides (the ingest call) > table shape (a product table's kind) > front matter /
JSON meta > format defaults > faq, all stores, no validity bounds`` (see
:mod:`knowledge.metadata`). Store scopes (row cells, front matter, the call's ``store_id``) are
resolved to store ids through ``stores`` (:mod:`knowledge.loaders.scope`: without a directory
they are kept verbatim). Product codes found in any chunk's text are added to its ``skus``
(:func:`extract_skus`).

A file loads whole or not at all. Every failure is a :class:`~knowledge.errors.LoaderError` (or
:class:`~knowledge.errors.UnsupportedFormat`) or a :class:`~knowledge.errors.MetadataError`, one
line naming the file (and the row and column when a cell is at fault); parsers' own exceptions
never escape. What a file holds but the load does not use (a column no field reads, a QA row
without an answer) is a warning in :attr:`SourceDocument.warnings`, naming the file and the row or
column; a column that looks like metadata (dates, stores) is an error instead (see
:mod:`knowledge.loaders.unused`). Size limits on uploads are the caller's business.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import replace
from datetime import tzinfo
from pathlib import Path, PurePosixPath
from typing import Final
from zoneinfo import ZoneInfo

from knowledge.errors import LoaderError, UnsupportedFormat
from knowledge.loaders.documents import parse_docx, parse_pdf, parse_text
from knowledge.loaders.hashing import content_hash
from knowledge.loaders.jsonfile import parse_json
from knowledge.loaders.markdown import parse_markdown
from knowledge.loaders.parsed import Parsed, Piece
from knowledge.loaders.scope import LoadContext
from knowledge.loaders.sheets import parse_csv, parse_xlsx
from knowledge.loaders.skus import extract_skus
from knowledge.metadata import MetaOverrides, PartialMeta, from_overrides, resolve
from knowledge.records import StoreDirectory
from knowledge.types import ChunkDraft, SourceDocument

__all__ = [
    "DEFAULT_TZ",
    "SUPPORTED_SUFFIXES",
    "MetaOverrides",
    "content_hash",
    "extract_skus",
    "load_bytes",
    "load_path",
]

Parser = Callable[[str, bytes, LoadContext], Parsed]

DEFAULT_TZ: Final = ZoneInfo("Asia/Shanghai")
"""The zone naive dates and times in files are read in."""

_PARSERS: Final[Mapping[str, Parser]] = {
    ".md": parse_markdown,
    ".markdown": parse_markdown,
    ".txt": parse_text,
    ".csv": parse_csv,
    ".xlsx": parse_xlsx,
    ".json": parse_json,
    ".pdf": parse_pdf,
    ".docx": parse_docx,
}

SUPPORTED_SUFFIXES: Final[frozenset[str]] = frozenset(_PARSERS)

_NO_OVERRIDES: Final = MetaOverrides()
_NOTHING: Final = PartialMeta()


def load_path(
    path: Path,
    overrides: MetaOverrides = _NO_OVERRIDES,
    *,
    tz: tzinfo = DEFAULT_TZ,
    stores: StoreDirectory | None = None,
) -> SourceDocument:
    """Load a file from disk; the source name defaults to the file name. ``stores`` resolves
    store names in scopes (None or empty: scopes are kept as written, as store ids)."""
    parser = _parser_for(path.name)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise LoaderError(path.name, f"cannot read {path}: {exc.strerror or exc}") from exc
    return _load(path.name, data, overrides, LoadContext(tz, stores), parser)


def load_bytes(
    name: str,
    data: bytes,
    overrides: MetaOverrides = _NO_OVERRIDES,
    *,
    tz: tzinfo = DEFAULT_TZ,
    stores: StoreDirectory | None = None,
) -> SourceDocument:
    """Load an upload; the suffix of ``name`` picks the parser (directories in it are dropped).
    ``stores`` as for :func:`load_path`."""
    base = PurePosixPath(name.replace("\\", "/")).name
    return _load(base, data, overrides, LoadContext(tz, stores), _parser_for(base))


def _parser_for(name: str) -> Parser:
    suffix = PurePosixPath(name).suffix.lower()
    parser = _PARSERS.get(suffix)
    if parser is None:
        supported = " ".join(sorted(SUPPORTED_SUFFIXES))
        what = f"file type {suffix!r}" if suffix else "a file without an extension"
        raise UnsupportedFormat(name or "(unnamed)", f"cannot load {what}; supported: {supported}")
    return parser


def _load(
    name: str, data: bytes, overrides: MetaOverrides, ctx: LoadContext, parser: Parser
) -> SourceDocument:
    if not data or data.isspace():
        raise LoaderError(name, "the file is empty")
    parsed = parser(name, data, ctx)
    call = ctx.scoped(from_overrides(overrides, ctx.tz), f"{name}, the ingest call's store_id")
    meta = resolve((call, parsed.file_meta, parsed.defaults), source=name, where=name)
    chunks = tuple(_finish(piece, call, parsed, name) for piece in parsed.pieces)
    if not chunks:
        raise LoaderError(name, "no text to index")
    return SourceDocument(meta, chunks, content_hash(meta, chunks), tuple(ctx.warnings))


def _finish(piece: Piece, call: PartialMeta, parsed: Parsed, source: str) -> ChunkDraft:
    """Add detected product codes and resolve a row's own metadata over the document's."""
    draft = piece.draft
    skus = tuple(dict.fromkeys((*draft.skus, *extract_skus(draft.text))))
    if piece.row_meta is None and piece.shape_meta is None:
        return draft if skus == draft.skus else replace(draft, skus=skus)
    layers = (
        piece.row_meta or _NOTHING, call, piece.shape_meta or _NOTHING,
        parsed.file_meta, parsed.defaults,
    )  # fmt: skip
    meta = resolve(layers, source=source, where=piece.where or source)
    return replace(draft, skus=skus, meta=meta)
