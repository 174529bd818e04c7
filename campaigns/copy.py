"""Marketing copy per segment (千人千面): an LLM draft checked for compliance, or a template.

:meth:`CopyWriter.write` gives one :class:`Copy` per (segment, interest, promotions), cached for the
writer's life, so a run of 100,000 members asks the LLM once per distinct audience.

- **With an LLM** (``LLMConfig.enabled``): the prompt gives the brand voice, the segment's tone
  (dormant = win-back), the member's interest, and the promotions as the only facts, with the
  instruction to copy prices, dates and codes exactly. Each draft goes through
  :func:`campaigns.compliance.check_copy` against exactly the promotions block the model was
  shown; a failing draft is regenerated with its violations named, up to ``attempts`` drafts.
  When every draft fails, or the LLM errors or times out, the writer falls back to the template.
  Drafts go through :meth:`bot.llm.ChatModel.invoke` like answers do (one ``SIYU_LLM_TIMEOUT``
  deadline per draft; ``breaker``, the app's LLM breaker when given, skips a failing LLM).
- **Templates** (no LLM, or the fallback): the operator's template for the segment, else the
  operator's ``default``, else :data:`DEFAULT_TEMPLATES` (the operator's words win over ours).
  Placeholders: ``{brand} {segment} {interest} {promotions} {title} {valid_to}``. Operator
  templates are checked when the writer is built: an unknown placeholder, a malformed format
  string, an absolute term or sensitive word in the static text, or static text that leaves no
  room for a promotion is a ValueError then, not at send time. The rendered text copies the
  promotions verbatim, so it is checked for absolute terms and sensitive words only (a term in
  the operator's promotion text still counts): a violation raises :class:`CopyRejected` (the
  planner skips the rows with reason ``compliance``).

Every text ends with ``"\\n" + opt_out_hint``, appended here (never trusted to the LLM), and fits
``max_bytes``: a template names at most :data:`MAX_TEMPLATE_PROMOTIONS`, each summarised to
:data:`PROMOTION_SUMMARY_BYTES`, and drops promotions from the end (those matching the interest
come first); a single promotion that is still too long is cut at a sentence boundary with "…",
never inside a fact. The brand name is masked before checking: it is a registered name, exempt
from the absolute-term rule (SAMR 2023 guide, 情形四), and its digits are not facts.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any, Final

from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompts import ChatPromptTemplate
from langchain_core.runnables import Runnable

from bot.config import LLMConfig
from bot.errors import LLMError
from bot.llm import ChatModel, log_fallback
from bot.text import utf8_len
from campaigns.compliance import Violation, check_copy
from campaigns.config import CampaignsConfig
from campaigns.promotions import Promotion
from campaigns.templates import (
    DEFAULT_TEMPLATES,
    MAX_TEMPLATE_PROMOTIONS,
    PROMOTION_SUMMARY_BYTES,
    local_date,
    promotion_block,
    render_template,
    shorten,
    template_fields,
)
from knowledge.breaker import CircuitBreaker

log = logging.getLogger(__name__)

__all__ = [
    "DEFAULT_TEMPLATES", "Copy", "CopyRejected", "CopyWriter", "render_template", "shorten",
]  # fmt: skip

SEGMENT_TONES: Final[dict[str, str]] = {
    "new": "新会员：热情欢迎，介绍新人可以享受的优惠",
    "active": "活跃会员：简洁直接地告知正在进行的优惠",
    "at_risk": "有一阵子没来的会员（15–30天）：温和提醒，表达关心，不要催促",
    "dormant": "沉睡会员（30–90天没来）：挽回的语气，表达想念，邀请回来看看",
    "lost": "流失会员（90天以上没来）：真诚、低打扰，简短说明有什么优惠",
}

SYSTEM_PROMPT: Final = (
    "你是{brand}的会员营销文案助手，为{brand}写一条发给会员的消息。\n"
    "1. 只能使用“活动原文”里的信息，不要编造活动、价格、日期或条件。\n"
    "2. 价格、日期、时间、折扣、数量和券码必须逐字照抄活动原文，不要改写、换算或四舍五入。\n"
    "3. 遵守《广告法》，不用绝对化用语，例如“最”“最低价”“第一”“唯一”“首选”“顶级”"
    "“极品”“国家级”“独家”“绝对”“100%”。\n"
    "4. 用简体中文，语气亲切自然，不超过300字；不用 Markdown 标题、加粗或表格。\n"
    "5. 不要写退订提示，系统会自动加上。只输出消息正文。{avoid}"
)
COPY_PROMPT: Final = ChatPromptTemplate.from_messages(
    [("system", SYSTEM_PROMPT), ("human", "{request}")]
)


@dataclass(frozen=True, slots=True)
class Copy:
    """A message ready for the outbox; ``variant`` is what reports group reactivation by."""

    text: str
    variant: str
    used_llm: bool


class CopyRejected(Exception):
    """The copy for an audience breaks a compliance rule (e.g. an absolute term in the
    promotion text itself); the planner plans no message for it (``compliance``)."""

    def __init__(self, violations: Sequence[Violation]) -> None:
        self.violations = tuple(violations)
        super().__init__("；".join(v.describe() for v in self.violations))


def _by_interest(promotions: Sequence[Promotion], interest: str | None) -> list[Promotion]:
    """Promotions about the interest (tag, title or text) first, the order otherwise kept."""
    if not interest:
        return list(promotions)

    def about(p: Promotion) -> bool:
        return interest in p.tags or interest in p.title or interest in p.text

    return sorted(promotions, key=lambda p: not about(p))


CacheKey = tuple[str, str | None, tuple[str, ...]]


class CopyWriter:
    """Writes compliant copy per audience; one instance per planning run (it caches)."""

    def __init__(
        self,
        config: CampaignsConfig,
        llm: LLMConfig | None,
        *,
        brand: str,
        max_bytes: int = 2048,
        attempts: int = 3,
        breaker: CircuitBreaker | None = None,
    ) -> None:
        if attempts < 1:
            raise ValueError("attempts must be at least 1")
        self._config = config
        self._brand = brand
        self._max_bytes = max_bytes
        self._attempts = attempts
        self._suffix = f"\n{config.opt_out_hint}"
        self._budget = max_bytes - utf8_len(self._suffix)
        for name, template in {**DEFAULT_TEMPLATES, **config.templates}.items():
            self._check_template(name, template)
        self._cache: dict[CacheKey, Copy | tuple[Violation, ...]] = {}
        self._locks: dict[CacheKey, asyncio.Lock] = {}
        self._chat: ChatModel | None = None
        self._chain: Runnable[dict[str, Any], str] | None = None
        if llm is not None and llm.enabled:
            self._chat = ChatModel(llm, breaker=breaker)
            self._chain = COPY_PROMPT | self._chat.model | StrOutputParser()

    async def aclose(self) -> None:
        """Release the LLM's HTTP connections."""
        if self._chat is not None:
            await self._chat.aclose()

    async def write(
        self, segment: str, promotions: Sequence[Promotion], *, interest: str | None = None
    ) -> Copy:
        """The copy for this audience; :class:`CopyRejected` when no compliant copy exists."""
        if not promotions:
            raise ValueError("copy needs at least one promotion")
        key: CacheKey = (segment, interest, tuple(p.doc_id for p in promotions))
        async with self._locks.setdefault(key, asyncio.Lock()):
            result = self._cache.get(key)
            if result is None:
                result = await self._compose(segment, _by_interest(promotions, interest), interest)
                self._cache[key] = result
        if isinstance(result, Copy):
            return result
        raise CopyRejected(result)

    async def _compose(
        self, segment: str, promotions: Sequence[Promotion], interest: str | None
    ) -> Copy | tuple[Violation, ...]:
        if self._chat is not None and self._chain is not None:
            text = await self._llm_copy(self._chat, self._chain, segment, promotions, interest)
            if text is not None:
                variant = f"llm:{segment}:{interest}" if interest else f"llm:{segment}"
                return Copy(text, variant, used_llm=True)
        return self._template_copy(segment, promotions, interest)

    # -- templates ---------------------------------------------------------------------------

    def _check_template(self, name: str, template: str) -> None:
        static = template_fields(name, template)
        checked = self._check(static, source=static)
        problems = [v for v in checked if v.kind in ("absolute", "sensitive")]
        if problems:
            reasons = "；".join(v.describe() for v in problems)
            raise ValueError(f"copy template {name!r} is not compliant: {reasons}")
        if utf8_len(static) >= self._budget:
            raise ValueError(f"copy template {name!r} leaves no room for promotions")

    def _template_for(self, segment: str) -> str:
        templates = self._config.templates
        return (
            templates.get(segment)
            or templates.get("default")
            or DEFAULT_TEMPLATES.get(segment)
            or DEFAULT_TEMPLATES["default"]
        )

    def _template_copy(
        self, segment: str, promotions: Sequence[Promotion], interest: str | None
    ) -> Copy | tuple[Violation, ...]:
        text = self._finish(self._fit(self._template_for(segment), segment, promotions, interest))
        # The promotions are copied verbatim, so the text is its own fact source: what can fail
        # is a term or word in the operator's template or promotion text (or the size).
        violations = self._check(text, source=text)
        return tuple(violations) if violations else Copy(text, f"template:{segment}", False)

    def _fit(
        self, template: str, segment: str, promotions: Sequence[Promotion], interest: str | None
    ) -> str:
        def render(chosen: Sequence[Promotion]) -> str:
            return render_template(
                template, brand=self._brand, promotions=chosen, segment=segment,
                interest=interest, tz=self._config.timezone,
            ).strip()  # fmt: skip

        summaries = [
            replace(p, text=shorten(p.text, PROMOTION_SUMMARY_BYTES))
            for p in promotions[:MAX_TEMPLATE_PROMOTIONS]
        ]
        for count in range(len(summaries), 0, -1):
            text = render(summaries[:count])
            if utf8_len(text) <= self._budget:
                return text
        first = promotions[0]
        bare = render([replace(first, text="")])
        room = self._budget - utf8_len(bare) - 1  # the newline after the title
        return render([replace(first, text=shorten(first.text, room))])

    # -- LLM ---------------------------------------------------------------------------------

    async def _llm_copy(
        self,
        chat: ChatModel,
        chain: Runnable[dict[str, Any], str],
        segment: str,
        promotions: Sequence[Promotion],
        interest: str | None,
    ) -> str | None:
        facts = self._facts_block(promotions)
        feedback: list[Violation] = []
        for attempt in range(1, self._attempts + 1):
            inputs = {
                "brand": self._brand,
                "avoid": self._avoid_line(),
                "request": _request(segment, interest, facts, feedback),
            }
            try:
                draft = (await chat.invoke(chain, inputs)).strip()  # empty: refused below
            except LLMError as exc:
                log_fallback(log, f"LLM copy for {segment}", exc)
                return None
            text = self._finish(draft)
            feedback = (
                self._check(text, source=facts) if draft.strip() else [Violation("empty", "")]
            )
            if not feedback:
                return text
            log.info("LLM copy draft %d for %s refused: %s", attempt, segment, feedback)
        log.warning("LLM copy for %s failed the check %d times, using the template", segment,
                    self._attempts)  # fmt: skip
        return None

    def _facts_block(self, promotions: Sequence[Promotion]) -> str:
        """The promotions as the model sees them; drafts are fact-checked against this text."""
        blocks = []
        for promotion in promotions:
            end = promotion.valid_to
            until = f"\n活动截止：{local_date(end, self._config.timezone)}" if end else ""
            blocks.append(f"{promotion_block(promotion)}{until}")
        return "\n\n".join(blocks)

    def _avoid_line(self) -> str:
        words = [w for w in self._config.sensitive_words if w.strip()]
        return f"\n6. 不要使用这些词：{'、'.join(words)}。" if words else ""

    # -- shared ------------------------------------------------------------------------------

    def _finish(self, body: str) -> str:
        """The body without any opt-out hint of its own, then ours on the last line."""
        return body.replace(self._config.opt_out_hint, "").strip() + self._suffix

    def _check(self, text: str, *, source: str) -> list[Violation]:
        # The brand is masked with spaces of the same byte length: the size check is unchanged,
        # and normalisation drops the spaces between Chinese characters.
        masked = text.replace(self._brand, " " * utf8_len(self._brand)) if self._brand else text
        return check_copy(
            masked, source=source, sensitive_words=self._config.sensitive_words,
            max_bytes=self._max_bytes, opt_out_hint=self._config.opt_out_hint,
        )  # fmt: skip


def _request(segment: str, interest: str | None, facts: str, feedback: Sequence[Violation]) -> str:
    lines = [f"会员分群：{SEGMENT_TONES.get(segment, segment)}"]
    if interest:
        lines.append(f"会员兴趣：{interest}（优先介绍相关的活动）")
    lines.append(f"活动原文：\n{facts}")
    if feedback:
        problems = "\n".join(f"- {v.describe()}" for v in feedback)
        lines.append(f"上一稿没有通过检查，请改正后重写：\n{problems}")
    return "\n\n".join(lines)
