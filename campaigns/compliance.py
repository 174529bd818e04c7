"""The compliance check every marketing message passes before it is written to the outbox.

:func:`check_copy` returns the :class:`Violation` list of one message (empty = it may go out):

- ``absolute``: an Advertising-Law absolute term (below).
- ``sensitive``: one of the operator's sensitive words (case-insensitive substring).
- ``fact``: a price, amount, date, time, percentage, discount, multiplier, quantity or code that
  does not appear verbatim in ``source`` (the promotions' text): the LLM invented or changed it.
- ``empty``, ``too_long`` (UTF-8 bytes, the platforms count bytes), ``no_opt_out``.

Every comparison runs on a normalised text (:func:`normalise`): NFKC (full-width digits, letters,
``￥`` and ``％`` become ASCII), and whitespace removed unless it sits between two ASCII letters or
digits, because Chinese copy spaces numbers for looks ("满 300 元减 60 元" is "满300元减60元").

**Absolute terms.** Source: 《中华人民共和国广告法》(2015 rev.) art. 9 (3) forbids "国家级",
"最高级", "最佳" and terms of the same meaning; :data:`ABSOLUTE_TERMS` adds the terms SAMR cases
and the platforms' 极限词 lists treat as such. The exemptions follow SAMR's
《广告绝对化用语执法指南》(2023年第6号公告), which excludes statements of objective time order:

- "最" followed by anything is refused, except 最近 / 最后 / 最终 (time order: "最后一天"), and
  最多 / 最少 directly before a number or 限 ("每人最多2袋", "最多限购2袋": a purchase limit,
  not a claim). **最新 is refused**: regulators still fine "最新款/最新技术" in ads, and "新品"
  says the same without the risk.
- "第一" is refused except as an ordinal before a measure word or 时间 ("第一件", "第一次",
  "第一时间"); "第一名" is a ranking claim and refused.
- A term in the operator's own promotion text is still refused: the law applies to the message
  we send, whoever wrote the words.

**Facts.** :func:`facts_of` finds them and gives each a canonical spelling so that cosmetic
variants compare equal: ``¥199`` / ``199块`` → ``199元``; ``满300元减60元`` → ``满300减60``.
A fact of the copy passes when it is among the source's facts, or occurs in the normalised
source not glued to other digits or letters ("12月18日" inside "2026年12月18日" passes, "99元"
inside "199元" does not). Any other number (with its unit, "30天") is a fact too: a message must
not carry a figure the knowledge does not. Chinese numerals (三倍) are not compared.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from bot.text import utf8_len
from campaigns.config import OPT_OUT_HINT

ABSOLUTE_TERMS: Final[tuple[str, ...]] = (
    # 最-words (any other 最 is caught by the bare "最" rule; the listed ones name the term).
    "最", "最佳", "最好", "最优", "最低", "最低价", "最便宜", "最高", "最高级", "最大", "最新",
    "最先进", "最具", "最受欢迎", "全网最", "史上最",
    # Rank, uniqueness and grade.
    "第一", "唯一", "首个", "首选", "首家", "首发", "独家", "独一无二", "绝无仅有", "史无前例",
    "顶级", "顶尖", "极品", "极致", "终极", "国家级", "世界级", "王牌", "销量冠军", "领先",
    # Guarantees.
    "绝对", "100%", "万能",
    # English rank claims (compared case-insensitively).
    "NO.1", "TOP1",
)  # fmt: skip
"""Advertising Law art. 9 (3) absolute terms (see the module docstring for sources and rules)."""

_NOT_A_CLAIM_AFTER_ZUI: Final = r"(?!近|后|终)(?![多少](?:\d|限))"
_ORDINAL_AFTER_DIYI: Final = "件次天日周月年单杯份瓶盒袋步期轮批个位时十百千万"


@dataclass(frozen=True, slots=True)
class Violation:
    """One reason a message may not go out: ``kind`` and the offending ``term`` (or detail)."""

    kind: str  # "absolute" | "sensitive" | "fact" | "empty" | "too_long" | "no_opt_out"
    term: str

    def describe(self) -> str:
        """A Chinese sentence naming the problem (fed back to the LLM on a retry)."""
        return {
            "absolute": f"使用了广告法禁止的绝对化用语“{self.term}”",
            "sensitive": f"使用了敏感词“{self.term}”",
            "fact": f"“{self.term}”不在活动原文中（价格、日期、数量和券码必须逐字照抄原文）",
            "empty": "内容为空",
            "too_long": f"太长（{self.term}）",
            "no_opt_out": f"缺少退订提示“{self.term}”",
        }.get(self.kind, f"{self.kind}: {self.term}")


def normalise(text: str) -> str:
    """NFKC, then whitespace dropped unless it separates two ASCII letters or digits."""
    return _SPACE.sub(_keep_ascii_gap, unicodedata.normalize("NFKC", text))


_SPACE: Final = re.compile(r"\s+")


def _keep_ascii_gap(match: re.Match[str]) -> str:
    text, start, end = match.string, match.start(), match.end()
    before = text[start - 1] if start else ""
    after = text[end] if end < len(text) else ""
    return " " if _ascii_alnum(before) and _ascii_alnum(after) else ""


def _ascii_alnum(char: str) -> bool:
    return char.isascii() and char.isalnum()


def _absolute_pattern() -> re.Pattern[str]:
    special = {
        "最": "最" + _NOT_A_CLAIM_AFTER_ZUI + r"[\u4e00-\u9fff]?",
        "第一": f"第一(?![{_ORDINAL_AFTER_DIYI}])",
        "100%": r"(?<![\d.])100%",
        "NO.1": r"no\.?1(?!\d)",
        "TOP1": r"top\.?1(?!\d)",
    }
    terms = sorted(ABSOLUTE_TERMS, key=len, reverse=True)
    return re.compile("|".join(special.get(t, re.escape(t)) for t in terms), re.IGNORECASE)


_ABSOLUTE: Final = _absolute_pattern()

_NUM: Final = r"\d+(?:\.\d+)?"
_UNITS: Final = (
    "个月|小时|分钟|公斤|千克|公里|积分|天|周|月|年|日|件|瓶|袋|盒|桶|张|次|枚|份|只|个|位|斤|克|升"
    "|人|单|kg|g|ml|L|km"
)
_FACT: Final = re.compile(
    "|".join(
        (
            rf"(?P<manjian>满{_NUM}元?减{_NUM}元?)",
            r"(?P<date>\d{4}年\d{1,2}月\d{1,2}[日号]|\d{4}[-/.]\d{1,2}[-/.]\d{1,2}(?!\d)"
            r"|\d{1,2}月\d{1,2}[日号]|\d{1,2}/\d{1,2}(?!\d))",
            r"(?P<time>\d{1,2}:\d{2}(?::\d{2})?(?!\d)|\d{1,2}[点时](?:\d{1,2}分|半)?)",
            rf"(?P<yen>[¥￥]{_NUM})",
            rf"(?P<yuan>{_NUM}万?(?:元|块钱?))",
            rf"(?P<rate>{_NUM}[%折倍])",
            r"(?P<code>(?<![A-Za-z0-9-])(?=[A-Z0-9-]*\d)[A-Z0-9][A-Z0-9-]{3,}(?![A-Za-z0-9-]))",
            rf"(?P<number>{_NUM}(?:{_UNITS})?)",
        )
    ).replace("(?P<", r"(?<![\d.])(?P<")
)
"""Facts as written; every alternative starts outside a number (no digit or "." before it)."""


def fact_spans(text: str) -> list[tuple[int, int]]:
    """Where the facts of ``text`` are, as written (a cut must not fall inside one)."""
    return [m.span() for m in _FACT.finditer(text)]


def facts_of(text: str) -> set[str]:
    """The facts of ``text`` in canonical spelling (see the module docstring)."""
    return {_canonical(m) for m in _FACT.finditer(normalise(text))}


def _canonical(match: re.Match[str]) -> str:
    fact, kind = match.group(), match.lastgroup
    if kind == "manjian":
        return fact.replace("元", "")
    if kind == "yen":
        return f"{fact[1:]}元"
    if kind == "yuan":
        return re.sub(r"块钱?$", "元", fact)
    return fact


def check_copy(
    text: str,
    *,
    source: str,
    sensitive_words: Sequence[str] = (),
    max_bytes: int = 2048,
    opt_out_hint: str = OPT_OUT_HINT,
) -> list[Violation]:
    """Every reason ``text`` may not be sent; facts are checked against ``source``."""
    if not text.strip():
        return [Violation("empty", "")]
    flat = normalise(text)
    violations = [
        *_absolute_terms(flat),
        *_sensitive_words(flat, sensitive_words),
        *_unsupported_facts(text, source),
    ]
    size = utf8_len(text)
    if size > max_bytes:
        violations.append(Violation("too_long", f"{size} > {max_bytes} bytes"))
    if normalise(opt_out_hint) not in flat:
        violations.append(Violation("no_opt_out", opt_out_hint))
    return violations


def _absolute_terms(flat: str) -> list[Violation]:
    terms = dict.fromkeys(m.group() for m in _ABSOLUTE.finditer(flat))
    return [Violation("absolute", t) for t in terms]


def _sensitive_words(flat: str, words: Sequence[str]) -> list[Violation]:
    folded = flat.casefold()
    return [Violation("sensitive", w) for w in words if w.strip() and _fold(w) in folded]


def _fold(word: str) -> str:
    return normalise(word).casefold()


def _unsupported_facts(text: str, source: str) -> list[Violation]:
    flat_source = normalise(source)
    known = facts_of(source)
    missing = [f for f in facts_of(text) if f not in known and not _occurs_alone(f, flat_source)]
    return [Violation("fact", f) for f in sorted(missing)]


def _occurs_alone(fact: str, text: str) -> bool:
    """True when ``fact`` occurs in ``text`` not glued to letters, digits or a decimal point."""
    start = text.find(fact)
    while start != -1:
        end = start + len(fact)
        if not _glued(text, start - 1, start - 2) and not _glued(text, end, end + 1):
            return True
        start = text.find(fact, start + 1)
    return False


def _glued(text: str, at: int, beyond: int) -> bool:
    """Whether ``text[at]`` continues a number or code: an ASCII letter or digit, or a "."
    with a digit on its far side (``beyond``)."""
    if not 0 <= at < len(text):
        return False
    if _ascii_alnum(text[at]):
        return True
    return text[at] == "." and 0 <= beyond < len(text) and text[beyond].isdigit()
