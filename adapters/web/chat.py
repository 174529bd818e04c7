"""What the web chat does with each frame: hello → identity and room, message → pipeline → reply.

A member's message becomes one :class:`~bot.types.InboundMessage` (channel ``web``). In a room
it is broadcast to every socket there before the bot answers, and the answer is broadcast too;
in a 1:1 chat only the asking socket hears back. The pipeline decides whether to answer in a
room; this adapter only marks ``mentioned_bot`` when the text contains ``@{bot_name}``. The
store a message asks about is the message's ``store_id`` (the page's store menu), else the
hello's.

Answers take a slot of the process's :class:`~adapters.admission.Admission`. When none is free
within its bounds, the sender alone gets a ``busy`` frame naming the message and when to try
again, and the message is not answered (nor marked seen: sent again, it is a new message).
"""

from __future__ import annotations

import logging
import math
import uuid
from dataclasses import dataclass

from adapters import Clock
from adapters.admission import Admission, Busy
from adapters.web.hub import Hub, Peer
from adapters.web.protocol import (
    ChatText,
    Frame,
    Hello,
    ProtocolError,
    busy_frame,
    error_frame,
    member_frame,
    notice_frame,
    parse_frame,
    reply_frame,
)
from bot.errors import Unavailable
from bot.types import InboundMessage, MemberRef, MessageHandler

logger = logging.getLogger(__name__)

CHANNEL = "web"


@dataclass(frozen=True, slots=True)
class Persona:
    """How the bot presents itself on the page."""

    bot_name: str
    brand: str


class WebChat:
    """The web channel's logic, one per application; sockets are handed in as :class:`Peer`."""

    def __init__(
        self, handle: MessageHandler, persona: Persona, clock: Clock, *, admission: Admission
    ) -> None:
        self.hub = Hub()
        self._handle = handle
        self._admission = admission
        self._persona = persona
        self._clock = clock

    async def on_text(self, peer: Peer, raw: str) -> None:
        """Handle one text frame; a refused frame is answered with an error frame."""
        try:
            frame = parse_frame(raw)
        except ProtocolError as exc:
            self.refuse(peer, exc.code, exc.message)
            return
        if isinstance(frame, Hello):
            peer.bad_frames = 0
            self._greet(peer, frame)
        elif peer.identity is None:
            self.refuse(peer, "no_hello", "请先发送 hello 再发消息")
        else:
            peer.bad_frames = 0
            await self._converse(peer, peer.identity, frame)

    def refuse(self, peer: Peer, code: str, message: str) -> None:
        """Answer a bad frame with an error frame and count it against the peer."""
        peer.bad_frames += 1
        peer.send(error_frame(code, message))

    def leave(self, peer: Peer) -> None:
        """Forget a closed socket and tell its room."""
        room = self.hub.disconnect(peer)
        if room is not None and peer.identity is not None:
            self._announce(room, f"{peer.identity.name} 离开了群聊")

    def _greet(self, peer: Peer, hello: Hello) -> None:
        left = self.hub.identify(peer, hello)
        if left is not None and left != hello.room:
            self._announce(left, f"{hello.name} 离开了群聊")
        bot, brand = self._persona.bot_name, self._persona.brand
        if hello.room is None:
            peer.send(self._notice(f"你好，{hello.name}！我是{brand}的客服{bot}，有什么可以帮你？"))
            return
        if left != hello.room:
            self._announce(hello.room, f"{hello.name} 加入了群聊", skip=peer)
        count = self.hub.members(hello.room)
        peer.send(self._notice(f"已进入群聊「{hello.room}」（{count} 人在线）。提问请 @{bot}"))

    async def _converse(self, peer: Peer, who: Hello, said: ChatText) -> None:
        msg = self._inbound(who, said)
        if who.room is not None:
            self.hub.broadcast(who.room, member_frame(msg), author=peer)
        try:
            async with self._admission.admit():
                reply = await self._handle(msg)
        except Busy as exc:
            logger.debug("web chat busy, message %s not answered: %s", msg.id, exc)
            peer.send(busy_frame(reply_to=msg.id, retry_after=exc.retry_after))
            return
        except Unavailable as exc:  # a dependency failed: nothing was answered, write again
            logger.warning("web message %s not answered: %s", msg.id, exc)
            peer.send(busy_frame(reply_to=msg.id, retry_after=math.ceil(exc.retry_after)))
            return
        except Exception:  # the channel's error boundary: log once, tell the member, carry on
            logger.exception("handler failed on web message %s", msg.id)
            peer.send(error_frame("handler_failed", "抱歉，机器人暂时出错了，请稍后再试"))
            return
        frame = reply_frame(reply, bot_name=self._persona.bot_name, reply_to=msg.id)
        if frame is None:
            return
        if who.room is not None:
            self.hub.broadcast(who.room, frame)
        else:
            peer.send(frame)

    def _inbound(self, who: Hello, said: ChatText) -> InboundMessage:
        in_room, text = who.room is not None, said.text
        return InboundMessage(
            id=str(uuid.uuid4()),
            channel=CHANNEL,
            conversation=f"room:{who.room}" if in_room else who.member_id,
            sender=MemberRef(CHANNEL, who.member_id, who.name),
            text=text,
            received_at=self._clock(),
            is_group=in_room,
            mentioned_bot=f"@{self._persona.bot_name}" in text,
            store_id=said.store_id or who.store_id,
        )

    def _announce(self, room: str, text: str, *, skip: Peer | None = None) -> None:
        self.hub.broadcast(room, self._notice(text), skip=skip)

    def _notice(self, text: str) -> Frame:
        return notice_frame(text, bot_name=self._persona.bot_name)
