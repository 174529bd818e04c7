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
bridge), 413 (body too large), 415 (not JSON). A 400 names the field and what is wrong with it
(``"text: String should have at most 2000 characters"``); that includes text that is not
Unicode — a ``"\\ud800"`` escape with no partner (``"text: lone surrogate U+D800 at character
2"``, :func:`bot.text.describe_unencodable`) — and numbers past the parser's range (a 5,000-digit
integer). Nothing in a body makes the endpoint answer 500.

Push (Siyu → bridge's ``push_url``), signed::

    {"type": "push", "id": "siyu-ob-123", "conversation": "group-42", "text": "...",
     "mention": ["wxid_abc"]}

The bridge answers 2xx once it has taken the push. A push that got no answer, a 5xx or a 429
is sent again later with the same ``id``: a bridge shows each ``id`` once. Any other status
ends the push (it is recorded as refused and not sent again). Campaigns push to the
conversations an operator names (``bridge_groups``: ``"<bridge>:<conversation>"``).
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, StringConstraints, ValidationError
from pydantic_core import ErrorDetails

from adapters import MAX_TEXT_CHARS
from bot.text import describe_unencodable_json
from bot.types import HandoffReply, InboundMessage, MemberRef, NoReply, Reply, TextReply

MAX_ID_CHARS = 128

# Strings that are not Unicode text (lone surrogates) never get this far: pydantic refuses them
# whatever it parses (``json_invalid`` from JSON, ``string_unicode`` from Python objects);
# :func:`_explain` names them.
_Id = Annotated[
    str, StringConstraints(strip_whitespace=True, min_length=1, max_length=MAX_ID_CHARS)
]
_Text = Annotated[
    str, StringConstraints(strip_whitespace=True, min_length=1, max_length=MAX_TEXT_CHARS)
]
_Name = Annotated[str, StringConstraints(strip_whitespace=True, max_length=64)]


class ContractError(ValueError):
    """The body does not follow the contract; the message says which field."""


class _Body(BaseModel):
    # Strict: "yes" is not a boolean and 42 is not an id. Unknown keys are ignored, so a bridge
    # may send more than the contract names.
    model_config = ConfigDict(frozen=True, strict=True, extra="ignore")


class Sender(_Body):
    id: _Id
    name: _Name | None = None


class BridgeMessage(_Body):
    """A bridge's message as the contract above describes it."""

    id: _Id
    conversation: _Id
    sender: Sender
    text: _Text
    is_group: bool = False
    mentioned_bot: bool = False
    store_id: _Name | None = None


def parse_message(
    body: bytes, *, channel: str, received_at: datetime, store_id: str | None
) -> InboundMessage:
    """Read a bridge's message. ``store_id`` is the bridge's default store scope."""
    try:
        data = BridgeMessage.model_validate_json(body)
    except ValidationError as exc:
        raise ContractError(_explain(exc.errors(include_url=False)[0], body)) from None
    return InboundMessage(
        id=data.id,
        channel=channel,
        conversation=data.conversation,
        sender=MemberRef(channel, data.sender.id, data.sender.name or ""),
        text=data.text,
        received_at=received_at,
        is_group=data.is_group,
        mentioned_bot=data.mentioned_bot,
        store_id=data.store_id or store_id,
    )


def _explain(error: ErrorDetails, body: bytes) -> str:
    """One line naming the field and what is wrong with it. JSON the parser refuses because a
    string in it is not Unicode text is named as such, not as a syntax error."""
    if error["type"] == "json_invalid":
        unencodable = describe_unencodable_json(body)
        if unencodable is not None:
            return f"{unencodable}: not Unicode text"
        return f"body is not valid JSON: {error['msg']}"
    if not error["loc"]:
        return "body must be a JSON object"
    field = ".".join(str(part) for part in error["loc"])
    return f"{field}: {error['msg']}"


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
