"""Retail answers written by an LLM that calls the retail skills as tools, checked against them.

:class:`LLMRetailWriter` implements :class:`bot.retail.answerer.RetailWriter`. For one question it
(1) shows the model the brand's rules, the recent turns and the question, with the records' own
answer (``offline``) as source [1] when the router found one; (2) offers the skills as tools
(:class:`bot.retail.tools.Toolbox`) and runs the calls the model makes, for at most
:data:`MAX_TOOL_ROUNDS` rounds, until it writes text; (3) checks that every price and date of
that text occurs in what the model was given: the offline answer's text and record facts, the
tools' results and today's date (:func:`unsupported_facts`, the rule campaign copy obeys).

It returns None, logged once, when the LLM fails in any way (HTTP error, timeout, malformed or
empty response, tool calls without end; one deadline of ``config.timeout``, cut to what is left of
the answer's deadline, covers the whole write: :func:`knowledge.deadline.budget`, which each
:meth:`bot.llm.ChatModel.invoke` enforces), when the text quotes a price or date the records
do not have, and when there is no offline answer and the model called no tool. The caller then
answers from the records.
"""

from __future__ import annotations

import logging
import re
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import replace
from typing import Final

from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, SystemMessage

from bot.answer import Answer, Turn
from bot.config import LLMConfig
from bot.errors import ConfigError, LLMError
from bot.llm import ChatModel, log_fallback, reply_text
from bot.retail.answerer import as_answer
from bot.retail.skills import Desk, Finding
from bot.retail.tools import Toolbox
from knowledge.breaker import CircuitBreaker
from knowledge.deadline import budget
from knowledge.types import Citation

log = logging.getLogger(__name__)

MAX_TOOL_ROUNDS: Final = 3
"""Rounds of tool calls the model may make before it must answer (then one more request)."""

SYSTEM_PROMPT: Final = (
    "你是{brand}的客服助手，回答会员关于优惠活动、商品价格和门店的问题。"
    "今天是{today}；会员所在门店：{store}。\n"
    "1. 只依据工具返回的结果和会员问题里给出的资料回答，不要编造。资料不够时先调用工具查询。\n"
    "2. 价格、日期、时间和优惠条件必须逐字引用工具结果或资料原文，不要换算或改写。\n"
    "3. 查不到时如实说明，并建议回复“人工”转接客服。\n"
    "4. 用简体中文，亲切简洁，每行一句；不用 Markdown 标题、加粗或表格，不标注资料编号。"
)

_SOURCE_MARK: Final = re.compile(r"\s*[\[【]\s*\d{1,2}\s*[\]】]")
"""A source number the model may add out of habit; the answer names its sources itself."""


class LLMRetailWriter:
    """Writes retail answers with the LLM of ``config``; see the module docstring."""

    def __init__(
        self, config: LLMConfig, *, brand: str = "本店", breaker: CircuitBreaker | None = None
    ) -> None:
        if not config.model:
            raise ConfigError("LLMRetailWriter needs an LLM model (SIYU_LLM_MODEL)")
        self._chat = ChatModel(config, breaker=breaker)
        self._deadline = config.timeout
        self._brand = brand

    async def write(
        self, question: str, history: Sequence[Turn], desk: Desk, offline: Finding | None
    ) -> Answer | None:
        """The LLM's checked answer to ``question`` at ``desk``, or None (module docstring)."""
        toolbox = Toolbox(desk)
        messages = prompt(question, history, desk, offline, brand=self._brand)
        try:
            with budget(self._deadline):
                text = await self._converse(messages, toolbox)
        except LLMError as exc:
            log_fallback(log, "LLM retail answer", exc)
            return None
        return self._checked(text, desk, offline, toolbox.findings)

    async def aclose(self) -> None:
        """Release the HTTP connections."""
        await self._chat.aclose()

    async def _converse(self, messages: list[BaseMessage], toolbox: Toolbox) -> str:
        """Ask the model, running the tools it calls, until it answers with text."""
        model = self._chat.model.bind_tools(list(toolbox.tools))
        for _ in range(MAX_TOOL_ROUNDS + 1):
            reply = await self._chat.invoke(model, messages)
            if not reply.tool_calls:
                return final_text(reply)
            messages += [reply, *(toolbox.run(call) for call in reply.tool_calls)]
        raise LLMError(f"the LLM still called tools after {MAX_TOOL_ROUNDS} rounds")

    def _checked(
        self, text: str, desk: Desk, offline: Finding | None, found: Sequence[Finding]
    ) -> Answer | None:
        if offline is None and not found:
            log.info("the LLM called no tool for a question without a retail answer")
            return None
        given = [desk.day(desk.now), *(f.text for f in found)]
        if offline is not None:
            given += [offline.text, *offline.facts]
        invented = unsupported_facts(text, given)
        if invented:
            log.warning(
                "LLM retail answer quotes %s, not in the records: answering from the records",
                "、".join(invented),
            )
            return None
        used = [*([offline] if offline is not None else []), *found]
        return replace(as_answer(Finding(text, _citations(used))), answered_by="llm")


