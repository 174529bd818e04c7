"""The generic JSON webhook's message contract: what a bridge sends and what it gets back.

Inbound (bridge → Siyu), ``POST /hooks/{name}``, signed (see :mod:`adapters.webhook.signing`)::

    {"id": "m-123",                 # the bridge's message id, unique per bridge (dedupe key)
     "conversation": "group-42",    # the chat: a group id, or the member's 1:1 chat id
     "sender": {"id": "wxid_abc", "name": "小明"},
     "text": "小域，今天有什么活动？",
     "is_group": true,              # optional, default false
     "mentioned_bot": true,         # optional, default false: the bridge saw an @-mention
     "store_id": "sh-xuhui"}        # optional: scope answers to one store

Response (Siyu → bridge), HTTP 200, signed the same way::

    {"status": "replied", "reply": {"kind": "answer" | "handoff", "text": "...",
     "quote": "小明" | null, "citations": [{"title": "冬季常见问题"}]}}
    {"status": "silent", "reason": "not addressed" | "duplicate" | "human serving" | ...,
     "reply": null}

``text`` is plain text, ready to show, and already ends with its one source line
(``（来源：冬季常见问题）``): a bridge shows it as it is. ``citations`` names the same sources, each
title once, for bridges that keep them apart; they carry titles only, never file names.

Errors are JSON too: ``{"error": "..."}`` with 400 (malformed), 401 (signature), 404 (unknown
bridge), 413 (body too large), 415 (not JSON).

Push (Siyu → bridge's ``push_url``), signed::

    {"type": "push", "id": "siyu-ob-123", "conversation": "group-42", "text": "...",
     "mention": ["wxid_abc"]}

The bridge answers 2xx once it has taken the push. A push that got no answer, a 5xx or a 429
is sent again later with the same ``id``: a bridge shows each ``id`` once. Any other status
ends the push (it is recorded as refused and not sent again). Campaigns push to the
conversations an operator names (``bridge_groups``: ``"<bridge>:<conversation>"``).
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from adapters import MAX_TEXT_CHARS
from bot.types import HandoffReply, InboundMessage, MemberRef, NoReply, Reply, TextReply

MAX_ID_CHARS = 128


class ContractError(ValueError):
    """The body does not follow the contract; the message says which field."""


def parse_message(
    body: bytes, *, channel: str, received_at: datetime, store_id: str | None
) -> InboundMessage:
    """Read a bridge's message. ``store_id`` is the bridge's default store scope."""
    try:
        data = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise ContractError(f"body is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise ContractError("body must be a JSON object")
    sender = data.get("sender")
    if not isinstance(sender, dict):
        raise ContractError("sender must be an object with id and name")
    return InboundMessage(
        id=_text(data, "id", MAX_ID_CHARS),
        channel=channel,
        conversation=_text(data, "conversation", MAX_ID_CHARS),
        sender=MemberRef(
            channel, _text(sender, "id", MAX_ID_CHARS), _text(sender, "name", 64, required=False)
        ),
        text=_text(data, "text", MAX_TEXT_CHARS),
        received_at=received_at,
        is_group=_flag(data, "is_group"),
        mentioned_bot=_flag(data, "mentioned_bot"),
        store_id=_text(data, "store_id", 64, required=False) or store_id,
    )


def render_reply(reply: Reply) -> dict[str, Any]:
    """The response body for the pipeline's ``reply``."""
    if isinstance(reply, NoReply):
        return {"status": "silent", "reason": reply.reason, "reply": None}
    kind = "handoff" if isinstance(reply, HandoffReply) else "answer"
    titles = [c.title for c in reply.citations] if isinstance(reply, TextReply) else []
    citations = [{"title": title} for title in dict.fromkeys(titles) if title]
    return {
        "status": "replied",
        "reply": {"kind": kind, "text": reply.text, "quote": reply.quote, "citations": citations},
    }


def _text(data: dict[str, Any], key: str, max_chars: int, *, required: bool = True) -> str:
    value = data.get(key)
    if value is None and not required:
        return ""
    if not isinstance(value, str) or (required and not value.strip()):
        raise ContractError(f"{key} must be a non-empty string")
    if len(value) > max_chars:
        raise ContractError(f"{key} is longer than {max_chars} characters")
    return value.strip()


def _flag(data: dict[str, Any], key: str) -> bool:
    value = data.get(key, False)
    if not isinstance(value, bool):
        raise ContractError(f"{key} must be true or false")
    return value
