"""The web chat's JSON wire format: client frames parsed into typed values, replies rendered.

Client → server::

    {"type": "hello", "member_id": str, "name": str, "room": str | null, "store_id": str | null}
    {"type": "message", "text": str, "store_id": str | null}

Server → client::

    {"type": "message", "id": str, "from": "member" | "bot", "name": str, "text": str,
     "citations": [{"title": str}], "kind": "message" | "answer" | "handoff" | "notice",
     "quote": str | null, "reply_to": str | null, "mine": bool}
    {"type": "error", "code": str, "error": str}

``kind`` is ``"message"`` for a member's own words, ``"answer"`` / ``"handoff"`` for the bot's
replies and ``"notice"`` for room events. ``mine`` is true only on the copy of a member message
sent back to the socket that wrote it. ``id`` of a member message is the server-made uuid that
becomes ``InboundMessage.id`` (the dedupe key); a reply names it in ``reply_to``.

A message's ``store_id`` is the store the member asks about (the page's store picker); when absent
or null the hello's ``store_id`` holds. ``citations`` carry titles only, never a file name: the
reply text itself already ends with its one "（来源：…）" line, so the page shows no second list.
"""

from __future__ import annotations

import json
import re
import unicodedata
import uuid
from dataclasses import dataclass
from typing import Any

from adapters import MAX_TEXT_CHARS
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


@dataclass(frozen=True, slots=True)
class Hello:
    """Who is on this socket, and which room (None: a 1:1 chat with the bot)."""

    member_id: str
    name: str
    room: str | None
    store_id: str | None


@dataclass(frozen=True, slots=True)
class ChatText:
    """A member's message, already stripped and checked; ``store_id`` overrides the hello's."""

    text: str
    store_id: str | None = None


ClientFrame = Hello | ChatText


def parse_frame(raw: str) -> ClientFrame:
    """Parse one text frame; raise :class:`ProtocolError` for anything malformed."""
    try:
        data = json.loads(raw)
    except (ValueError, RecursionError) as exc:  # RecursionError: absurdly nested arrays
        raise ProtocolError("bad_json", "消息不是合法的 JSON") from exc
    if not isinstance(data, dict):
        raise ProtocolError("bad_frame", "消息必须是 JSON 对象")
    kind = data.get("type")
    if kind == "hello":
        return _hello(data)
    if kind == "message":
        return ChatText(_text(data), _store_id(data))
    raise ProtocolError("unknown_type", f"不认识的消息类型：{str(kind)[:40]}")


def _hello(data: dict[str, Any]) -> Hello:
    member_id = _required_str(data, "member_id")
    if not _ID.fullmatch(member_id):
        raise ProtocolError("bad_field", "member_id 只能由 1–64 个字母、数字或 _.:- 组成")
    name = _label(_required_str(data, "name"), "name", required=True)
    room = _optional_str(data, "room")
    store_id = _store_id(data)
    room_name = _label(room, "room", required=False) if room is not None else None
    return Hello(member_id, name or "", room_name or None, store_id)


def _store_id(data: dict[str, Any]) -> str | None:
    store_id = _optional_str(data, "store_id")
    if store_id is not None and not (len(store_id) <= 64 and _STORE_ID.fullmatch(store_id)):
        raise ProtocolError("bad_field", "store_id 最多 64 个字，只能由文字、数字或 _.:-·() 组成")
    return store_id


def _text(data: dict[str, Any]) -> str:
    text = _required_str(data, "text").strip()
    if not text:
        raise ProtocolError("empty_text", "消息是空的")
    if len(text) > MAX_TEXT_CHARS:
        raise ProtocolError("text_too_long", f"消息太长：最多 {MAX_TEXT_CHARS} 字")
    if any(_is_control(ch) and ch not in "\n\t" for ch in text):
        raise ProtocolError("bad_field", "消息里有控制字符")
    return text


def _required_str(data: dict[str, Any], key: str) -> str:
    if key not in data:
        raise ProtocolError("missing_field", f"缺少字段 {key}")
    return _optional_str(data, key) or ""


def _optional_str(data: dict[str, Any], key: str) -> str | None:
    """``data[key]`` when it is a string, None when absent or null; anything else is refused."""
    value = data.get(key)
    if value is not None and not isinstance(value, str):
        raise ProtocolError("bad_field", f"字段 {key} 应该是字符串")
    return value


def _label(value: str, key: str, *, required: bool) -> str | None:
    """A display name or room name: trimmed, one line, at most :data:`MAX_NAME_CHARS`."""
    value = value.strip()
    if not value:
        if required:
            raise ProtocolError("bad_field", f"{key} 不能为空")
        return None
    if len(value) > MAX_NAME_CHARS or any(_is_control(ch) for ch in value):
        raise ProtocolError("bad_field", f"{key} 最多 {MAX_NAME_CHARS} 个字，且不能含控制字符")
    return value


def _is_control(ch: str) -> bool:
    return unicodedata.category(ch) in ("Cc", "Cf", "Zl", "Zp")


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
