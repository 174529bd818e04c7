"""Member commands: help, ask for a person, end that, opt out of and back into marketing.

A message is a command only when, normalised, it equals one of the command words exactly
(:func:`normalise`: NFKC so full-width letters become half-width, case-fold, trailing punctuation
dropped). "人工客服电话是多少" is a question, not a command.

Decisions:
- An empty question (a bare @-mention in a group) gets the help text.
- Opting out takes effect at once and is confirmed once; repeating it gets a short "您已退订"
  reminder. Opting in when already subscribed says so.
- While a person serves the member the bot stays silent, except for "结束人工" / "机器人" (ends
  the handoff) and the opt-out / opt-in words, which take effect at once as the rules require.
  Asking for a person again meanwhile is silent too. Adapters end the handoff when the human
  session closes (``Store.end_handoff``).
- Leaving the queue has natural variants (取消人工, 不用了, 退出排队, …); like every command they
  count only as the whole message, so "不用了，我想问会员日" is a question. The web chat's "leave
  the queue" button sends "结束人工", which stays a command word.
- The handoff reply says when a person will answer (:class:`bot.hours.ServiceHours`, inside or
  outside ``SIYU_HANDOFF_HOURS``), that the bot stays silent meanwhile, and how to come back.
"""

from __future__ import annotations

import enum
import unicodedata
from collections.abc import Sequence
from datetime import datetime, tzinfo

from bot.answer import Turn
from bot.config import BotConfig
from bot.hours import ServiceHours
from bot.models import Member
from bot.store import Store
from bot.types import HandoffReply, TextReply


class Command(enum.StrEnum):
    """What a command word asks for."""

    HELP = "help"
    HANDOFF = "handoff"
    END_HANDOFF = "end_handoff"
    OPT_OUT = "opt_out"
    OPT_IN = "opt_in"


LEAVE_WORDS = (
    "结束人工", "机器人", "取消人工", "不要人工", "不用人工", "退出人工", "退出排队", "取消排队",
    "不排了", "不用了", "不需要了", "回到智能客服",
)  # fmt: skip
"""End a handoff (leave the queue); "结束人工" is what the web chat's button sends."""

COMMAND_WORDS: dict[str, Command] = {
    **dict.fromkeys(("帮助", "help", "?", "菜单"), Command.HELP),
    **dict.fromkeys(("人工", "转人工", "客服", "找人工", "人工客服"), Command.HANDOFF),
    **dict.fromkeys(LEAVE_WORDS, Command.END_HANDOFF),
    **dict.fromkeys(("退订", "td", "取消订阅", "unsubscribe"), Command.OPT_OUT),
    **dict.fromkeys(("订阅", "subscribe"), Command.OPT_IN),
}

ALLOWED_DURING_HANDOFF = frozenset({Command.END_HANDOFF, Command.OPT_OUT, Command.OPT_IN})

_TRAILING_PUNCT = ".,!?;:~。，！？；：～、…… "

OPTED_OUT_TEXT = "已为您退订，今后不再向您推送活动和优惠消息。回复“订阅”可重新接收。"
ALREADY_OPTED_OUT_TEXT = "您已退订，不会再收到活动推送。回复“订阅”可重新接收。"
OPTED_IN_TEXT = "已为您重新订阅，您将继续收到我们的活动和优惠消息。回复“退订”可随时取消。"
ALREADY_OPTED_IN_TEXT = "您当前已在订阅中。回复“退订”可随时取消。"
LEAVE_QUEUE_TEXT = "转接期间智能客服不再回复，回复“结束人工”可回到智能客服。"
HANDOFF_OPENING = "好的，正在为您转接人工客服。"
HANDOFF_TEXT = f"{HANDOFF_OPENING}客服同事会尽快回复您，请稍候。{LEAVE_QUEUE_TEXT}"
"""The handoff reply within the service hours (outside them it names the next opening)."""
COMPLAINT_FLAG = "【投诉】"
SUMMARY_TURNS = 6
_SUMMARY_LINE_CHARS = 200


def normalise(text: str) -> str:
    """Full-width to half-width (NFKC), trimmed, case-folded, trailing punctuation dropped.

    A text made only of punctuation keeps it, so "?" and "？" still ask for help.
    """
    folded = unicodedata.normalize("NFKC", text).strip().casefold()
    return folded.rstrip(_TRAILING_PUNCT) or folded


