"""Reading a PDF's text layer (pdfplumber) as pages of headings, paragraphs and tables.

PDFs carry no heading marks, so a text line is a heading when it is short (at most
:data:`MAX_HEADING` characters, no sentence end) and

- set larger than the body text (the size most characters have) by :data:`SIZE_RATIO` or more:
  its level is its size's rank among heading sizes, the largest first; or
- bold while the body is not; or
- numbered as headings are: ``第一章``/``第一部分``, ``第三条``/``一、``, ``（一）``, ``1.``/``1、``
  (outer to inner), ranked below the size and bold levels.

Tables are found by their ruling lines (:meth:`pdfplumber.page.Page.find_tables`); their text is
kept out of the lines around them and they take their place in reading order (top to bottom).
A line that reaches the right margin without a sentence end is wrapped: the next line continues
its paragraph. :func:`read_pdf` raises :class:`LoaderError` for any failure of the parser.
"""

from __future__ import annotations

import io
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

import pdfplumber
from pdfminer.pdfdocument import PDFPasswordIncorrect

from knowledge.errors import LoaderError
from knowledge.loaders.structured import Element, Heading, Paragraph, Table

MAX_HEADING: Final = 40
SIZE_RATIO: Final = 1.15
_NUMBERED: Final = (
    re.compile(r"第[一二三四五六七八九十百零〇\d]+[章部篇]"),
    re.compile(r"第[一二三四五六七八九十百零〇\d]+[条节]|[一二三四五六七八九十]+、"),
    re.compile(r"[（(][一二三四五六七八九十]+[）)]"),
    re.compile(r"\d{1,2}(?:[、．]|\.(?!\d))\s*\D"),
)
_SENTENCE_END: Final = re.compile(r"[。！？；…!?;.]$")
_CJK: Final = re.compile(r"[\u3000-\u303f\u3400-\u9fff\uff00-\uffef]")


@dataclass(frozen=True, slots=True)
class Line:
    """A text line of a page: its text, font size, boldness and position."""

    text: str
    size: float
    bold: bool
    top: float
    right: float


@dataclass(frozen=True, slots=True)
class PdfText:
    """A PDF's pages of elements and the title its metadata states ("" when none)."""

    pages: tuple[tuple[Element, ...], ...]
    title: str


def read_pdf(name: str, data: bytes) -> PdfText:
    """The pages of ``data`` as elements (module docstring); LoaderError when unreadable."""
    try:
        with pdfplumber.open(io.BytesIO(data)) as pdf:
            raw = [_page_items(page) for page in pdf.pages]
            title = str((pdf.metadata or {}).get("Title") or "")
    except PDFPasswordIncorrect as exc:
        raise LoaderError(name, "the PDF is password-protected") from exc
    except Exception as exc:  # pdfminer raises many types (PSSyntaxError, ValueError, KeyError...)
        raise LoaderError(name, f"not a readable PDF ({type(exc).__name__}: {exc})") from exc
    lines = [item for page in raw for item in page if isinstance(item, Line)]
    levels = _Levels(lines)
    pages = tuple(tuple(_elements(page, levels)) for page in raw)
    return PdfText(pages, _clean_title(title))


def _page_items(page: Any) -> list[Line | Table]:
    """The page's lines outside tables and its tables, top to bottom."""
    found = page.find_tables()
    boxes = [t.bbox for t in found]
    text_page = page.filter(lambda obj: not _in_any(obj, boxes)) if boxes else page
    lines = [_line(raw) for raw in text_page.extract_text_lines(return_chars=True)]
    items: list[tuple[float, Line | Table]] = [(ln.top, ln) for ln in lines if ln.text]
    items += [(float(t.bbox[1]), Table(_rows(t.extract()))) for t in found]
    return [item for _, item in sorted(items, key=lambda pair: pair[0])]


def _in_any(obj: dict[str, Any], boxes: Sequence[tuple[float, float, float, float]]) -> bool:
    if "x0" not in obj or "top" not in obj:
        return False
    x, y = (obj["x0"] + obj["x1"]) / 2, (obj["top"] + obj["bottom"]) / 2
    return any(x0 <= x <= x1 and top <= y <= bottom for x0, top, x1, bottom in boxes)


def _rows(extracted: list[list[str | None]]) -> tuple[tuple[str, ...], ...]:
    return tuple(tuple(cell or "" for cell in row) for row in extracted)


def _line(raw: dict[str, Any]) -> Line:
    chars = [c for c in raw.get("chars", []) if str(c.get("text", "")).strip()]
    size = Counter(round(float(c["size"]), 1) for c in chars).most_common(1)[0][0] if chars else 0
    bold = bool(chars) and all("bold" in str(c.get("fontname", "")).lower() for c in chars)
    return Line(str(raw["text"]).strip(), float(size), bold, float(raw["top"]), float(raw["x1"]))


class _Levels:
    """Which lines are headings, and their levels, from the document's body size and fonts."""

    def __init__(self, lines: Sequence[Line]) -> None:
        weights: Counter[float] = Counter()
        bold_chars = 0
        for line in lines:
            weights[line.size] += len(line.text)
            bold_chars += len(line.text) if line.bold else 0
        self.body = weights.most_common(1)[0][0] if weights else 0.0
        self.body_bold = bold_chars * 2 > sum(weights.values())
        big = {ln.size for ln in lines if self._short(ln) and ln.size >= self.body * SIZE_RATIO}
        self.sizes = sorted(big, reverse=True)

    def level(self, line: Line) -> int | None:
        """The heading level of ``line``, or None for body text."""
        if not self._short(line):
            return None
        if line.size in self.sizes:
            return self.sizes.index(line.size) + 1
        below = len(self.sizes) + 1
        if line.bold and not self.body_bold:
            return below
        for depth, pattern in enumerate(_NUMBERED, 1):
            if pattern.match(line.text):
                return below + depth
        return None

    @staticmethod
    def _short(line: Line) -> bool:
        return len(line.text) <= MAX_HEADING and not _SENTENCE_END.search(line.text)


def _elements(items: Sequence[Line | Table], levels: _Levels) -> list[Element]:
    """Lines as headings and paragraphs (wrapped lines joined), tables as they are."""
    right = max((i.right for i in items if isinstance(i, Line)), default=0.0)
    out: list[Element] = []
    open_line: Line | None = None
    for item in items:
        if isinstance(item, Table):
            out.append(item)
            open_line = None
            continue
        level = levels.level(item)
        if level is not None:
            out.append(Heading(level, item.text))
            open_line = None
        elif open_line is not None and isinstance(out[-1], Paragraph):
            out[-1] = Paragraph(_join(out[-1].text, item.text))
            open_line = item if _wraps(item, right) else None
        else:
            out.append(Paragraph(item.text))
            open_line = item if _wraps(item, right) else None
    return out


def _wraps(line: Line, right: float) -> bool:
    """True when ``line`` runs to the right margin without ending a sentence."""
    return line.right >= right - 1.5 * line.size and not _SENTENCE_END.search(line.text)


def _join(head: str, tail: str) -> str:
    cjk = _CJK.match(tail[:1]) or _CJK.match(head[-1:])
    return f"{head}{tail}" if cjk else f"{head} {tail}"


def _clean_title(title: str) -> str:
    """The metadata title unless it is a placeholder or a file name ("untitled", "x.docx")."""
    title = title.strip()
    placeholder = title.lower() in {"", "untitled", "无标题"} or "microsoft word" in title.lower()
    if placeholder or re.search(r"\.(?:docx?|pdf|pptx?|xlsx?|txt)$", title, re.IGNORECASE):
        return ""
    return title
