"""The composition root: settings in, a running engine, knowledge base and pipeline out.

The CLI and every adapter start here (``App.build``) and feed ``app.inbox.handle``: the durable
inbox (:mod:`bot.inbox`) records each message, then answers it with ``app.pipeline``. Each
component receives only its own settings section.
"""

from __future__ import annotations

import gc
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncEngine

from bot.answer import ExtractiveAnswerer
from bot.clock import utc_now
from bot.db import create_engine
from bot.inbox import Inbox
from bot.llm import LLMAnswerer
from bot.pipeline import Pipeline
from bot.readiness import Readiness, readiness
from bot.retail import RetailAnswerer
from bot.retail.exemplars import FLOORS, ExemplarIntents
from bot.retail.writer import LLMRetailWriter
from bot.schema import upgrade
from bot.settings import Settings
from bot.store import Store
from campaigns.config import CampaignsConfig
from knowledge.base import KnowledgeBase
from knowledge.breaker import CircuitBreaker

log = logging.getLogger(__name__)


@dataclass
class App:
    """Everything a running Siyu needs, built once and closed once.

    ``llm_breaker`` is the process's one circuit breaker for the LLM: the answers, the retail
    writer and campaign copy (:func:`bot.campaign_cli`) all call the same LLM, so one failing
    call pattern opens it for all of them (:mod:`knowledge.breaker`)."""

    settings: Settings
    engine: AsyncEngine
    knowledge: KnowledgeBase
    pipeline: Pipeline
    store: Store
    answerer: RetailAnswerer
    inbox: Inbox
    llm_breaker: CircuitBreaker

    @classmethod
    async def build(
        cls, settings: Settings, *, monotonic: Callable[[], float] = time.monotonic
    ) -> App:
        """Create the engine, bring the database to the newest revision
        (:func:`bot.schema.upgrade`), open the knowledge base, choose the answerer.
        ``monotonic`` is the circuit breakers' clock (tests move it by hand)."""
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        engine = create_engine(settings.resolved_database_url)
        try:
            await upgrade(engine)
            config = settings.knowledge.config(settings.data_dir)
            knowledge = await KnowledgeBase.open(config, engine, monotonic=monotonic)
        except BaseException:
            await engine.dispose()
            raise
        breaker = CircuitBreaker("the LLM", clock=monotonic)
        answerer = _answerer(settings, knowledge, breaker)
        store = Store(engine)
        pipeline = Pipeline(store, answerer, settings.bot.config())
        inbox = Inbox(engine, pipeline.handle, lease=timedelta(seconds=settings.bot.inbox_lease))
        return cls(settings, engine, knowledge, pipeline, store, answerer, inbox, breaker)

    async def preview_answer(
        self, question: str, *, store_id: str | None = None, at: datetime | None = None
    ) -> str:
        """What the bot would answer ``question`` with no history, as sent (for ``siyu ask``):
        small talk and complaints as in a conversation (:meth:`Pipeline.preview`)."""
        text, _ = await self.pipeline.preview(question, store_id=store_id, at=at or utc_now())
        return text

    def readiness(self) -> Readiness:
        """What ``/readyz`` checks for this process: the database, the vector store and the
        inbox's lag (:mod:`bot.readiness`), bounded as ``SIYU_READY_*`` say."""
        config = self.settings.ops.readiness()
        return readiness(self.engine, self.knowledge.ping, self.inbox, config)

    def settle(self) -> None:
        """Hide everything built so far from the garbage collector's full collections.

        A server calls this once it is ready to take traffic. The models, jieba's dictionary,
        Chroma and the knowledge snapshot are hundreds of thousands of long-lived objects; each
        full (generation 2) collection walked them all and stopped the event loop long enough to
        be the whole p99 of the callback acknowledgements under load (``docs/measurements.md``).
        ``gc.freeze`` moves them to the permanent generation; reference counting still frees
        what is dropped later (an old snapshot after a refresh), only cycles among frozen objects
        would stay, and startup makes none worth collecting.
        """
        gc.collect()
        gc.freeze()

    async def close(self) -> None:
        """Let the inbox's background give-backs finish, then release the LLM connections, the
        knowledge base and the engine, in that order."""
        try:
            await self.inbox.settle()
            await self.answerer.aclose()
        finally:
            try:
                await self.knowledge.close()
            finally:
                await self.engine.dispose()


def campaigns_config(settings: Settings) -> CampaignsConfig:
    """The campaigns' section, in the brand's timezone."""
    return settings.campaigns.config(settings.bot.timezone)


def _answerer(
    settings: Settings, knowledge: KnowledgeBase, breaker: CircuitBreaker
) -> RetailAnswerer:
    """The retail answerer over the configured one, holding the answer deadline."""
    llm, brand = settings.llm.config(), settings.bot.brand
    writer = LLMRetailWriter(llm, brand=brand, breaker=breaker) if llm.enabled else None
    fallback = _choose_answerer(settings, knowledge, breaker)
    floor = FLOORS.get(knowledge.embedding_backend)
    exemplars = ExemplarIntents(knowledge, floor) if floor is not None else None
    return RetailAnswerer(
        knowledge, fallback, tz=settings.bot.timezone, writer=writer, exemplars=exemplars,
        deadline=settings.bot.answer_deadline,
    )  # fmt: skip


def _choose_answerer(
    settings: Settings, knowledge: KnowledgeBase, breaker: CircuitBreaker
) -> ExtractiveAnswerer | LLMAnswerer:
    llm = settings.llm.config()
    if llm.enabled:
        log.info("answering with the LLM %s at %s", llm.model, llm.base_url or "api.openai.com")
        return LLMAnswerer(knowledge, llm, brand=settings.bot.brand, breaker=breaker)
    log.info("no LLM configured (SIYU_LLM_MODEL): answering extractively")
    return ExtractiveAnswerer(knowledge)
