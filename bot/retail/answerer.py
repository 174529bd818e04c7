"""Retail questions answered from records, before retrieval; everything else goes on to it.

:class:`RetailAnswerer` wraps the configured answerer (extractive or LLM). For each question it
asks :func:`bot.retail.router.route`; a retail question is answered by the skills over the
knowledge base's current records (:class:`bot.retail.skills.Desk`) and so never depends on one
text chunk clearing the retrieval threshold. Other questions, and weak retail routes (a bare
"有什么优惠" or a store question naming no store) that a FAQ entry matches almost word for word,
go to the wrapped answerer unchanged, so FAQ and out-of-scope answers do not regress.

Follow-ups ("这个有优惠吗", "能退吗", "那个店几点关门") are first rewritten offline to name the
product, promotion or store the recent turns are about (:mod:`bot.followups`); an answer that
does not come from the records (a FAQ entry) then says what it is about ("关于丹东草莓：…").
Because of them this answerer always reads the session's history.

It is the answerer the pipeline calls, so it holds the answer's deadline: each question runs in a
:func:`knowledge.deadline.budget` of ``deadline`` seconds (``SIYU_ANSWER_DEADLINE``) that every
embedding and LLM request made for it shares; the requests enforce it and give up in time for
the records' or the extractive answer.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime, tzinfo
from typing import Final, Protocol

from bot.answer import Answer, Answerer, Retriever, Turn
from bot.followups import FollowUp, resolve
from bot.retail.exemplars import ExemplarIntents
from bot.retail.router import Intent, Route, route
from bot.retail.skills import Desk, Finding, Topic
from knowledge.catalogue import Catalogue
from knowledge.deadline import budget
from knowledge.records import Promotion
from knowledge.types import Kind

FAQ_WINS: Final = 0.8
"""A FAQ or policy hit at or above this confidence answers a weak retail route instead."""

_ANSWERED_BY: Final = "retail"


class RecordSource(Retriever, Protocol):
    """The part of ``knowledge.base.KnowledgeBase`` the retail answers read: search, and the
    current records."""

    def catalogue(self) -> Catalogue: ...


class RetailWriter(Protocol):
    """Writes a retail answer with an LLM (``bot.retail.writer``), the skills as its tools.

    ``offline`` is the records' own answer to a routed question (None when the router found no
    retail question and retrieval found nothing: the model may still call a tool). Returns None
    when the LLM failed or wrote prices or dates the records do not have: the caller then answers
    with ``offline`` (or "not found")."""

    async def write(
        self, question: str, history: Sequence[Turn], desk: Desk, offline: Finding | None
    ) -> Answer | None: ...

    async def aclose(self) -> None: ...


class RetailAnswerer:
    """Answers retail questions from records and hands the rest to ``fallback``.

    With a ``writer`` (an LLM is configured) retail answers are written by the LLM from the
    skills' results and checked; any failure falls back to the records' own answer."""

    def __init__(
        self,
        knowledge: RecordSource,
        fallback: Answerer,
        *,
        tz: tzinfo,
        writer: RetailWriter | None = None,
        exemplars: ExemplarIntents | None = None,
        faq_wins: float = FAQ_WINS,
        deadline: float | None = None,
    ) -> None:
        self._knowledge = knowledge
        self._deadline = deadline
        self._fallback = fallback
        self._tz = tz
        self._writer = writer
        self._exemplars = exemplars
        self._faq_wins = faq_wins

    @property
    def uses_history(self) -> bool:
        """Always: follow-ups are resolved against the recent turns, with or without an LLM."""
        return True

    @property
    def fallback(self) -> Answerer:
        """The answerer non-retail questions go to (extractive or LLM)."""
        return self._fallback

    async def answer(
        self, question: str, history: Sequence[Turn], *, store_id: str | None, at: datetime
    ) -> Answer:
        """The records' answer to a retail question, else the wrapped answerer's.

        A follow-up is first rewritten to name what the conversation is about. Remote calls made
        for it share one ``deadline`` (module docstring)."""
        with budget(self._deadline):
            return await self._answer_question(question, history, store_id=store_id, at=at)

    async def _answer_question(
        self, question: str, history: Sequence[Turn], *, store_id: str | None, at: datetime
    ) -> Answer:
        catalogue = self._knowledge.catalogue()
        follow_up = resolve(question, history, catalogue)
        if follow_up is None:
            return await self._answer(question, history, catalogue, store_id, at)
        answer = await self._answer(follow_up.question, history, catalogue, store_id, at)
        return _about(answer, follow_up)

    async def _answer(
        self,
        question: str,
        history: Sequence[Turn],
        catalogue: Catalogue,
        store_id: str | None,
        at: datetime,
    ) -> Answer:
        found = route(question, catalogue)
        if found is None or (not found.strong and await self._faq_matches(question, store_id, at)):
            answer = await self._fallback.answer(question, history, store_id=store_id, at=at)
            if answer.found:
                return answer
            # Nothing answers it: a retail question without cue words, or for the LLM's tools.
            found = await self._exemplars.route(question) if self._exemplars else None
            if found is None:
                if self._writer is None:
                    return answer
                desk = Desk(catalogue, store_id=store_id, now=at, tz=self._tz)
                return await self._writer.write(question, history, desk, None) or answer
        return await self._answer_route(found, question, history, catalogue, store_id, at)

    async def _answer_route(
        self,
        found: Route,
        question: str,
        history: Sequence[Turn],
        catalogue: Catalogue,
        store_id: str | None,
        at: datetime,
    ) -> Answer:
        asked = found.stores[0].store_id if found.intent is Intent.DEALS and found.stores else None
        desk = Desk(catalogue, store_id=asked or store_id, now=at, tz=self._tz)
        offline = skill(desk, found)
        if self._writer is not None:
            written = await self._writer.write(question, history, desk, offline)
            if written is not None:
                return written
        return as_answer(offline)

    async def aclose(self) -> None:
        """Close the wrapped answerer and the writer."""
        try:
            close = getattr(self._fallback, "aclose", None)
            if close is not None:
                await close()
        finally:
            if self._writer is not None:
                await self._writer.aclose()

    async def _faq_matches(self, question: str, store_id: str | None, at: datetime) -> bool:
        result = await self._knowledge.search(question, store_id=store_id, at=at, top_k=1)
        best = result.best
        return (
            best is not None
            and best.chunk.meta.kind in (Kind.FAQ, Kind.POLICY)
            and best.confidence >= self._faq_wins
        )


def _about(answer: Answer, follow_up: FollowUp) -> Answer:
    """A found answer to a rewritten follow-up that does not name its subject says it first."""
    if not answer.found or follow_up.about in answer.text:
        return answer
    return replace(answer, text=f"关于{follow_up.about}：\n{answer.text}")


def as_answer(finding: Finding) -> Answer:
    """A skill's finding as an answer, with the sources it quotes named once."""
    sources = list(dict.fromkeys(c.title or c.source for c in finding.citations))
    line = f"\n（来源：{'、'.join(sources)}）" if sources else ""
    return Answer(f"{finding.text}{line}", finding.citations, _ANSWERED_BY, found=True)


def skill(desk: Desk, r: Route) -> Finding:
    """Run the skill ``r`` asks for."""
    m = r.mentions
    if r.intent is Intent.DEALS:
        return desk.deals(r.topic)
    if r.intent is Intent.STATUS:
        promos = list(m.promotions) or _promotions_of(desk, r)
        if not promos:
            return desk.products(m.products) if m.products else desk.deals()
        return desk.status(promos, r.stores)
    if r.intent is Intent.PRODUCT:
        return desk.products(m.products, deal_asked=r.deal_asked)
    if r.intent is Intent.STORES:
        return desk.store_list(r.city)
    stores = r.stores or ((desk.store,) if desk.store is not None else ())
    if not stores:
        return desk.store_list()
    return desk.store_info(stores, r.attribute)


def _promotions_of(desk: Desk, r: Route) -> list[Promotion]:
    """Promotions about the named products that concern the asker's store (any status)."""
    topic = Topic(products=r.mentions.products)
    promos = desk.catalogue.promotions
    return [p for p in promos if desk.relates(p, topic) and p.applies_to_store(desk.store_id)]
