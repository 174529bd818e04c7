"""The kf ``sync_msg`` message list, read into typed values, and the ids we derive from it.

``kf/sync_msg`` answers ``msg_list`` entries like::

    {"msgid": "...", "open_kfid": "wk...", "external_userid": "wm...", "send_time": 1772000000,
     "origin": 3, "msgtype": "text", "text": {"content": "积分会过期吗？"}}
    {"msgid": "...", "origin": 4, "msgtype": "event",
     "event": {"event_type": "enter_session", "open_kfid": "wk...", "external_userid": "wm...",
               "welcome_code": "..."}}

``origin``: 3 the customer, 4 the system (events), 5 a human servicer.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

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
    send_time = raw.get("send_time", 0)
    if isinstance(send_time, bool) or not isinstance(send_time, int) or send_time < 0:
        raise BadKfMessage(f"send_time {send_time!r} is not epoch seconds")
    text, origin = raw.get("text"), raw.get("origin")
    return KfMessage(
        msgid=_str(raw, "msgid"),
        open_kfid=str(raw.get("open_kfid") or event.get("open_kfid") or open_kfid),
        external_userid=str(raw.get("external_userid") or event.get("external_userid") or ""),
        sent_at=datetime.fromtimestamp(send_time, UTC),
        origin=origin if isinstance(origin, int) else 0,
        msgtype=msgtype,
        text=str(text.get("content", "")) if isinstance(text, dict) else "",
        event_type=str(event.get("event_type", "")),
        welcome_code=str(event.get("welcome_code", "")),
        change_type=change if isinstance(change := event.get("change_type"), int) else 0,
    )


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
