"""The web chat's JSON wire format: client frames parsed into typed values, replies rendered.

Client → server::

    {"type": "hello", "member_id": str, "name": str, "room": str | null, "store_id": str | null}
    {"type": "message", "text": str, "store_id": str | null}

Server → client::

    {"type": "message", "id": str, "from": "member" | "bot", "name": str, "text": str,
     "citations": [{"title": str}], "kind": "message" | "answer" | "handoff" | "notice",
     "quote": str | null, "reply_to": str | null, "mine": bool}
    {"type": "error", "code": str, "error": str}
    {"type": "busy", "reply_to": str, "retry_after": int, "error": str}

``busy`` goes to the sender of a message the server had no capacity to answer (``reply_to``
names it; ``retry_after`` is in seconds): the message was not answered and may be sent again.

An ``error`` frame goes to the sender of a refused frame only; the rest of its room never sees
the frame. ``bad_encoding`` refuses text that is not Unicode (a ``"\\ud800"`` escape without
its partner: no UTF-8 can carry it, and every socket that tried to send it on would fail);
emoji — ZWJ families, flags, variation selectors, skin tones — are ordinary text.

``kind`` is ``"message"`` for a member's own words, ``"answer"`` / ``"handoff"`` for the bot's
replies and ``"notice"`` for room events. ``mine`` is true only on the copy of a member message
sent back to the socket that wrote it. ``id`` of a member message is the server-made uuid that
becomes ``InboundMessage.id`` (the dedupe key); a reply names it in ``reply_to``.

A message's ``store_id`` is the store the member asks about (the page's store picker); when absent
or null the hello's ``store_id`` holds. ``citations`` carry titles only, never a file name: the
reply text itself already ends with its one "（来源：…）" line, so the page shows no second list.
"""

from __future__ import annotations

import re
import uuid
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
    field_validator,
)
from pydantic_core import ErrorDetails, PydanticCustomError

from adapters import MAX_TEXT_CHARS
from bot.text import describe_unencodable, describe_unencodable_json, stray_control
from bot.types import HandoffReply, InboundMessage, Reply, TextReply

Frame = dict[str, Any]
"""A JSON object sent to the browser."""

MAX_NAME_CHARS = 32
_ID = re.compile(r"[A-Za-z0-9_.:\-]{1,64}")
_STORE_ID = re.compile(r"[\w.:·()（）\-]+(?: [\w.:·()（）\-]+)*")
"""A store id as the directory has it: an id (``sh-xuhui``) or, without an id column, the name."""


