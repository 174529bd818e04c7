"""Real Chinese PDFs (reportlab) and DOCX files (python-docx) for the document loader tests.

reportlab's built-in CID font STSong-Light needs no font file; when a PDF reader cannot read its
text back, a CJK TrueType font from /usr/share/fonts (fonts-noto-cjk) is embedded instead, and
without one the tests that need Chinese PDFs are skipped with the reason.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import docx
import pdfplumber
import pytest
from reportlab.lib import colors
from reportlab.lib.pagesizes import A4
from reportlab.pdfbase import pdfmetrics
from reportlab.pdfbase.cidfonts import UnicodeCIDFont
from reportlab.pdfbase.ttfonts import TTFont
from reportlab.pdfgen.canvas import Canvas
from reportlab.platypus import Table, TableStyle

_FONT_DIRS = (Path("/usr/share/fonts"), Path("/usr/local/share/fonts"))
_PROBE = "春节营业时间：除夕18:00关门"


@dataclass(frozen=True, slots=True)
class Text:
    """A line of text on a PDF page, in points."""

    text: str
    size: float = 11


@dataclass(frozen=True, slots=True)
class Grid:
    """A ruled table on a PDF page, the header row first."""

    rows: tuple[tuple[str, ...], ...]


PageItem = Text | Grid


@cache
def cjk_font() -> str | None:
    """The name of a registered font whose Chinese text PDF readers extract, or None."""
    pdfmetrics.registerFont(UnicodeCIDFont("STSong-Light"))
    if _reads_back("STSong-Light"):
        return "STSong-Light"
    for folder in _FONT_DIRS:
        for path in sorted(folder.rglob("*CJK*")) if folder.is_dir() else ():
            if path.suffix.lower() in (".ttc", ".ttf", ".otf"):
                try:
                    pdfmetrics.registerFont(TTFont("TestCJK", str(path), subfontIndex=0))
                except Exception:  # a CFF-flavoured .otf/.ttc reportlab cannot embed: try the next
                    continue
                if _reads_back("TestCJK"):
                    return "TestCJK"
    return None


def require_cjk_font() -> str:
    """:func:`cjk_font`, or skip the test saying why."""
    font = cjk_font()
    if font is None:
        pytest.skip("no font whose Chinese text pdfplumber reads back (install fonts-noto-cjk)")
    return font


def make_cjk_pdf(pages: Sequence[Sequence[PageItem]], *, title: str = "") -> bytes:
    """A PDF whose pages show the given lines and tables top to bottom, in a Chinese font."""
    font = require_cjk_font()
    buffer = io.BytesIO()
    canvas = Canvas(buffer, pagesize=A4)
    if title:
        canvas.setTitle(title)
    _, height = A4
    for page in pages:
        y = height - 72
        for item in page:
            y = _draw(canvas, item, font, y)
        canvas.showPage()
    canvas.save()
    return buffer.getvalue()


def make_rich_docx(blocks: Sequence[tuple[str, object]], *, title: str = "") -> bytes:
    """A DOCX of ("heading0".."heading3" | "para" | "table", content) blocks in order."""
    document = docx.Document()
    if title:
        document.core_properties.title = title
    for kind, content in blocks:
        if kind.startswith("heading"):
            document.add_heading(str(content), level=int(kind.removeprefix("heading")))
        elif kind == "para":
            document.add_paragraph(str(content))
        else:
            rows = [list(map(str, row)) for row in content]  # type: ignore[attr-defined]
            table = document.add_table(rows=len(rows), cols=len(rows[0]))
            for cells, values in zip(table.rows, rows, strict=True):
                for cell, value in zip(cells.cells, values, strict=True):
                    cell.text = value
    buffer = io.BytesIO()
    document.save(buffer)
    return buffer.getvalue()


def _draw(canvas: Canvas, item: PageItem, font: str, y: float) -> float:
    if isinstance(item, Text):
        canvas.setFont(font, item.size)
        canvas.drawString(72, y, item.text)
        return y - item.size * 1.8
    table = Table([list(row) for row in item.rows])
    table.setStyle(
        TableStyle(
            [
                ("FONT", (0, 0), (-1, -1), font, 11),
                ("GRID", (0, 0), (-1, -1), 0.5, colors.black),
            ]
        )
    )
    _, drawn_height = table.wrapOn(canvas, 400, y)
    table.drawOn(canvas, 72, y - drawn_height)
    return y - drawn_height - 20


def _reads_back(font: str) -> bool:
    buffer = io.BytesIO()
    canvas = Canvas(buffer)
    canvas.setFont(font, 12)
    canvas.drawString(72, 720, _PROBE)
    canvas.showPage()
    canvas.save()
    try:
        with pdfplumber.open(io.BytesIO(buffer.getvalue())) as pdf:
            return _PROBE in (pdf.pages[0].extract_text() or "")
    except Exception:  # an unreadable probe means: not this font
        return False