def parse_command(text: str) -> Command | None:
    """The command ``text`` is, or None for a question. Empty text asks for help."""
    if not text.strip():
        return Command.HELP
    return COMMAND_WORDS.get(normalise(text))


def help_text(config: BotConfig) -> str:
    """What the bot can do, how to reach a person, how to opt out."""
    return (
        f"您好，我是{config.brand}的智能客服{config.name}。"
        "门店、商品、优惠活动、会员权益等问题，直接发给我就好。\n"
        "回复“人工”：转接人工客服\n"
        "回复“退订”：不再接收活动消息（回复“订阅”可恢复）\n"
        f"在群里提问请先@{config.name}。"
    )


def handoff_text(hours: ServiceHours, now: datetime, tz: tzinfo) -> str:
    """What a member asking for a person is told: when someone answers, and how to leave."""
    return f"{HANDOFF_OPENING}{hours.handoff_notice(now, tz)}。{LEAVE_QUEUE_TEXT}"


def summarise(
    member: Member, history: Sequence[Turn], bot_name: str, *, complaint: str | None = None
) -> str:
    """A plain summary of the recent conversation for the human agent (no LLM involved).

    With ``complaint`` (the member's message) the summary starts with :data:`COMPLAINT_FLAG`."""
    who = member.display_name or member.external_id
    ref = f"{who}（{member.channel}:{member.external_id}）"
    head = f"会员：{ref}请求人工服务。"
    if complaint is not None:
        head = f"{COMPLAINT_FLAG}会员：{ref}投诉，请优先处理。"
    lines = [head]
    if complaint is not None:
        lines.append(f"投诉内容：{_one_line(complaint)}")
    if not history:
        lines.append("最近没有对话记录。")
    else:
        lines.append("最近对话：")
        for turn in history:
            speaker = "会员" if turn.role == "user" else bot_name
            lines.append(f"{speaker}：{_one_line(turn.text)}")
    return "\n".join(lines)


def _one_line(text: str) -> str:
    flat = " ".join(text.split())
    return flat[:_SUMMARY_LINE_CHARS] + "…" if len(flat) > _SUMMARY_LINE_CHARS else flat


class Commands:
    """Runs a parsed command for one member and returns the reply to send."""

    def __init__(self, store: Store, config: BotConfig) -> None:
        self._store = store
        self._config = config

    async def run(
        self, command: Command, member: Member, history: Sequence[Turn], now: datetime
    ) -> TextReply | HandoffReply:
        """Apply ``command``'s state change (if any) and say what happened.

        ``history`` is the session's recent turns, summarised for the agent on a handoff.
        """
        if command is Command.HELP:
            return TextReply(help_text(self._config))
        if command is Command.HANDOFF:
            return await self.handoff(member, history, now)
        if command is Command.END_HANDOFF:
            return TextReply(await self._end_handoff(member))
        if command is Command.OPT_OUT:
            changed = await self._store.set_opted_out(member, True, now)
            return TextReply(OPTED_OUT_TEXT if changed else ALREADY_OPTED_OUT_TEXT)
        changed = await self._store.set_opted_out(member, False, now)
        return TextReply(OPTED_IN_TEXT if changed else ALREADY_OPTED_IN_TEXT)

    async def handoff(
        self,
        member: Member,
        history: Sequence[Turn],
        now: datetime,
        *,
        complaint: str | None = None,
    ) -> HandoffReply:
        """Hand the member to a person: the bot is silent until the handoff ends.

        ``complaint`` is the member's complaint (see :mod:`bot.complaints`): the reply apologises
        and the summary for the agent is flagged :data:`COMPLAINT_FLAG`."""
        await self._store.start_handoff(member, now)
        config = self._config
        summary = summarise(member, history[-SUMMARY_TURNS:], config.name, complaint=complaint)
        if complaint is None:
            text = handoff_text(config.handoff_hours, now, config.timezone)
            return HandoffReply(text, summary)
        notice = config.handoff_hours.handoff_notice(now, config.timezone)
        text = (
            "非常抱歉给您带来这么不好的体验，这是我们做得不够好。"
            f"您反映的问题已标记为投诉，转给{config.brand}的客服同事优先处理，{notice}。"
            f"{LEAVE_QUEUE_TEXT}"
        )
        return HandoffReply(text, summary, complaint=True)

    async def _end_handoff(self, member: Member) -> str:
        if await self._store.end_handoff(member):
            return f"已结束人工服务，{self._config.name}继续为您服务。有问题直接问我就好。"
        return f"当前由{self._config.name}为您服务，有问题直接问我就好。"
