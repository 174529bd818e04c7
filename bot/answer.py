"""Answering a member's question from the knowledge base, as plain text every channel shows.

An :class:`Answerer` turns a question (plus the session's recent turns) into an :class:`Answer`.
:class:`ExtractiveAnswerer` needs no LLM: it quotes the best-matching entry verbatim and names its
source. ``bot.llm.LLMAnswerer`` writes answers with an LLM and falls back to
:func:`extractive_answer` on any LLM failure. Below the confidence threshold both reply with
:data:`NOT_FOUND_TEXT`, which offers a person.

Decision: what the core replies is plain text, the same for every channel (WeCom kf, the Official
Account and the web chat all show text, not Markdown). :func:`member_text` makes it so: Markdown
syntax removed (headings, bold, code, quotes, rules; links become their text), list bullets
``- ``/``* ``/``+ `` become ``· ``, a table becomes one ``header：cell；header：cell`` line per row,
and lines longer than :data:`SHORT_LINE` characters are broken after their sentences. An entry's
heading path ("冬季常见问题 > 下雪天还送货吗？") is indexed for retrieval but never shown
(:attr:`knowledge.types.Chunk.answer_text` drops it). A found answer ends with exactly ONE source
line, ``（来源：冬季常见问题）`` (:func:`source_line`), naming entries by title or, untitled,
by kind (常见问题, 活动信息, ...; :attr:`knowledge.types.DocumentMeta.label`), never by file
name; channels show no further citations. The guard (``bot.guard``) still strips whatever
Markdown other replies carry and fits the byte limit on the way out.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Final, Literal, Protocol

from bot.guard import strip_markdown, tidy_whitespace
from knowledge.types import Citation, Hit, SearchResult

NOT_FOUND_TEXT = "抱歉，这个问题我暂时回答不了。回复“人工”为您转接客服。"

SHORT_LINE: Final = 60
"""Characters a line of an answer may have before it is broken after its sentences."""

_LINK: Final = re.compile(r"!?\[([^\]\n]*)\]\([^)\s]*\)")
_BULLET: Final = re.compile(r"^[ \t]*[-*+•][ \t]+", re.MULTILINE)
_DELIMITER: Final = re.compile(r"\s*\|?\s*:?-{2,}:?\s*(?:\|\s*:?-{2,}:?\s*)*\|?\s*$")
_SENTENCE_END: Final = re.compile(r"[。！？；]+[”’」』）)]*(?=.)")

Role = Literal["user", "bot"]


@dataclass(frozen=True, slots=True)
class Turn:
    """One message of the session's history, oldest first when in a sequence."""

    role: Role
    text: str


@dataclass(frozen=True, slots=True)
class Answer:
    """What an answerer produced. ``found`` is False for the "not found" reply.

    ``answered_by`` is "llm", "extractive" or "not_found".
    """

    text: str
    citations: tuple[Citation, ...]
    answered_by: str
    found: bool


class Retriever(Protocol):
    """The part of ``knowledge.base.KnowledgeBase`` answering needs."""

    async def search(
        self,
        query: str,
        *,
        store_id: str | None = None,
        at: datetime | None = None,
        top_k: int | None = None,
    ) -> SearchResult: ...


class Answerer(Protocol):
    """Answers one question; ``history`` holds the session's recent turns, oldest first.

    ``uses_history`` False lets the pipeline skip reading the history (a query per message).
    """

    @property
    def uses_history(self) -> bool: ...

    async def answer(
        self, question: str, history: Sequence[Turn], *, store_id: str | None, at: datetime
    ) -> Answer: ...


def not_found_answer() -> Answer:
    """The polite "I can't answer that" reply, offering a person."""
    return Answer(NOT_FOUND_TEXT, (), "not_found", found=False)


def source_label(hit: Hit) -> str:
    """How a source is named to members: its document's title, else a label for its kind
    (常见问题, 活动信息, 商品信息, 门店信息, 服务政策); never a file name."""
    return hit.chunk.meta.label


def source_line(labels: Iterable[str]) -> str:
    """The one line naming an answer's sources, ``（来源：常见问题、夏日满减）``; "" for none."""
    unique = [label for label in dict.fromkeys(labels) if label]
    return f"（来源：{'、'.join(unique)}）" if unique else ""


def extractive_answer(result: SearchResult) -> Answer:
    """Quote the best hit's answer text verbatim (prices and dates included) as plain text,
    with its source line.

    Returns the "not found" answer when the best hit is below the threshold.
    """
    best = result.best
    if best is None or not result.found:
        return not_found_answer()
    text = f"{member_text(best.chunk.answer_text)}\n{source_line([source_label(best)])}"
    return Answer(text, (best.citation,), "extractive", found=True)


def member_text(text: str) -> str:
    """``text`` as members read it on every channel (see the module docstring): plain text in
    short lines, no Markdown."""
    lines = _tables_as_pairs(text.replace("\r\n", "\n").split("\n"))
    text = _LINK.sub(r"\1", "\n".join(lines))
    text = _BULLET.sub("· ", strip_markdown(text))
    return tidy_whitespace("\n".join(_short(line) for line in text.split("\n")))


def _tables_as_pairs(lines: list[str]) -> list[str]:
    """Markdown tables as one ``header：cell；header：cell`` line per row."""
    out: list[str] = []
    index = 0
    while index < len(lines):
        if index + 1 < len(lines) and _is_row(lines[index]) and _DELIMITER.match(lines[index + 1]):
            headers = _cells(lines[index])
            index += 2
            while index < len(lines) and _is_row(lines[index]):
                pairs = zip(headers, _cells(lines[index]), strict=False)
                out.append("；".join(f"{h}：{c}" if h else c for h, c in pairs if c))
                index += 1
            continue
        out.append(lines[index])
        index += 1
    return out


def _is_row(line: str) -> bool:
    return "|" in line


def _cells(line: str) -> list[str]:
    inner = line.strip().removeprefix("|").removesuffix("|")
    return [cell.strip() for cell in inner.split("|")]


def _short(line: str) -> str:
    """A line over :data:`SHORT_LINE` characters broken after each of its sentences."""
    if len(line) <= SHORT_LINE:
        return line
    return _SENTENCE_END.sub("\\g<0>\n", line.strip()).strip()


class ExtractiveAnswerer:
    """Answers without an LLM: retrieve, then quote the best entry. History is not used."""

    uses_history = False

    def __init__(self, retriever: Retriever) -> None:
        self._retriever = retriever

    async def answer(
        self, question: str, history: Sequence[Turn], *, store_id: str | None, at: datetime
    ) -> Answer:
        """Retrieve for ``question`` as of ``at`` in ``store_id`` and quote the best hit."""
        result = await self._retriever.search(question, store_id=store_id, at=at)
        return extractive_answer(result)

    async def aclose(self) -> None:
        """Nothing to release; present so every answerer can be closed the same way."""