class ProtocolError(Exception):
    """A client frame the server refuses; ``code`` is stable, ``message`` is shown to people."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


def _refuse(code: str, message: str) -> PydanticCustomError:
    """A validation error that :func:`parse_frame` turns into ``ProtocolError(code, message)``."""
    return PydanticCustomError(code, message)


class _Frame(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore", strict=True)


class Hello(_Frame):
    """Who is on this socket, and which room (None: a 1:1 chat with the bot)."""

    type: Literal["hello"] = "hello"
    member_id: str
    name: str
    room: str | None = None
    store_id: str | None = None

    @field_validator("member_id")
    @classmethod
    def _member_id(cls, value: str) -> str:
        if not _ID.fullmatch(value):
            raise _refuse("bad_field", "member_id 只能由 1–64 个字母、数字或 _.:- 组成")
        return value

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        label = _label(value, "name")
        if label is None:
            raise _refuse("bad_field", "name 不能为空")
        return label

    @field_validator("room")
    @classmethod
    def _room(cls, value: str | None) -> str | None:
        return None if value is None else _label(value, "room")

    @field_validator("store_id")
    @classmethod
    def _store(cls, value: str | None) -> str | None:
        return _store_id(value)


class ChatText(_Frame):
    """A member's message, already stripped and checked; ``store_id`` overrides the hello's."""

    type: Literal["message"] = "message"
    text: str
    store_id: str | None = None

    @field_validator("text", mode="before")
    @classmethod
    def _null_text(cls, value: object) -> object:
        if value is None:
            raise _refuse("empty_text", "消息是空的")
        return value

    @field_validator("text")
    @classmethod
    def _text(cls, value: str) -> str:
        text = value.strip()
        if not text:
            raise _refuse("empty_text", "消息是空的")
        if len(text) > MAX_TEXT_CHARS:
            raise _refuse("text_too_long", f"消息太长：最多 {MAX_TEXT_CHARS} 字")
        if stray_control(text, allow="\n\t") is not None:
            raise _refuse("bad_field", "消息里有控制字符")
        return text

    @field_validator("store_id")
    @classmethod
    def _store(cls, value: str | None) -> str | None:
        return _store_id(value)


ClientFrame = Annotated[Hello | ChatText, Field(discriminator="type")]
_CLIENT_FRAME: TypeAdapter[Hello | ChatText] = TypeAdapter(ClientFrame)


def parse_frame(raw: str) -> Hello | ChatText:
    """Parse one text frame; raise :class:`ProtocolError` for anything malformed."""
    if (unencodable := describe_unencodable(raw)) is not None:
        # aiohttp closes a socket that sends invalid UTF-8 (1007); a str from elsewhere may not.
        raise ProtocolError("bad_encoding", f"消息含有无法编码的字符（{unencodable}）")
    try:
        return _CLIENT_FRAME.validate_json(raw)
    except ValidationError as exc:
        error = exc.errors(include_url=False)[0]
        raise ProtocolError(*_code_and_message(error, raw)) from exc


def _code_and_message(error: ErrorDetails, raw: str) -> tuple[str, str]:
    """Our stable code and the people's message for pydantic's first error."""
    kind, field = error["type"], ".".join(str(part) for part in error["loc"][1:])
    if kind in ("bad_field", "empty_text", "text_too_long"):
        return kind, error["msg"]
    if kind == "json_invalid":
        # pydantic refuses a lone surrogate escape as invalid JSON; say what is really wrong.
        if (unencodable := describe_unencodable_json(raw)) is not None:
            return "bad_encoding", f"消息含有无法编码的字符（{unencodable}）"
        return "bad_json", "消息不是合法的 JSON"
    if kind in ("dict_type", "model_type", "model_attributes_type"):
        return "bad_frame", "消息必须是 JSON 对象"
    if kind in ("union_tag_not_found", "union_tag_invalid"):
        tag = str(error.get("ctx", {}).get("tag", ""))[:40]
        return "unknown_type", f"不认识的消息类型：{tag}"
    if kind == "missing":
        return "missing_field", f"缺少字段 {field}"
    return "bad_field", f"字段 {field} 应该是字符串"


def _store_id(value: str | None) -> str | None:
    if value is not None and not (len(value) <= 64 and _STORE_ID.fullmatch(value)):
        raise _refuse("bad_field", "store_id 最多 64 个字，只能由文字、数字或 _.:-·() 组成")
    return value


def _label(value: str, key: str) -> str | None:
    """A display name or room name: trimmed, one line, at most :data:`MAX_NAME_CHARS`; None
    when blank."""
    value = value.strip()
    if not value:
        return None
    if len(value) > MAX_NAME_CHARS or stray_control(value) is not None:
        raise _refuse("bad_field", f"{key} 最多 {MAX_NAME_CHARS} 个字，且不能含控制字符")
    return value


def member_frame(msg: InboundMessage, *, mine: bool = False) -> Frame:
    """How a member's message looks in a room."""
    return _message(msg.id, "member", msg.sender.display_name, msg.text, "message", mine=mine)


def reply_frame(reply: Reply, *, bot_name: str, reply_to: str) -> Frame | None:
    """The bot's reply to ``reply_to``, or None when the bot says nothing."""
    if isinstance(reply, TextReply):
        titles = dict.fromkeys(c.title for c in reply.citations if c.title)
        citations = [{"title": title} for title in titles]
        frame = _message(_new_id(), "bot", bot_name, reply.text, "answer", quote=reply.quote)
        return frame | {"citations": citations, "reply_to": reply_to}
    if isinstance(reply, HandoffReply):
        frame = _message(_new_id(), "bot", bot_name, reply.text, "handoff", quote=reply.quote)
        return frame | {"reply_to": reply_to}
    return None


def notice_frame(text: str, *, bot_name: str) -> Frame:
    """A room event or greeting, shown apart from the conversation."""
    return _message(_new_id(), "bot", bot_name, text, "notice")


def error_frame(code: str, message: str) -> Frame:
    """Tell the client its frame was refused; the socket stays open."""
    return {"type": "error", "code": code, "error": message}


def busy_frame(*, reply_to: str, retry_after: int) -> Frame:
    """Tell a member their message was not answered for lack of capacity (try again later)."""
    return {
        "type": "busy",
        "reply_to": reply_to,
        "retry_after": retry_after,
        "error": f"现在咨询的人比较多，请 {retry_after} 秒后再发一次",
    }


def _message(
    id_: str,
    sender: str,
    name: str,
    text: str,
    kind: str,
    *,
    quote: str | None = None,
    mine: bool = False,
) -> Frame:
    return {
        "type": "message",
        "id": id_,
        "from": sender,
        "name": name,
        "text": text,
        "citations": [],
        "kind": kind,
        "quote": quote,
        "reply_to": None,
        "mine": mine,
    }


def _new_id() -> str:
    return str(uuid.uuid4())
