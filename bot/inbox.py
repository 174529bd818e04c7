"""The durable inbox: every inbound message is recorded before it is answered, and its answer is
handed out exactly once. At-least-once in, exactly-once out.

:meth:`Inbox.handle` is what the channels call (it fits :class:`bot.types.MessageHandler`). For
one message, identified by ``(channel, message id)`` as the platform sends it:

1. **Record** it (``inbox_message``, state ``pending``) in its own transaction. A database that
   cannot record it raises :class:`bot.errors.Unavailable`: the channel refuses the request
   (503, or no acknowledgement) and the platform or bridge retries. Nothing is answered that
   was not recorded first.
2. **Claim** it: one conditional UPDATE takes a lease (``answering``, ``owner``,
   ``lease_until``). It succeeds for one caller, and only when no earlier message of the same
   conversation (``session_key``) is still waiting or being answered, so a conversation's
   messages are answered in the order they were recorded, across processes too. A lease that
   ran out (its process died) can be taken over.
3. **Answer** it with the pipeline. A dependency failure (:func:`bot.errors.is_unavailable`:
   the database, the vector store or the embeddings server) returns the lease (``pending``
   again, ``attempts`` counts the tries) and raises :class:`bot.errors.Unavailable`: the member
   is not told "sorry" for an outage, the retry is answered. The apology is for questions the
   knowledge does not cover, and for our own bugs.
4. **Hand out** the answer: storing the reply and handing it out is one UPDATE that only the
   lease's owner can make. :meth:`Inbox.handle` (the console: the answer is shown in the same
   process) marks it ``delivered`` at once. A bridge's answer travels back in the HTTP
   response, which can be lost with the process or the connection, so :meth:`Inbox.respond`
   hands it out to ``sending`` under this process's lease and the webhook confirms with
   :meth:`Inbox.responded` once the response is written (``delivered``) or finds its caller gone
   (a bridge that timed out: ``answered`` again). A retry meanwhile waits; a retry after the
   process died takes the answer over when the lease runs out. So the bridge's retry always
   gets the answer, never ``duplicate`` for an answer it did not receive; a process killed
   after writing the response but before confirming it sends it once more (at least once).

A retry of a message already answered but not handed out gets that answer; a retry of a
delivered one gets ``NoReply("duplicate")``; a retry while another request (in this process or
another) is answering waits for that answer up to ``join_wait`` seconds, then raises
:class:`bot.errors.Unavailable` to be retried again.

**Channels that send through a platform API** (the Official Account's customer-service send,
the WeCom app's ``message/send``, kf's ``send_msg``) deliver after the request that brought the
message is gone, so for them "handed out" is not "done". They call :meth:`Inbox.record` before
acknowledging the callback (the row is committed before the HTTP response leaves; a database
that cannot record it makes the callback fail, and the platform retries), then
:meth:`Inbox.answer_to_send`, which hands the answer out to ``sending``: this process holds a
lease on it while it sends. :meth:`Inbox.sent` then marks it ``delivered`` with an ``outcome``:
``sent``, ``passive`` (the Official Account's passive reply carried it), or the decision that
it never will be (``window_closed``, ``person_serving``, ``over_quota``, ``no_reply``,
``rejected``, ``gave_up``). A process that dies in ``sending`` leaves the message to the
recovery loop (:mod:`bot.inbox_recovery`), which sends it again once the lease has run out.

Decision: after hand-out, delivery is **at least once**. kf's ``send_msg`` carries a msgid
derived from the inbound one, so sending again cannot deliver twice there. The Official
Account's ``custom/send`` and the app's ``message/send`` have no idempotency key: a process
killed between the platform accepting a send and the ``delivered`` UPDATE (one round trip to
the database) makes the member receive that answer twice. The other choice, at most once,
would lose every answer whose process died anywhere in ``sending`` (the whole platform call,
hundreds of milliseconds, not one UPDATE), and a member who asked gets no answer at all; a rare
duplicate is the lesser harm. The passive reply is the exception: once handed to the HTTP
response it counts as delivered (there is no later point at which we learn WeChat received
it), and a retry of it gets ``success``.

Decision: a process restarted after a crash has a new owner id and does not recognise its
predecessor's leases (pids are reused, and a container's are all alike, so "is that pid alive"
cannot be trusted). Their messages wait for the lease to run out: the delay of a message cut by
a crash is bounded by ``SIYU_INBOX_LEASE_SECONDS`` (30 s) plus the recovery loop's interval,
and the lease is never shorter than an answer may take (``SIYU_ANSWER_DEADLINE``), or a live
owner would lose its message to another process mid-answer.

Rows older than the retention (``SIYU_RETENTION_SEEN_DAYS``) are pruned by the scheduler
leader (:mod:`campaigns.retention`); a retry after that is answered again, and platforms retry
within minutes.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
import uuid
from collections.abc import Awaitable, Callable, Collection, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from pydantic import TypeAdapter
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.clock import Clock, utc_now
from bot.errors import Unavailable, is_unavailable
from bot.inbox_recorder import Recorder
from bot.models import InboxMessage, UTCDateTime
from bot.store import delete_in_batches
from bot.types import HandoffReply, InboundMessage, NoReply, Reply, TextReply
from knowledge.types import Citation

log = logging.getLogger(__name__)

PENDING, ANSWERING, ANSWERED, DELIVERED = "pending", "answering", "answered", "delivered"
SENDING = "sending"
"""Answered and handed out to a channel that sends it through a platform API; ``owner`` holds a
lease while it sends. Between ``answered`` and ``delivered``."""

LEASE = timedelta(seconds=30)
"""How long a claim lasts. Longer than any answer takes (the LLM's deadline is shorter), so a
live owner never loses it; a dead one's messages are taken over after it."""

ORDER_HORIZON = timedelta(minutes=2)
"""An earlier message of the conversation holds a later one back only if it arrived within this:
one that nobody retried (its bridge gave up) does not block the conversation for good."""

JOIN_WAIT = 8.0
"""Seconds a request waits for an answer another request is producing before it says "retry"."""

POLL_SECONDS = 0.2
"""How often a waiting request looks again when the answer is made in another process."""

RETRY_AFTER = 2.0
"""The ``Retry-After`` the channels give when a message is waiting for a dependency."""

_TABLE: sa.Table = InboxMessage.__table__  # type: ignore[attr-defined]
_MESSAGE = TypeAdapter(InboundMessage)
_CITATIONS = TypeAdapter(tuple[Citation, ...])

Answer = Callable[[InboundMessage], Awaitable[Reply]]


def process_owner() -> str:
    """A name for this process's leases: host, pid and a random part (pids are reused)."""
    return f"{socket.gethostname()[:64]}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


@dataclass(frozen=True, slots=True)
class Entry:
    """One row of the inbox as last read."""

    id: int
    state: str
    session_key: str
    reply: Reply | None


@dataclass(frozen=True, slots=True)
class Stranded:
    """A message nobody is answering or sending (:meth:`Inbox.stranded`)."""

    message: InboundMessage
    state: str
    attempts: int


class Inbox:
    """Records, orders and hands out the answers of inbound messages (see the module doc)."""

    def __init__(
        self,
        engine: AsyncEngine,
        answer: Answer,
        *,
        clock: Clock = utc_now,
        owner: str | None = None,
        lease: timedelta = LEASE,
        join_wait: float = JOIN_WAIT,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._engine = engine
        self._answer = answer
        self._clock = clock
        self.owner = owner or process_owner()
        self._lease = lease
        self._join_wait = join_wait
        self._monotonic = monotonic
        self._changed: dict[str, asyncio.Event] = {}
        self._releases: set[asyncio.Task[None]] = set()
        self._recorder = Recorder(engine, _TABLE)
        self._queued: dict[tuple[str, str], Entry] = {}
        """Messages this process recorded and will answer itself (:meth:`record`), as recorded:
        the recovery loop leaves them alone while they wait for an answer slot here, and
        :meth:`answer_to_send` starts from the recorded row instead of recording it again."""

    @property
    def lease(self) -> timedelta:
        """How long a claim lasts (``SIYU_INBOX_LEASE_SECONDS``)."""
        return self._lease

    async def handle(self, msg: InboundMessage) -> Reply:
        """Record ``msg``, answer it once, and return what to send now (see the module doc).

        Raises :class:`bot.errors.Unavailable` when it cannot be recorded or answered now.
        """
        with _unavailable_on_outage(f"recording message {msg.id}"):
            entry = await self._accept(msg)
        give_up = self._monotonic() + self._join_wait
        while True:
            if entry.state == DELIVERED:
                return NoReply("duplicate")
            if entry.state == ANSWERED:
                return await self._hand_out(entry)
            with _unavailable_on_outage(f"claiming message {msg.id}"):
                claimed = await self._claim(entry)
            if claimed:
                reply = await self._answer_claimed(entry, msg, DELIVERED)
                return NoReply("duplicate") if reply is None else reply
            if self._monotonic() >= give_up:
                raise Unavailable(f"message {msg.id} is still being answered", RETRY_AFTER)
            await self._wait_for_change(entry.session_key)
            with _unavailable_on_outage(f"reading message {msg.id}"):
                entry = await self._get(entry.id)

    async def record(self, msg: InboundMessage) -> None:
        """Record ``msg`` before its callback is acknowledged (a platform's retry finds it
        recorded). This process then answers it with :meth:`answer_to_send`. Raises
        :class:`bot.errors.Unavailable` when the database cannot record it."""
        with _unavailable_on_outage(f"recording message {msg.id}"):
            entry = await self._accept(msg)
        if entry.state == PENDING:
            self._queued[msg.channel, msg.id] = entry

    async def answer_to_send(self, msg: InboundMessage) -> Reply | None:
        """Record ``msg`` (if it is not yet), answer it once and hand the answer out to
        ``sending``, leased to this process until :meth:`sent` (see the module doc).

        The reply to send now, or None when there is nothing for this caller to send: it was
        delivered, another request holds it, or an earlier message of the conversation is still
        being answered after ``join_wait`` (the recovery loop answers it in turn). Raises
        :class:`bot.errors.Unavailable` when it cannot be recorded or answered now."""
        entry = self._queued.pop((msg.channel, msg.id), None)
        if entry is None:  # not recorded by this process: a recovered message
            with _unavailable_on_outage(f"recording message {msg.id}"):
                entry = await self._accept(msg)
        give_up = self._monotonic() + self._join_wait
        while True:
            if entry.state not in (PENDING, ANSWERING):
                with _unavailable_on_outage(f"handing out message {msg.id}"):
                    return await self._take_to_send(entry)
            with _unavailable_on_outage(f"claiming message {msg.id}"):
                claimed = await self._claim(entry)
            if claimed:
                return await self._answer_claimed(entry, msg, SENDING)
            if entry.state == ANSWERING or self._monotonic() >= give_up:
                return None  # another request answers it (its lease is alive), or it waits
            await self._wait_for_change(entry.session_key)
            with _unavailable_on_outage(f"reading message {msg.id}"):
                entry = await self._get(entry.id)

    async def sent(self, msg: InboundMessage, outcome: str) -> bool:
        """The answer to ``msg`` this process was sending is done; ``outcome`` says how (sent,
        or why it never will be: see the module doc). False when its lease had run out and
        another process took it over. Raises :class:`bot.errors.Unavailable` on an outage (the
        lease then runs out and the message is sent again: at least once)."""
        query = (
            _TABLE.update()
            .where(
                _TABLE.c.channel == msg.channel,
                _TABLE.c.message_id == msg.id,
                _TABLE.c.state == SENDING,
                _TABLE.c.owner == self.owner,
            )
            .values(
                state=DELIVERED, outcome=outcome[:32], owner=None, lease_until=None,
                updated_at=self._clock(),
            )
        )  # fmt: skip
        with _unavailable_on_outage(f"marking message {msg.id} {outcome}"):
            async with self._engine.begin() as conn:
                done = (await conn.execute(query)).rowcount == 1
        if not done:
            log.warning("message %s was %s after its lease ran out", msg.id, outcome)
        return done

    async def stranded(
        self, channels: Collection[str], *, grace: timedelta, limit: int
    ) -> list[Stranded]:
        """Messages of ``channels`` that nobody is answering or sending, oldest first: pending
        for longer than ``grace`` (and not waiting for a slot in this process), answered but
        never handed out for longer than ``grace``, or answering / sending under a lease that
        ran out (its process died)."""
        now = self._clock()
        c = _TABLE.c
        lost = sa.or_(
            sa.and_(c.state.in_((PENDING, ANSWERED)), c.updated_at < now - grace),
            sa.and_(c.state.in_((ANSWERING, SENDING)), c.lease_until < now),
        )
        query = (
            sa.select(c.id, c.message, c.state, c.attempts)
            .where(c.channel.in_(list(channels)), lost)
            .order_by(c.id)
            .limit(limit)
        )
        async with self._engine.connect() as conn:
            rows = (await conn.execute(query)).all()
        queued = {entry.id for entry in self._queued.values()}
        return [
            Stranded(stored_message(row.message), str(row.state), int(row.attempts))
            for row in rows
            if row.id not in queued
        ]

    async def abandon(self, msg: InboundMessage, outcome: str) -> bool:
        """Give up on ``msg`` (its sends kept failing): done with ``outcome``, never sent."""
        query = (
            _TABLE.update()
            .where(
                _TABLE.c.channel == msg.channel,
                _TABLE.c.message_id == msg.id,
                _TABLE.c.state != DELIVERED,
            )
            .values(
                state=DELIVERED, outcome=outcome, owner=None, lease_until=None,
                updated_at=self._clock(),
            )
        )  # fmt: skip
        async with self._engine.begin() as conn:
            return (await conn.execute(query)).rowcount == 1

    async def respond(self, msg: InboundMessage) -> Reply:
        """:meth:`handle` for a caller whose answer travels back in its own response (a bridge):
        the answer is handed out to ``sending``, leased to this process, and the caller says
        with :meth:`responded` whether the response went out. Until then a retry of the message
        waits (up to ``join_wait``) instead of being told ``duplicate``; if this process dies
        first, a retry after the lease takes the answer over and gets it.

        Raises :class:`bot.errors.Unavailable` when the message cannot be recorded or answered
        now, or another request still holds it after ``join_wait``."""
        with _unavailable_on_outage(f"recording message {msg.id}"):
            entry = await self._accept(msg)
        give_up = self._monotonic() + self._join_wait
        while True:
            if entry.state == DELIVERED:
                return NoReply("duplicate")
            reply = await self._respond_once(entry, msg)
            if reply is not None:
                return reply
            if self._monotonic() >= give_up:
                raise Unavailable(f"message {msg.id} is still being answered", RETRY_AFTER)
            await self._wait_for_change(entry.session_key)
            with _unavailable_on_outage(f"reading message {msg.id}"):
                entry = await self._get(entry.id)

    async def responded(self, msg: InboundMessage, delivered: bool) -> None:
        """The response carrying the answer :meth:`respond` gave this process went out
        (``delivered``: the message is done) or did not (the caller had gone: the answer waits
        for its retry). Nothing happens for a message this process does not hold."""
        values: dict[str, Any] = (
            {"state": DELIVERED, "outcome": "response"} if delivered else {"state": ANSWERED}
        )
        query = (
            _TABLE.update()
            .where(
                _TABLE.c.channel == msg.channel, _TABLE.c.message_id == msg.id,
                _TABLE.c.state == SENDING, _TABLE.c.owner == self.owner,
            )
            .values(owner=None, lease_until=None, updated_at=self._clock(), **values)
        )  # fmt: skip
        with _unavailable_on_outage(f"marking message {msg.id} responded"):
            async with self._engine.begin() as conn:
                await conn.execute(query)
        self._notify(msg.session_key)

    async def release(self) -> int:
        """Give back this process's leases (shutting down): another process, or this one after
        a restart, answers those messages. How many were given back."""
        query = (
            _TABLE.update()
            .where(_TABLE.c.owner == self.owner, _TABLE.c.state == ANSWERING)
            .values(state=PENDING, owner=None, lease_until=None, updated_at=self._clock())
        )
        async with self._engine.begin() as conn:
            return (await conn.execute(query)).rowcount

    async def settle(self) -> None:
        """Wait for the give-backs still running in the background (a cancelled answer hands its
        message back after the caller has gone): before the engine is disposed, or a give-back
        would open a connection on a closed pool and leave it unclosed."""
        await self._recorder.settle()
        while self._releases:
            await asyncio.gather(*self._releases, return_exceptions=True)

    async def waiting(self, now: datetime | None = None) -> tuple[int, timedelta]:
        """How many messages wait for an answer and how long the oldest has waited (readiness)."""
        now = now or self._clock()
        oldest_at = sa.func.min(_TABLE.c.received_at, type_=UTCDateTime())
        query = sa.select(sa.func.count(), oldest_at).where(
            _TABLE.c.state.in_((PENDING, ANSWERING))
        )
        async with self._engine.connect() as conn:
            count, oldest = (await conn.execute(query)).one()
        if not count or oldest is None:
            return 0, timedelta(0)
        return count, now - oldest

    async def _accept(self, msg: InboundMessage) -> Entry:
        """Record ``msg`` (committed when this returns; many at once share a commit:
        :mod:`bot.inbox_recorder`), or find it recorded already (a retry)."""
        now = self._clock()
        row = {
            "channel": msg.channel, "message_id": msg.id, "session_key": msg.session_key,
            "message": message_fields(msg), "state": PENDING,
            "attempts": 0, "received_at": now, "updated_at": now,
        }  # fmt: skip
        return _entry(await self._recorder.record(row))

    async def _claim(self, entry: Entry) -> bool:
        now = self._clock()
        earlier = _TABLE.alias("earlier")
        blocked = sa.exists().where(
            earlier.c.session_key == entry.session_key,
            earlier.c.id < entry.id,
            earlier.c.state.in_((PENDING, ANSWERING)),
            earlier.c.received_at > now - ORDER_HORIZON,
        )
        free = sa.or_(
            _TABLE.c.state == PENDING,
            sa.and_(_TABLE.c.state == ANSWERING, _TABLE.c.lease_until < now),
        )
        query = (
            _TABLE.update()
            .where(_TABLE.c.id == entry.id, free, ~blocked)
            .values(
                state=ANSWERING,
                owner=self.owner,
                lease_until=now + self._lease,
                attempts=_TABLE.c.attempts + 1,
                updated_at=now,
            )
        )
        async with self._engine.begin() as conn:
            return (await conn.execute(query)).rowcount == 1

    async def _answer_claimed(self, entry: Entry, msg: InboundMessage, to: str) -> Reply | None:
        """Answer a claimed message and hand the answer out to ``to`` (``delivered``: the
        caller's response carries it; ``sending``: the caller sends it under a lease). None when
        the lease was lost meanwhile."""
        try:
            reply = await self._answer(msg)
        except Unavailable:
            await self._give_back(entry)
            raise
        except BaseException:  # cancelled (shutting down): another process answers it
            self._give_back_later(entry)
            raise
        with _unavailable_on_outage(f"storing the answer to {msg.id}"):
            stored = await self._store(entry.id, reply, to)
        self._notify(entry.session_key)
        return reply if stored else None

    async def _store(self, key: int, reply: Reply, to: str) -> bool:
        """Store the answer and hand it out to state ``to``, if the lease is still ours."""
        query = (
            _TABLE.update()
            .where(_TABLE.c.id == key, _TABLE.c.owner == self.owner, _TABLE.c.state == ANSWERING)
            .values(reply=reply_fields(reply), **self._handed_out(to))
        )
        async with self._engine.begin() as conn:
            return (await conn.execute(query)).rowcount == 1

    def _handed_out(self, to: str) -> dict[str, Any]:
        """The columns of a message handed out to ``to``: ``sending`` keeps a lease."""
        now = self._clock()
        if to == SENDING:
            return {"state": SENDING, "owner": self.owner, "lease_until": now + self._lease,
                    "updated_at": now}  # fmt: skip
        return {"state": DELIVERED, "outcome": "response", "owner": None, "lease_until": None,
                "updated_at": now}  # fmt: skip

    async def _respond_once(self, entry: Entry, msg: InboundMessage) -> Reply | None:
        """One step of :meth:`respond`: the reply now handed out to this process, or None when
        another request holds the message (or an earlier one of its conversation)."""
        if entry.state in (ANSWERED, SENDING):
            with _unavailable_on_outage(f"handing out message {msg.id}"):
                return await self._take_to_send(entry)
        with _unavailable_on_outage(f"claiming message {msg.id}"):
            claimed = await self._claim(entry)
        if not claimed:
            return None
        return await self._answer_claimed(entry, msg, SENDING)

    async def _take_to_send(self, entry: Entry) -> Reply | None:
        """Take an answered message to send, or one whose sender's lease ran out."""
        now = self._clock()
        free = sa.or_(
            _TABLE.c.state == ANSWERED,
            sa.and_(_TABLE.c.state == SENDING, _TABLE.c.lease_until < now),
        )
        query = (
            _TABLE.update()
            .where(_TABLE.c.id == entry.id, free)
            .values(attempts=_TABLE.c.attempts + 1, **self._handed_out(SENDING))
        )
        async with self._engine.begin() as conn:
            taken = (await conn.execute(query)).rowcount == 1
        return entry.reply if taken else None

    async def _hand_out(self, entry: Entry) -> Reply:
        query = (
            _TABLE.update()
            .where(_TABLE.c.id == entry.id, _TABLE.c.state == ANSWERED)
            .values(**self._handed_out(DELIVERED))
        )
        with _unavailable_on_outage(f"handing out message {entry.id}"):
            async with self._engine.begin() as conn:
                handed = (await conn.execute(query)).rowcount == 1
        if handed and entry.reply is not None:
            return entry.reply
        return NoReply("duplicate")

    async def _give_back(self, entry: Entry) -> None:
        query = (
            _TABLE.update()
            .where(
                _TABLE.c.id == entry.id, _TABLE.c.owner == self.owner, _TABLE.c.state == ANSWERING
            )
            .values(state=PENDING, owner=None, lease_until=None, updated_at=self._clock())
        )
        try:
            async with self._engine.begin() as conn:
                await conn.execute(query)
        except Exception as exc:  # the lease runs out by itself; nothing is lost
            if not is_unavailable(exc):
                raise
            log.warning("could not give back message %d (%s); its lease runs out", entry.id, exc)
        self._notify(entry.session_key)

    def _give_back_later(self, entry: Entry) -> None:
        task = asyncio.get_running_loop().create_task(self._give_back(entry))
        self._releases.add(task)
        task.add_done_callback(self._releases.discard)

    async def _get(self, key: int) -> Entry:
        query = sa.select(_TABLE).where(_TABLE.c.id == key)
        async with self._engine.connect() as conn:
            return _entry((await conn.execute(query)).one())

    async def _wait_for_change(self, key: str) -> None:
        """Until this process answers or gives back a message of conversation ``key``, or a poll
        interval passes (another process may have)."""
        event = self._changed.setdefault(key, asyncio.Event())
        try:
            await asyncio.wait_for(event.wait(), POLL_SECONDS)
        except TimeoutError:
            pass
        finally:
            if event.is_set():
                self._changed.pop(key, None)

    def _notify(self, key: str) -> None:
        event = self._changed.pop(key, None)
        if event is not None:
            event.set()


async def prune_inbox(engine: AsyncEngine, before: datetime) -> int:
    """Forget messages last touched before ``before`` (retention); how many."""
    return await delete_in_batches(engine, _TABLE, _TABLE.c.updated_at < before)


@contextmanager
def _unavailable_on_outage(doing: str) -> Iterator[None]:
    """Turn a dependency failure into :class:`Unavailable` (the caller retries)."""
    try:
        yield
    except Unavailable:
        raise
    except Exception as exc:
        if not is_unavailable(exc):
            raise
        log.warning("%s failed: %s: %s", doing, type(exc).__name__, exc)
        raise Unavailable(f"{doing} failed: the database is unavailable", RETRY_AFTER) from exc


def reply_fields(reply: Reply) -> dict[str, Any]:
    """``reply`` as JSON fields, tagged by kind (the inverse of :func:`reply_from_fields`)."""
    if isinstance(reply, TextReply):
        return {"kind": "text", **asdict(reply)}
    if isinstance(reply, HandoffReply):
        return {"kind": "handoff", **asdict(reply)}
    return {"kind": "none", "reason": reply.reason}


def reply_from_fields(fields: dict[str, Any]) -> Reply:
    """The reply :func:`reply_fields` stored."""
    values = {k: v for k, v in fields.items() if k != "kind"}
    if fields.get("kind") == "text":
        values["citations"] = _CITATIONS.validate_python(values.get("citations", ()))
        return TextReply(**values)
    if fields.get("kind") == "handoff":
        return HandoffReply(**values)
    return NoReply(str(values.get("reason", "")))


def message_fields(msg: InboundMessage) -> dict[str, Any]:
    """``msg`` as JSON fields (the inverse of :func:`stored_message`)."""
    fields: dict[str, Any] = _MESSAGE.dump_python(msg, mode="json")
    return fields


def stored_message(fields: dict[str, Any]) -> InboundMessage:
    """The inbound message a row recorded."""
    return _MESSAGE.validate_python(fields)


def _entry(row: sa.Row[Any]) -> Entry:
    reply = reply_from_fields(row.reply) if row.reply is not None else None
    return Entry(int(row.id), str(row.state), str(row.session_key), reply)
