"""Answers written by an LLM over any OpenAI-compatible chat endpoint, grounded in retrieval.

:class:`LLMAnswerer` (1) rewrites a follow-up into a standalone question when there is history,
(2) retrieves with it, (3) says "not found" without calling the LLM when nothing clears the
threshold, (4) otherwise asks the LLM to answer only from the numbered sources, citing them as [1],
[2], and maps the cited numbers back to citations. The member reads the model's text as plain text
(:func:`bot.answer.member_text`) without the numbers or any source line the model wrote, then one
source line naming the cited entries (:func:`bot.answer.source_line`). (5) Any LLM failure (HTTP
error, timeout, refused connection, malformed or empty response) is logged once and the answer
falls back to the extractive one for the same retrieval; nothing is retrieved twice.

Every call goes through :meth:`ChatModel.invoke`: one deadline (``SIYU_LLM_TIMEOUT``, cut to what
is left of the answer's ``SIYU_ANSWER_DEADLINE``), bounded retries with Retry-After honoured only
when it fits, and the app's one LLM circuit breaker: after 3 failures in a row every answer is
extractive at once, without a request, until a probe after 30 s finds the LLM back.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from datetime import datetime
from typing import Any, TypeVar

import httpx
from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompts import ChatPromptTemplate
from langchain_core.runnables import Runnable
from langchain_openai import ChatOpenAI
from pydantic import SecretStr

from bot.answer import (
    Answer,
    Retriever,
    Turn,
    extractive_answer,
    member_text,
    not_found_answer,
    source_label,
    source_line,
)
from bot.config import LLMConfig
from bot.errors import ConfigError, LLMError, LLMUnavailable
from knowledge import remote
from knowledge.breaker import CircuitBreaker
from knowledge.deadline import DeadlineTransport
from knowledge.errors import ServiceUnavailable
from knowledge.redact import llm_failure
from knowledge.types import Citation, Hit, SearchResult

log = logging.getLogger(__name__)

In = TypeVar("In")
Out = TypeVar("Out")

# ChatOpenAI insists on a key; local servers (vLLM, Ollama) ignore it.
PLACEHOLDER_API_KEY = "not-needed"


UNUSABLE: tuple[type[BaseException], ...] = (ValueError,)
"""What a model call raises for an answer that is not a completion: langchain's ValueError
("Unexpected response type", a 200 whose body is an HTML error page). The LLM is failing, not
refusing us: a breaker failure, like a 5xx."""


class ChatModel:
    """A ``ChatOpenAI`` for ``config`` over HTTP clients of its own (not langchain's process-wide
    cached ones); :meth:`invoke` is the one way every caller (answers, retail answers, campaign
    copy) calls it. :meth:`aclose` frees the clients.

    Decision: the SDK's own retries are off (``max_retries=0``): they honour a Retry-After of
    60 s and reset a timeout per read, which made one answer take a minute. :meth:`invoke` retries
    itself, within one deadline (:mod:`knowledge.remote`), and every request of the client ends
    by that deadline, body included (:class:`knowledge.deadline.DeadlineTransport`).
    """

    def __init__(self, config: LLMConfig, *, breaker: CircuitBreaker | None = None) -> None:
        self.breaker = breaker if breaker is not None else CircuitBreaker("the LLM")
        self._seconds = config.timeout
        self._retries = config.max_retries
        transport = DeadlineTransport(config.timeout)
        self._http = httpx.AsyncClient(timeout=config.timeout, transport=transport)
        self._http_sync = httpx.Client(timeout=config.timeout)  # langchain wants one; unused
        self.model = ChatOpenAI(
            base_url=config.base_url,
            model=config.model,
            api_key=SecretStr(config.api_key or PLACEHOLDER_API_KEY),
            timeout=config.timeout,
            max_retries=0,
            temperature=config.temperature,
            http_async_client=self._http,
            http_client=self._http_sync,
        )

    async def invoke(self, runnable: Runnable[In, Out], value: In) -> Out:
        """``runnable.ainvoke(value)`` (a chain or a model over :attr:`model`) with our retries,
        the breaker and one deadline: ``SIYU_LLM_TIMEOUT``, or what is left of the answer's
        deadline (``SIYU_ANSWER_DEADLINE``, :func:`knowledge.deadline.budget`) if sooner.

        Raises :class:`LLMUnavailable` when the LLM is not answering or the breaker is open
        (nothing sent), :class:`LLMError` for any other failure (a 4xx, output the parser
        refuses); callers fall back to the extractive answer on either."""
        try:
            return await remote.call(
                lambda: runnable.ainvoke(value),
                breaker=self.breaker, seconds=self._seconds, retries=self._retries,
                unusable=UNUSABLE,
            )  # fmt: skip
        except ServiceUnavailable as exc:
            raise LLMUnavailable(str(exc), breaker_open=exc.breaker_open) from exc
        except Exception as exc:
            # openai's 4xx errors and parsing errors all mean the same here: no usable output.
            # The message never quotes the response: it is logged (bot.redact).
            raise LLMError(llm_failure(exc)) from exc

    async def aclose(self) -> None:
        """Release the HTTP connections."""
        await self._http.aclose()
        self._http_sync.close()


def log_fallback(logger: logging.Logger, what: str, exc: LLMError) -> None:
    """Log once on ``logger`` why ``what`` falls back: a warning, except while the breaker is
    open (the breaker said so once when it opened; each skipped call is only a debug line)."""
    if isinstance(exc, LLMUnavailable) and exc.breaker_open:
        logger.debug("%s: the LLM's circuit is open, falling back", what)
    else:
        logger.warning("%s failed, falling back: %s", what, exc)


async def invoke_text(
    chat: ChatModel, chain: Runnable[dict[str, Any], str], inputs: dict[str, Any]
) -> str:
    """Run a prompt → model → text chain once through ``chat``; its stripped text, or LLMError
    (a failed call, or empty content: an empty draft is as unusable as an error)."""
    text = await chat.invoke(chain, inputs)
    if not text.strip():
        raise LLMError("the LLM returned empty content")
    return text.strip()


NOT_COVERED = "资料中没有相关信息"
"""What the answer prompt tells the model to say when the sources do not cover the question."""

REWRITE_PROMPT = ChatPromptTemplate.from_messages(
    [
        (
            "system",
            "你是客服对话的改写助手。根据对话历史，把会员的最新问题改写成一个不依赖上下文、"
            "意思完整的独立问题。只输出改写后的问题，不要回答，不要解释。"
            "如果最新问题本身已经完整，原样输出。",
        ),
        ("human", "对话历史：\n{history}\n\n最新问题：{question}\n\n独立问题："),
    ]
)

ANSWER_PROMPT = ChatPromptTemplate.from_messages(
    [
        (
            "system",
            "你是{brand}的客服助手，只能依据下面编号的资料回答会员的问题。\n"
            f"1. 只用资料里的信息，不要编造。资料没有覆盖这个问题时，明确说“{NOT_COVERED}”，"
            "并建议回复“人工”转接客服。\n"
            "2. 价格、日期、时间、数量和优惠条件必须逐字引用资料原文。\n"
            "3. 用简体中文，简洁友好，不用 Markdown 标题、加粗或表格。\n"
            "4. 在用到资料的句子后标注来源编号，例如 [1] 或 [2]。",
        ),
        ("human", "资料：\n{sources}\n\n会员问题：{question}"),
    ]
)

_CITED = re.compile(r"[\[【]\s*(\d{1,2})\s*[\]】]")
_CITED_MARK = re.compile(r"\s*" + _CITED.pattern)
_OWN_SOURCE = re.compile(r"^[ \t]*[（(]?[ \t]*(?:来源|出处|参考资料)[ \t]*[:：].*$", re.MULTILINE)


def format_history(history: Sequence[Turn]) -> str:
    """History as "会员：…" / "客服：…" lines for the rewrite prompt."""
    return "\n".join(f"{'会员' if t.role == 'user' else '客服'}：{t.text}" for t in history)


def format_sources(hits: Sequence[Hit]) -> str:
    """Hits as numbered sources, [1] first; QA rows show their question and answer."""
    blocks = []
    for number, hit in enumerate(hits, 1):
        draft = hit.chunk.draft
        body = draft.text.strip()
        if draft.answer and draft.answer.strip() not in body:
            body = f"{body}\n{draft.answer.strip()}"
        blocks.append(f"[{number}] {source_label(hit)}\n{body}")
    return "\n\n".join(blocks)


def cited_numbers(text: str, hit_count: int) -> list[int]:
    """Valid source numbers ``text`` cites as [n] (or 【n】), in order of first citation."""
    numbers = dict.fromkeys(int(n) for n in _CITED.findall(text))
    return [n for n in numbers if 1 <= n <= hit_count]


def reply_text(text: str) -> str:
    """The model's answer as members read it: no [n] marks, no source line of the model's own
    (the answer adds one), plain text (:func:`bot.answer.member_text`)."""
    return member_text(_OWN_SOURCE.sub("", _CITED_MARK.sub("", text)))


def _citations(hits: Sequence[Hit]) -> tuple[Citation, ...]:
    unique: dict[str, Citation] = {}
    for hit in hits:
        unique.setdefault(hit.chunk.id, hit.citation)
    return tuple(unique.values())


class LLMAnswerer:
    """Answers with an LLM over retrieved knowledge; falls back to extractive answers."""

    uses_history = True  # follow-up questions are rewritten with the recent turns

    def __init__(
        self,
        retriever: Retriever,
        config: LLMConfig,
        *,
        brand: str = "本店",
        breaker: CircuitBreaker | None = None,
    ) -> None:
        if not config.model:
            raise ConfigError("LLMAnswerer needs an LLM model (SIYU_LLM_MODEL)")
        self._retriever = retriever
        self._brand = brand
        self._chat = ChatModel(config, breaker=breaker)
        model = self._chat.model
        self._rewrite: Runnable[dict[str, Any], str] = REWRITE_PROMPT | model | StrOutputParser()
        self._write: Runnable[dict[str, Any], str] = ANSWER_PROMPT | model | StrOutputParser()

    async def answer(
        self, question: str, history: Sequence[Turn], *, store_id: str | None, at: datetime
    ) -> Answer:
        """Rewrite (with history), retrieve, then answer from the sources with citations."""
        llm_up = True
        query = question
        if history:
            try:
                query = await self._standalone(question, history)
            except LLMError as exc:
                log_fallback(log, "LLM rewrite", exc)
                llm_up = False
        result = await self._retriever.search(query, store_id=store_id, at=at)
        if not result.found:
            return not_found_answer()
        if not llm_up:
            return extractive_answer(result)
        try:
            return await self._grounded(query, result)
        except LLMError as exc:
            log_fallback(log, "LLM answer", exc)
            return extractive_answer(result)

    async def aclose(self) -> None:
        """Release the HTTP connections."""
        await self._chat.aclose()

    async def _standalone(self, question: str, history: Sequence[Turn]) -> str:
        inputs = {"history": format_history(history), "question": question}
        rewritten = await invoke_text(self._chat, self._rewrite, inputs)
        # Models sometimes echo the label or wrap the question in quotes.
        return rewritten.removeprefix("独立问题：").strip().strip("“”\"'") or question

    async def _grounded(self, query: str, result: SearchResult) -> Answer:
        inputs = {"brand": self._brand, "sources": format_sources(result.hits), "question": query}
        text = await invoke_text(self._chat, self._write, inputs)
        numbers = cited_numbers(text, len(result.hits))
        if NOT_COVERED in text and not numbers:
            # The model says the sources miss the question: no source line, counted as not found.
            return Answer(text, (), "not_found", found=False)
        cited = [result.hits[n - 1] for n in numbers] or list(result.hits[:1])
        body = reply_text(text)
        if not body:
            raise LLMError("the LLM answer has no text besides its source numbers")
        reply = f"{body}\n{source_line(source_label(hit) for hit in cited)}"
        return Answer(reply, _citations(cited), "llm", found=True)
