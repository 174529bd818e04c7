"""Prose files without structure: plain text, PDF (pypdf) and DOCX (docx2txt).

Text is packed into chunks by :func:`knowledge.chunking.pack_text` (sentences, then chunks with
overlap); ``#`` lines in a .txt file are text, not headings. PDF pages are chunked one by one, so
a chunk never spans two pages and its heading names the page ("第 3 页"). Parser failures of any
kind become :class:`LoaderError`: an upload must never crash the caller.
"""

from __future__ import annotations

import io
import zipfile
from typing import Final

import docx2txt
from pypdf import PdfReader

from knowledge.chunking import MAX_CHARS, OVERLAP, pack_text
from knowledge.errors import LoaderError
from knowledge.loaders.parsed import Parsed, Piece
from knowledge.loaders.scope import LoadContext
from knowledge.loaders.textio import decode_bytes
from knowledge.types import ChunkDraft

_MAX_DOCX_UNPACKED: Final = 64 * 1024 * 1024
"""Refuse DOCX archives that unpack to more than this (a zip bomb would exhaust memory)."""


def parse_text(name: str, data: bytes, ctx: LoadContext) -> Parsed:
    """Plain text: decode, then pack sentences into chunks."""
    return Parsed(_prose(decode_bytes(name, data)))


def parse_pdf(name: str, data: bytes, ctx: LoadContext) -> Parsed:
    """A PDF with a text layer: one run of chunks per page."""
    pages = _pdf_pages(name, data)
    pieces = tuple(
        p for number, page in enumerate(pages, 1) for p in _prose(page, f"第 {number} 页")
    )
    if not pieces:
        raise LoaderError(name, "the PDF has no extractable text (a scanned PDF needs OCR first)")
    return Parsed(pieces)


def parse_docx(name: str, data: bytes, ctx: LoadContext) -> Parsed:
    """A Word document: its text (headers, body, footers), packed into chunks."""
    _check_docx_archive(name, data)
    try:
        text: str = docx2txt.process(io.BytesIO(data))
    except Exception as exc:  # zipfile, XML and KeyError failures from a broken document
        raise LoaderError(name, f"not a readable .docx file ({type(exc).__name__}: {exc})") from exc
    pieces = _prose(text)
    if not pieces:
        raise LoaderError(name, "the document has no text")
    return Parsed(pieces)


def _pdf_pages(name: str, data: bytes) -> list[str]:
    try:
        reader = PdfReader(io.BytesIO(data))
        if reader.is_encrypted and not reader.decrypt(""):
            raise LoaderError(name, "the PDF is password-protected")
        return [page.extract_text() or "" for page in reader.pages]
    except LoaderError:
        raise
    except Exception as exc:  # pypdf raises many types (PdfReadError, ValueError, KeyError...)
        raise LoaderError(name, f"not a readable PDF ({type(exc).__name__}: {exc})") from exc


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
