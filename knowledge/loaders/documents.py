"""Documents: plain text, PDF (pdfplumber) and DOCX (python-docx).

Plain text is packed into chunks by :func:`knowledge.chunking.pack_text` (sentences, then chunks
with overlap); ``#`` lines in a .txt file are text, not headings.

A PDF or DOCX is read into headings, paragraphs and tables (:mod:`~knowledge.loaders.pdffile`,
:mod:`~knowledge.loaders.wordfile`) and chunked as Markdown is
(:mod:`~knowledge.loaders.structured`): one section per heading path, a PDF chunk never spans two
pages (text outside any heading is headed "第 3 页"), and each table row is an entry pairing header
and cell. The document's default title is the title its properties state, else its first heading.

Parser failures of any kind become :class:`LoaderError`: an upload must never crash the caller.
"""

from __future__ import annotations

import io
import zipfile
from typing import Final

from knowledge.chunking import MAX_CHARS, OVERLAP, pack_text
from knowledge.errors import LoaderError
from knowledge.loaders.parsed import Parsed, Piece
from knowledge.loaders.pdffile import read_pdf
from knowledge.loaders.scope import LoadContext
from knowledge.loaders.structured import first_heading, structured_pieces
from knowledge.loaders.textio import decode_bytes
from knowledge.loaders.wordfile import read_docx
from knowledge.metadata import PartialMeta
from knowledge.types import ChunkDraft

_MAX_DOCX_UNPACKED: Final = 64 * 1024 * 1024
"""Refuse DOCX archives that unpack to more than this (a zip bomb would exhaust memory)."""


def parse_text(name: str, data: bytes, ctx: LoadContext) -> Parsed:
    """Plain text: decode, then pack sentences into chunks."""
    return Parsed(_prose(decode_bytes(name, data)))


def parse_pdf(name: str, data: bytes, ctx: LoadContext) -> Parsed:
    """A PDF with a text layer: sections by page and heading, table rows as entries."""
    pdf = read_pdf(name, data)
    pieces = tuple(structured_pieces(name, pdf.pages, ctx, page_labels=True))
    if not pieces:
        raise LoaderError(name, "the PDF has no extractable text (a scanned PDF needs OCR first)")
    return Parsed(pieces, defaults=_titled(pdf.title or first_heading(pdf.pages)))


def parse_docx(name: str, data: bytes, ctx: LoadContext) -> Parsed:
    """A Word document: sections by heading style, table rows as entries, in document order."""
    _check_docx_archive(name, data)
    word = read_docx(name, data)
    pages = (word.elements,)
    pieces = tuple(structured_pieces(name, pages, ctx, page_labels=False))
    if not pieces:
        raise LoaderError(name, "the document has no text")
    return Parsed(pieces, defaults=_titled(word.title or first_heading(pages)))


def _titled(title: str) -> PartialMeta:
    return PartialMeta(title=title or None)


def _check_docx_archive(name: str, data: bytes) -> None:
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            if "word/document.xml" not in archive.namelist():
                raise LoaderError(name, "not a .docx file (word/document.xml is missing)")
            unpacked = sum(info.file_size for info in archive.infolist())
            if unpacked > _MAX_DOCX_UNPACKED:
                raise LoaderError(name, f"the document unpacks to over {_MAX_DOCX_UNPACKED} bytes")
            with archive.open("word/document.xml") as document:
                head = document.read(4096)
    except LoaderError:
        raise
    except Exception as exc:  # zipfile, zlib, EOF and encryption errors from a broken archive
        raise LoaderError(name, f"not a readable .docx file ({type(exc).__name__}: {exc})") from exc
    if b"<!DOCTYPE" in head.upper():
        raise LoaderError(name, "the document declares a DTD, which Word never writes: refused")


def _prose(text: str, heading: str = "") -> tuple[Piece, ...]:
    chunks = pack_text(text, max_chars=MAX_CHARS, overlap=OVERLAP)
    return tuple(Piece(ChunkDraft(text=chunk, heading=heading)) for chunk in chunks)
