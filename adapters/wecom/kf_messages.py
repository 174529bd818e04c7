"""The kf ``sync_msg`` message list, read into typed values, and the ids we derive from it.

``kf/sync_msg`` answers ``msg_list`` entries like::

    {"msgid": "...", "open_kfid": "wk...", "external_userid": "wm...", "send_time": 1772000000,
     "origin": 3, "msgtype": "text", "text": {"content": "积分会过期吗？"}}
    {"msgid": "...", "origin": 4, "msgtype": "event",
     "event": {"event_type": "enter_session", "open_kfid": "wk...", "external_userid": "wm...",
               "welcome_code": "..."}}

``origin``: 3 the customer, 4 the system (events), 5 a human servicer.

An entry that cannot be used is a :class:`BadKfMessage` naming the field, never any other
exception: a field missing or of the wrong type, a ``send_time`` no date can hold, or text that is
not Unicode (``sync_msg`` is JSON, whose ``"\\ud800"`` escapes decode to a lone surrogate no
UTF-8 can carry: the reply, the database and the log would each fail on it later). The sync loop
skips and counts such entries (``KfChannel.skipped``); one bad entry never blocks the page.
Messages name values by type, never by content: an entry's text stays out of the log.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from bot.text import describe_unencodable

ORIGIN_CUSTOMER = 3
HUMAN_STATES = frozenset({2, 3})
"""Session states in which a person owns the chat (2 queued for one, 3 served by one)."""


class BadKfMessage(ValueError):
    """A ``msg_list`` entry lacks a field we need or has one of the wrong type."""


@dataclass(frozen=True, slots=True)
class KfMessage:
    """One entry of ``msg_list``: a customer's (or servicer's) message, or an event."""

    msgid: str
    open_kfid: str
    external_userid: str
    sent_at: datetime
    origin: int
    msgtype: str
    text: str = ""
    event_type: str = ""
    welcome_code: str = ""
    change_type: int = 0
    """``session_status_change``: 1 taken from the queue, 2 transferred, 3 ended, 4 resumed."""

    @property
    def is_customer(self) -> bool:
        return self.origin == ORIGIN_CUSTOMER

    @property
    def conversation(self) -> str:
        """The 1:1 chat between this customer and this kf account."""
        return f"{self.open_kfid}:{self.external_userid}"


def parse_kf_message(raw: Any, *, open_kfid: str) -> KfMessage:
    """``raw`` (one ``msg_list`` entry) as a :class:`KfMessage`; :class:`BadKfMessage` if unusable.

    Events carry the customer inside ``event``; ``open_kfid`` is the loop's own when absent.
    """
    if not isinstance(raw, dict):
        raise BadKfMessage(f"a msg_list entry is {type(raw).__name__}, not an object")
    msgtype = _str(raw, "msgtype")
    event = raw.get("event") if msgtype == "event" else None
    event = event if isinstance(event, dict) else {}
    text, origin = raw.get("text"), raw.get("origin")
    msg = KfMessage(
        msgid=_str(raw, "msgid"),
        open_kfid=str(raw.get("open_kfid") or event.get("open_kfid") or open_kfid),
        external_userid=str(raw.get("external_userid") or event.get("external_userid") or ""),
        sent_at=_sent_at(raw.get("send_time", 0)),
        origin=origin if isinstance(origin, int) else 0,
        msgtype=msgtype,
        text=str(text.get("content", "")) if isinstance(text, dict) else "",
        event_type=str(event.get("event_type", "")),
        welcome_code=str(event.get("welcome_code", "")),
        change_type=change if isinstance(change := event.get("change_type"), int) else 0,
    )
    _check_unicode(msg)
    return msg


_TEXT_FIELDS = ("msgid", "open_kfid", "external_userid", "msgtype", "text", "event_type",
                "welcome_code")  # fmt: skip


def _check_unicode(msg: KfMessage) -> None:
    for name in _TEXT_FIELDS:
        problem = describe_unencodable(getattr(msg, name))
        if problem is not None:
            raise BadKfMessage(f"{name} is not Unicode text: {problem}")


def _sent_at(send_time: object) -> datetime:
    if isinstance(send_time, bool) or not isinstance(send_time, int) or send_time < 0:
        raise BadKfMessage(f"send_time is not epoch seconds (a {type(send_time).__name__})")
    try:
        return datetime.fromtimestamp(send_time, UTC)
    except (OverflowError, OSError, ValueError):
        raise BadKfMessage(f"send_time of {len(str(send_time))} digits is no date") from None


def reply_msgid(msg: KfMessage, part: int) -> str:
    """Our ``send_msg`` msgid for part ``part`` of the reply to ``msg``: the same on every retry
    and re-delivery, so the platform never delivers one reply twice (≤ 32 of [0-9a-z_])."""
    digest = hashlib.sha1(f"{msg.open_kfid}:{msg.msgid}".encode()).hexdigest()
    return f"r{digest[:24]}_{part}"


def _str(raw: dict[str, Any], name: str) -> str:
    value = raw.get(name)
    if not isinstance(value, str) or not value:
        raise BadKfMessage(f"{name} is missing or not a string")
    return value