def prompt(
    question: str, history: Sequence[Turn], desk: Desk, offline: Finding | None, *, brand: str
) -> list[BaseMessage]:
    """System rules, the recent turns, then the question (with ``offline`` as source [1])."""
    store = desk.store.name if desk.store is not None else "未知"
    system = SystemMessage(SYSTEM_PROMPT.format(brand=brand, today=desk.day(desk.now), store=store))
    past = [HumanMessage(t.text) if t.role == "user" else AIMessage(t.text) for t in history]
    asked = f"会员问题：{question}"
    if offline is not None:
        asked = f"资料：\n[1] {offline.text}\n\n{asked}"
    return [system, *past, HumanMessage(asked)]


def final_text(reply: AIMessage) -> str:
    """The model's answer without source numbers; LLMError when it wrote nothing."""
    text = reply_text(_SOURCE_MARK.sub("", reply.text))  # plain, no source line of its own
    if not text:
        raise LLMError("the LLM returned empty content")
    return text


def _citations(findings: Iterable[Finding]) -> tuple[Citation, ...]:
    unique: dict[str, Citation] = {}
    for finding in findings:
        for citation in finding.citations:
            unique.setdefault(citation.chunk_id, citation)
    return tuple(unique.values())


# ---- prices and dates ---------------------------------------------------------------------------

_NUM: Final = r"\d+(?:\.\d+)?"
_FACT: Final = re.compile(
    r"(?<![\d.])(?:"
    rf"(?P<manjian>满(?P<least>{_NUM})元?减(?P<off>{_NUM}))元?"
    r"|(?P<year>\d{4})(?:年|[-/.])(?P<ymonth>\d{1,2})(?:月|[-/.])(?P<yday>\d{1,2})[日号]?"
    r"|(?P<month>\d{1,2})(?:月|/)(?P<day>\d{1,2})[日号]?"
    rf"|[¥]\s*(?P<yen>{_NUM})"
    rf"|(?P<yuan>{_NUM})\s*(?:元|块)"
    rf"|(?P<rate>{_NUM})\s*折"
    r")(?!\d)"
)
"""Prices (``29.9元``, ``¥29.9``, ``8折``, ``满100减20``) and dates (``3月15日``/``号``,
``2026-03-15``, ``3/15``) as written, after NFKC (full-width digits and ``￥`` become ASCII)."""


def quoted_facts(text: str) -> set[str]:
    """The prices and dates of ``text``, canonically spelt: ``¥49.90`` → ``49.9元``,
    ``3月15号`` / ``3/15`` → ``3月15日``, ``2026-03-15`` → ``2026年3月15日``."""
    return {_canonical(m) for m in _FACT.finditer(unicodedata.normalize("NFKC", text))}


def unsupported_facts(text: str, sources: Iterable[str]) -> list[str]:
    """The prices and dates of ``text`` that none of ``sources`` has (sorted).

    A date without a year matches the same day of any year in the sources; a date with a year
    matches that date, or the same day written without a year."""
    known = set().union(*(quoted_facts(s) for s in sources))
    loose = {_yearless(f) for f in known}
    return sorted(f for f in quoted_facts(text) if not _supported(f, known, loose))


def _supported(fact: str, known: set[str], loose: set[str]) -> bool:
    bare = _yearless(fact)
    return fact in loose if bare == fact else fact in known or bare in known


def _yearless(fact: str) -> str:
    return re.sub(r"^\d{4}年", "", fact)


def _canonical(match: re.Match[str]) -> str:
    g = match.groupdict()
    if g["manjian"]:
        return f"满{_number(g['least'])}减{_number(g['off'])}"
    if g["year"]:
        return f"{g['year']}年{int(g['ymonth'])}月{int(g['yday'])}日"
    if g["month"]:
        return f"{int(g['month'])}月{int(g['day'])}日"
    if g["rate"]:
        return f"{_number(g['rate'])}折"
    return f"{_number(g['yen'] or g['yuan'])}元"


def _number(digits: str) -> str:
    """``49.90`` → ``49.9``, ``18.0`` → ``18``: the same amount spelt one way."""
    return digits.rstrip("0").rstrip(".") if "." in digits else digits
