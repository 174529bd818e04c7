"""Greetings, thanks, goodbyes and "are you a bot?", answered briefly in the brand's voice, offline.

Decisions:

- A message is small talk only when *all* of it is: after normalising (NFKC, case-folded,
  punctuation, spaces, the bot's name and trailing particles 呀/啊/哈/呢/啦/哦 dropped) it must be a
  run of known phrases ("你好", "好的谢谢", "谢谢，再见", "你是机器人吗"). So small talk can never
  capture a real question: "你好，车厘子多少钱" is not small talk, and neither is "你们几点关门".
- A greeting in front of a question, or thanks after it, is stripped (:func:`strip_pleasantries`)
  and the question is answered: "你好，车厘子多少钱" is answered as "车厘子多少钱". Single
  characters (早, 嗨, 亲) are stripped only when a separator follows ("早上几点开门" keeps 早).
- The bot says it is an AI when asked, and how to reach a person.
- Replies vary (a few wordings, picked by the message id, so a retry gets the same one) and the
  greeting follows the local time of day (早上好 / 中午好 / 下午好 / 晚上好).
"""

from __future__ import annotations

import enum
import re
import unicodedata
import zlib
from dataclasses import dataclass
from datetime import datetime
from typing import Final


class Kind(enum.StrEnum):
    """What a small-talk phrase does."""

    GREETING = "greeting"
    THANKS = "thanks"
    IDENTITY = "identity"
    BYE = "bye"
    ACK = "ack"


def _words(spaced: str) -> str:
    """A regex alternation of space-separated phrases, longest first."""
    return "|".join(sorted(spaced.split(), key=len, reverse=True))


_BOT = r"(?:真人|真的人|机器人|ai|人工智能|自动回复|智能客服|bot|robot)"
_WHO = rf"(?:谁|什么|哪位|人|客服|{_BOT})"

PHRASES: Final[dict[Kind, str]] = {
    Kind.IDENTITY: "|".join(
        (
            rf"(?:你|您)(?:是不是|到底是|是)(?:个)?{_WHO}(?:吗|么|啊)?(?:还是(?:个)?{_BOT})?",
            rf"(?:是不是|是)?(?:个)?{_BOT}(?:吗|么|啊)",
            r"(?:你|您)(?:叫|叫做)(?:什么|啥)(?:名字)?",
            rf"(?:你|您)(?:是)?{_BOT}还是{_BOT}",
            r"whoareyou|areyou(?:a)?(?:bot|robot|human|real|ai)",
        )
    ),
    Kind.GREETING: _words(
        "你好 您好 你们好 大家好 hi hello hey 哈喽 哈啰 嗨 早上好 早安 早 上午好 中午好 下午好 "
        "晚上好 在吗 在么 在不在 有人吗 有人在吗 在线吗 亲 客服在吗 请问 打扰了"
    ),
    Kind.THANKS: _words(
        "谢谢 谢谢你 谢谢您 谢谢你们 谢谢啦 谢谢了 多谢 谢了 谢啦 感谢 感谢你 感谢感谢 非常感谢 "
        "万分感谢 太感谢了 thanks thankyou thx 辛苦了 麻烦了"
    ),
    Kind.BYE: _words(
        "再见 拜拜 拜 bye byebye 88 886 没事了 没有了 没问题了 就这些 就这样 先这样 下次见 "
        "回头见 晚安"
    ),
    Kind.ACK: _words(
        "好的 好 ok okay 嗯 嗯嗯 知道了 明白了 收到 好滴 好哒 了解 行 可以 哦 噢 对 对的 是的"
    ),
}

_SCAN: Final = re.compile("|".join(f"(?P<{k.value}>{p})" for k, p in PHRASES.items()))
_DROP: Final = re.compile(r"[\W_]+")
_PARTICLES: Final = "呀啊哈呢啦哦喔嘛哇"
_SEP: Final = r"[\s,，.。!！~～、:：;；…]"
_LEADING: Final = re.compile(
    rf"^(?:{_SEP}*(?:(?:{PHRASES[Kind.GREETING]}){_SEP}+|"
    r"(?:你好|您好|你们好|在吗|在么|哈喽|早上好|上午好|中午好|下午好|晚上好|早安)"
    r"(?![吃看听玩用喝闻美帅棒厉笨聪])))+"
)
_TRAILING: Final = re.compile(rf"{_SEP}*(?:{PHRASES[Kind.THANKS]})[{_PARTICLES}了]?{_SEP}*$")


