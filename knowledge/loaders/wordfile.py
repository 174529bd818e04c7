"""Reading a Word document (python-docx) as headings, paragraphs and tables in document order.

A paragraph styled ``Title`` is a level-0 heading and one styled ``Heading n`` (``标题 n``) a
level-n heading; every other non-empty paragraph is body text. Tables keep their rows, the first
row being the header row (a merged cell is read in every column it spans, so columns stay
aligned). Page headers and footers (page numbers, the company's address) are not read: they repeat
on every page and answer nothing.
:func:`read_docx` raises :class:`LoaderError` for any failure of the parser.
"""

from __future__ import annotations

import io
import re
from dataclasses import dataclass
from typing import Final

import docx
from docx.table import Table as DocxTable
from docx.text.paragraph import Paragraph as DocxParagraph

from knowledge.errors import LoaderError
from knowledge.loaders.structured import Element, Heading, Paragraph, Table

_HEADING_STYLE: Final = re.compile(r"(?:heading|标题)\s*(\d)", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class WordText:
    """A document's elements and the title its properties state ("" when none)."""

    elements: tuple[Element, ...]
    title: str


def read_docx(name: str, data: bytes) -> WordText:
    """The elements of the document ``data`` (module docstring); LoaderError when unreadable."""
    try:
        document = docx.Document(io.BytesIO(data))
        elements = tuple(
            e for block in document.iter_inner_content() if (e := _element(block)) is not None
        )
        title = (document.core_properties.title or "").strip()
    except Exception as exc:  # zipfile, lxml, KeyError and ValueError failures of a broken file
        raise LoaderError(name, f"not a readable .docx file ({type(exc).__name__}: {exc})") from exc
    return WordText(elements, title)


def _element(block: DocxParagraph | DocxTable) -> Element | None:
    if isinstance(block, DocxTable):
        return Table(tuple(tuple(cell.text for cell in row.cells) for row in block.rows))
    text = block.text.strip()
    if not text:
        return None
    level = _heading_level(block)
    return Paragraph(text) if level is None else Heading(level, text)


def _heading_level(paragraph: DocxParagraph) -> int | None:
    style = paragraph.style
    name = (style.name or "") if style is not None else ""
    if name.lower() == "title" or name == "标题":
        return 0
    match = _HEADING_STYLE.fullmatch(name.strip())
    return int(match.group(1)) if match else None
