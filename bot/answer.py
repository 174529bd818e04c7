"""Answering a member's question from the knowledge base.

An :class:`Answerer` turns a question (plus the session's recent turns) into an :class:`Answer`.
:class:`ExtractiveAnswerer` needs no LLM: it quotes the best-matching entry verbatim and names its
source. ``bot.llm.LLMAnswerer`` writes answers with an LLM and falls back to
:func:`extractive_answer` on any LLM failure. Below the confidence threshold both reply with
:data:`NOT_FOUND_TEXT`, which offers a person.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Literal, Protocol

from knowledge.types import Citation, Hit, SearchResult

NOT_FOUND_TEXT = "抱歉，这个问题我暂时回答不了。回复“人工”为您转接客服。"

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
    """How a source is named to members: its title, else its heading, else its file name."""
    citation = hit.citation
    return citation.title or citation.source


def extractive_answer(result: SearchResult) -> Answer:
    """Quote the best hit's answer text verbatim (prices and dates included) with its source.

    Returns the "not found" answer when the best hit is below the threshold.
    """
    best = result.best
    if best is None or not result.found:
        return not_found_answer()
    text = f"{best.chunk.answer_text.strip()}\n（来源：{source_label(best)}）"
    return Answer(text, (best.citation,), "extractive", found=True)


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
