"""Group addressing: in a group the bot answers only when spoken to.

A group message is addressed to the bot when the channel says it was @-mentioned, or when the text
calls the bot by name: "@小域 …" anywhere; "小域，…" / "小域 …" / "小域：…" at the start (after an
optional greeting such as "你好"); "…，小域？" at the end; or the name followed by a comma or colon
anywhere ("请问下小域，会员日是哪天"). "小域的客服电话是多少" talks *about* the bot and is not an
address. The address is removed from the question; replies quote the asker.
"""

from __future__ import annotations

import re

from bot.types import InboundMessage

_GREETINGS = ("你好", "您好", "嗨", "哈喽", "hi", "hello", "hey", "请问")
# After the name: a separator, or the end of the text ("小域" alone is still an address).
_AFTER_NAME = r"(?:[\s,，:：!！~、]+|$)"
_LEADING_PUNCT = " \t\n\u3000,，:：!！~、"


class Addressing:
    """How the bot recognises that a group message is meant for it (by its ``name``)."""

    def __init__(self, name: str) -> None:
        if not name.strip():
            raise ValueError("the bot needs a non-empty name to be addressed in groups")
        self.name = name.strip()
        escaped = re.escape(self.name)
        greeting = "|".join(re.escape(g) for g in _GREETINGS)
        self._mention = re.compile(rf"@\s*{escaped}[\s,，:：!！~、]*", re.IGNORECASE)
        # Tried in order; the first that matches is removed from the question.
        self._by_name = (
            re.compile(
                rf"^\s*(?:(?:{greeting})[\s,，!！~]*)?{escaped}{_AFTER_NAME}", re.IGNORECASE
            ),
            re.compile(rf"[\s,，]+{escaped}(?=[?？!！。.~]*\s*$)", re.IGNORECASE),
            re.compile(rf"{escaped}[,，:：]\s*", re.IGNORECASE),
        )

    def question(self, msg: InboundMessage) -> str | None:
        """The text meant for the bot, address removed; None when the bot should stay silent.

        1:1 messages are always addressed. A group message @-mentioning the bot with nothing else
        gives "" (the caller treats an empty question as a request for help).
        """
        if not msg.is_group:
            return msg.text.strip()
        text, mentions = self._mention.subn(" ", msg.text)
        if mentions or msg.mentioned_bot:
            return _clean(text)
        for pattern in self._by_name:
            text, count = pattern.subn("", msg.text, count=1)
            if count:
                return _clean(text)
        return None


def _clean(text: str) -> str:
    return re.sub(r"\s{2,}", " ", text).strip().lstrip(_LEADING_PUNCT).strip()


def quote_for(msg: InboundMessage) -> str | None:
    """Whom a reply quotes: the asker in groups, nobody in 1:1 chats."""
    if not msg.is_group:
        return None
    return msg.sender.display_name or msg.sender.external_id