@dataclass(frozen=True, slots=True)
class SmallTalk:
    """The kinds of phrase a small-talk message is made of."""

    kinds: frozenset[Kind]


def classify(text: str, bot_name: str = "") -> SmallTalk | None:
    """The small talk ``text`` is, or None when any part of it is something else."""
    folded = unicodedata.normalize("NFKC", text).casefold()
    if bot_name:
        folded = folded.replace(bot_name.casefold(), " ")
    words = [w.rstrip(_PARTICLES) for w in _DROP.split(re.sub(r"\s+", "", folded))]
    kinds: set[Kind] = set()
    for word in filter(None, words):
        found = _kinds_of(word)
        if found is None:
            return None
        kinds |= found
    return SmallTalk(frozenset(kinds)) if kinds else None


def _kinds_of(word: str) -> set[Kind] | None:
    """The kinds of phrase ``word`` is a run of, or None when anything is left over."""
    kinds: set[Kind] = set()
    at = 0
    while at < len(word):
        match = _SCAN.match(word, at)
        if match is None or match.end() == at:
            return None
        kinds.add(Kind(match.lastgroup or ""))
        at = match.end()
    return kinds


def strip_pleasantries(text: str, bot_name: str = "") -> str:
    """``text`` without a leading greeting or trailing thanks; unchanged if nothing would remain."""
    stripped = text.strip()
    if bot_name:
        stripped = re.sub(rf"^{re.escape(bot_name)}{_SEP}*", "", stripped)
    stripped = _LEADING.sub("", stripped, count=1)
    stripped = _TRAILING.sub("", stripped, count=1).strip()
    return stripped if re.search(r"\w", stripped) else text.strip()


def reply(talk: SmallTalk, *, brand: str, name: str, at: datetime, key: str) -> str:
    """A short answer in the brand's voice; ``at`` is local time, ``key`` picks the wording."""
    kinds = talk.kinds
    pick = zlib.crc32(key.encode())
    if Kind.IDENTITY in kinds:
        return (
            f"我是{brand}的智能客服{name}，是AI机器人，不是真人哦。门店、商品、优惠活动和会员问题"
            "都可以问我；需要真人服务请回复“人工”。"
        )
    if Kind.BYE in kinds:
        thanks = "不客气！" if Kind.THANKS in kinds else ""
        return thanks + _choose(pick, _BYE).format(brand=brand, name=name)
    if Kind.THANKS in kinds:
        return _choose(pick, _THANKS).format(brand=brand, name=name)
    if Kind.GREETING in kinds:
        return _choose(pick, _GREETING).format(brand=brand, name=name, hello=_time_of_day(at))
    return f"好的～还有其他问题随时问{name}，{brand}随时为您服务。"


_GREETING: Final = (
    "{hello}！我是{brand}的智能客服{name}，请问有什么可以帮您？",
    "{hello}，这里是{brand}，我是{name}～门店、商品价格、优惠活动、会员积分都可以问我。",
    "{hello}，欢迎来到{brand}！想了解今天的优惠或者某个商品的价格，直接发给{name}就好。",
)
_THANKS: Final = (
    "不客气！能帮到您很开心，还有问题随时找{name}。{brand}祝您购物愉快～",
    "不用谢～{brand}随时为您服务，有问题直接问{name}就好。",
)
_BYE: Final = (
    "感谢您光临{brand}，祝您生活愉快！有需要随时找{name}。",
    "再见～{brand}随时欢迎您，有问题随时问{name}。",
)


def _choose(pick: int, options: tuple[str, ...]) -> str:
    return options[pick % len(options)]


def _time_of_day(at: datetime) -> str:
    hour = at.hour
    if 5 <= hour < 11:
        return "早上好"
    if 11 <= hour < 13:
        return "中午好"
    if 13 <= hour < 18:
        return "下午好"
    return "晚上好"
