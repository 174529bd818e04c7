"""Connected sockets and group rooms.

Each :class:`Peer` owns a bounded outbound queue drained by its own writer task, so a fan-out to
a room only enqueues: one slow browser never holds up the others or the member who wrote. A peer
whose queue overflows has stopped reading: its connection is aborted rather than buffered without
bound (a polite close would itself wait on the full socket).

One writer's failure is that peer's alone. A frame is serialised by :func:`encode_frame`, which
cannot produce text a socket refuses to send: text that is not Unicode (a lone surrogate, which
the protocol refuses from members but a bot reply could still carry) is written as JSON
``\\u`` escapes instead of failing ``str.encode`` in every member's writer — once, a room
where one member sent ``\\ud800`` went silent for everybody, each writer task dead of the same
``UnicodeEncodeError``. Any other error while writing ends that peer's connection, with one log
line; the room's other writers never see it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging

from aiohttp import web
from aiohttp.http_websocket import WSCloseCode

from adapters.web.protocol import Frame, Hello
from bot.text import encodable

logger = logging.getLogger(__name__)

OUTBOX_SIZE = 64
"""Frames a peer may have waiting; more means the browser stopped reading."""
FLUSH_TIMEOUT_S = 2.0
"""How long a closing peer may spend sending what is still queued."""
MAX_BAD_FRAMES = 10
"""Refused frames in a row before the server gives up on a client."""


def encode_frame(frame: Frame) -> str:
    """``frame`` as the JSON text of one WebSocket message, always UTF-8 encodable: readable
    characters as they are, and ``\\u`` escapes only when some text in it is not Unicode."""
    text = json.dumps(frame, ensure_ascii=False)
    return text if encodable(text) else json.dumps(frame)


class Peer:
    """One WebSocket connection: who is on it, and its outbound queue."""

    def __init__(self, ws: web.WebSocketResponse, transport: asyncio.Transport | None) -> None:
        self.ws = ws
        self._transport = transport
        self.identity: Hello | None = None
        self.bad_frames = 0
        self._outbox: asyncio.Queue[Frame | None] = asyncio.Queue(OUTBOX_SIZE)
        self._writer = asyncio.create_task(self._drain())
        self._closing = False

    @property
    def exhausted(self) -> bool:
        """True after :data:`MAX_BAD_FRAMES` refused frames in a row: time to hang up."""
        return self.bad_frames >= MAX_BAD_FRAMES

    @property
    def room(self) -> str | None:
        return self.identity.room if self.identity else None

    def send(self, frame: Frame) -> bool:
        """Queue ``frame``; False when the peer is closing or too slow (it is then aborted)."""
        if self._closing or self._writer.done():
            return False
        try:
            self._outbox.put_nowait(frame)
        except asyncio.QueueFull:
            logger.warning("aborting a web chat client that stopped reading")
            self.abort()
            return False
        return True

    async def close(self, code: int = WSCloseCode.OK, message: bytes = b"") -> None:
        """Send what is queued, then close the socket; abort it if either step stalls."""
        self._closing = True
        with contextlib.suppress(asyncio.QueueFull):
            self._outbox.put_nowait(None)
        done, _ = await asyncio.wait({self._writer}, timeout=FLUSH_TIMEOUT_S)
        if not done:
            self.abort()
            return
        try:
            await asyncio.wait_for(self.ws.close(code=code, message=message), FLUSH_TIMEOUT_S)
        except TimeoutError:
            self.abort()

    def abort(self) -> None:
        """Drop the connection at once, without a closing handshake."""
        self._closing = True
        self._writer.cancel()
        if self._transport is not None:
            self._transport.abort()

    async def _drain(self) -> None:
        while (frame := await self._outbox.get()) is not None:
            try:
                await self.ws.send_str(encode_frame(frame))
            except ConnectionError:
                return  # the browser went away; the read loop notices and cleans up
            except Exception:  # this peer's failure, not the room's: drop it, log once
                logger.exception("web chat: a socket's writer failed; dropping that socket")
                self._fail()
                return

    def _fail(self) -> None:
        """From the writer itself: stop taking frames and drop the connection, so the read loop
        ends and the peer leaves its room (the writer task is not cancelled: it is returning)."""
        self._closing = True
        if self._transport is not None:
            self._transport.abort()


class Hub:
    """Every open peer, and who is in which room. One per web application."""

    def __init__(self) -> None:
        self._peers: set[Peer] = set()
        self._rooms: dict[str, set[Peer]] = {}

    def connect(self, ws: web.WebSocketResponse, transport: asyncio.Transport | None) -> Peer:
        """Register a freshly prepared socket (``transport`` lets a stuck one be aborted)."""
        peer = Peer(ws, transport)
        self._peers.add(peer)
        return peer

    def identify(self, peer: Peer, hello: Hello) -> str | None:
        """Set who ``peer`` is and move it to ``hello.room``; return the room it left, if any."""
        left = self._leave(peer)
        peer.identity = hello
        if hello.room is not None:
            self._rooms.setdefault(hello.room, set()).add(peer)
        return left

    def disconnect(self, peer: Peer) -> str | None:
        """Forget ``peer``; return the room it was in, if any."""
        self._peers.discard(peer)
        return self._leave(peer)

    def broadcast(
        self, room: str, frame: Frame, *, author: Peer | None = None, skip: Peer | None = None
    ) -> int:
        """Queue ``frame`` for everyone in ``room`` but ``skip``; ``author``'s copy is ``mine``.

        Returns how many peers it was queued for.
        """
        sent = 0
        for peer in list(self._rooms.get(room, ())):
            if peer is not skip:
                sent += peer.send(frame | {"mine": True} if peer is author else frame)
        return sent

    def members(self, room: str) -> int:
        """How many sockets are in ``room``."""
        return len(self._rooms.get(room, ()))

    async def close_all(self) -> None:
        """Close every socket (server shutdown)."""
        results = await asyncio.gather(
            *(p.close(WSCloseCode.GOING_AWAY, b"server shutdown") for p in self._peers),
            return_exceptions=True,
        )
        for result in results:
            if isinstance(result, Exception):  # the socket is gone either way; note why
                logger.info("web chat socket did not close cleanly: %r", result)

    def _leave(self, peer: Peer) -> str | None:
        room = peer.room
        if room is None:
            return None
        members = self._rooms.get(room)
        if members is not None:
            members.discard(peer)
            if not members:
                del self._rooms[room]
        return room
