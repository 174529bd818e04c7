"""Telling an angry complaint from a question, offline, with a small lexicon and a score.

A complaint is handed to a person at once, flagged for the agent (``bot.commands.Commands.handoff``
with ``complaint=``); a question with mild dissatisfaction is answered like any other. The rule
(:func:`complaint_score`, a complaint at :data:`THRESHOLD` or more):

==========  ======  ===========================================================================
signal      points  examples
==========  ======  ===========================================================================
escalation  2       投诉 (not "怎么投诉" / "投诉电话"), 差评, 12315, 消协, 曝光, 举报, 维权, 起诉
abuse       2       骗子, 坑人, 黑店, 垃圾 (not 垃圾袋 …), 恶心, 什么破 / 破超市, 气死, 太差
demand      1       退钱, 赔钱, 赔偿, 给个说法, 必须赔 / 退 / 给
problem     1       臭, 发霉, 变质, 过期, 坏了, 有虫, 吃坏, 拉肚子, 缺斤少两, 少送, 态度差
intensity   1       two or more ！/! in a row, or three in the message
==========  ======  ===========================================================================

Each signal counts once however often it appears. An escalation or abuse word preceded by
不是 / 没有 / 不想 / 不要 does not count ("不是投诉，想问下…"). So "东西坏了能退吗" (1) and
"退货政策是什么" (0) are questions; "三文鱼是臭的！！" (2) and "我要投诉" (2) are
complaints; "怎么投诉？" asks for the channel (the brand's FAQ answers it).

Limits, on purpose: it reads words, not meaning. Sarcasm ("真是太好了呢") and a calm complaint
without these words ("三文鱼不太新鲜，希望改进") are answered as questions (where nothing answers
them, the not-found reply offers a person); a long message that mentions 投诉 in passing is handed
off. Emoji and punctuation other than ！ are not read. The lists are short and meant to be
extended from real conversations (``siyu report`` counts complaints).
"""

from __future__ import annotations

import re
import unicodedata
from typing import Final

THRESHOLD: Final = 2
"""A message scoring this many points or more is a complaint."""

_NEGATED: Final = re.compile(r"(?:不是|没有|不想|不要|并非)$")

ESCALATION: Final = re.compile(
    r"投诉|差评|12315|消协|消费者协会|曝光|举报|维权|起诉|告你们|市场监管|工商局"
)
HOW_TO_COMPLAIN: Final = re.compile(
    r"(?:怎么|如何|怎样|在哪|哪里|去哪|哪儿)(?:能|可以|才能|去)?投诉"
    r"|投诉(?:电话|热线|渠道|方式|途径|邮箱|入口|流程|是多少|找谁)"
)
ABUSE: Final = re.compile(
    r"骗子|骗人|欺诈|坑人|坑爹|黑店|奸商|无良|垃圾(?![袋桶箱分处清])|恶心|什么破"
    r"|破(?:超市|店|东西|服务|地方|公司|玩意|小程序|app)|气死|太差|差劲|烂透|滚蛋|他妈|tmd|尼玛"
)
DEMAND: Final = re.compile(r"退钱|赔钱|赔偿|给(?:我)?(?:个)?说法|必须(?:赔|退|给)")
PROBLEM: Final = re.compile(
    r"臭|发霉|霉了|变质|馊|过期|坏了|坏的|烂了|有虫|虫子|异物|吃坏|拉肚子|食物中毒|缺斤少两"
    r"|少送|短斤|态度(?:差|恶劣|不好)"
)
INTENSITY: Final = re.compile(r"!{2,}")


def complaint_score(text: str) -> int:
    """Points for ``text`` under the rule in the module docstring."""
    folded = unicodedata.normalize("NFKC", text).casefold()  # ！ → !
    asks_how = HOW_TO_COMPLAIN.search(folded) is not None
    score = 0
    if _found(ESCALATION, folded, skip_how_to=asks_how):
        score += 2
    if _found(ABUSE, folded):
        score += 2
    if DEMAND.search(folded):
        score += 1
    if PROBLEM.search(folded):
        score += 1
    if INTENSITY.search(folded) or folded.count("!") >= 3:
        score += 1
    return score


def is_complaint(text: str) -> bool:
    """True when ``text`` reads as a complaint or strong negative sentiment."""
    return complaint_score(text) >= THRESHOLD


def _found(pattern: re.Pattern[str], text: str, *, skip_how_to: bool = False) -> bool:
    for match in pattern.finditer(text):
        if _NEGATED.search(text[: match.start()]):
            continue
        if skip_how_to and match.group() == "投诉":
            continue
        return True
    return False
