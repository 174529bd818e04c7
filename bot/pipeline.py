"""The one entry point every adapter feeds: ``Pipeline.handle(msg) -> Reply``.

A message runs through an ordered chain of steps; each step gets the message's :class:`Context`
and the rest of the chain (``call_next``), like middleware. The whole chain, outermost first::

    error boundary   a dependency failure → bot.errors.Unavailable (the inbox keeps the message
                     for a retry); any other failure → logged once, polite "not found, ask for
                     a person" reply
    session lock     one message at a time per session, in arrival order
    member           upsert the sender, move last_active; record the address they wrote from
                     and open its contact window (bot.contact)
    addressing       groups: silent unless addressed; the address is stripped, the asker quoted
    record           store the question and the reply as sent (on the way out)
    guard            plain text within reply_max_bytes, never empty (on the way out)
    commands         help / handoff / opt-out / opt-in; silence while a person serves
    complaint        an angry complaint → apology, handoff flagged 【投诉】 (bot.complaints)
    small talk       a whole message of greetings / thanks / "are you a bot?" → a brief reply;
                     a greeting in front of a question is stripped (bot.smalltalk)
    answer           the answerer (LLM or extractive) over the knowledge base

"record" and "guard" act on the reply coming back, so they wrap the steps that produce it.
"record" logs the member's message as sent; the answer step reads ``Context.query``, the
question the earlier steps cleaned up. Bot rows are logged with ``answered_by``: the answerer's
kind ("llm", "extractive", "retail", "not_found"), "smalltalk", "command", "handoff",
"complaint" (a handoff on a complaint) or "error"; ``siyu report`` counts them.

Channels do not call the pipeline directly: :class:`bot.inbox.Inbox` records each message first,
answers it once with :meth:`Pipeline.handle` (in order per conversation) and hands the answer out
once; retries of a message are the inbox's business, not the chain's.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

from bot.answer import NOT_FOUND_TEXT, Answerer, Turn
from bot.clock import Clock, utc_now
from bot.commands import ALLOWED_DURING_HANDOFF, Commands, parse_command
from bot.complaints import is_complaint
from bot.config import BotConfig
from bot.errors import Unavailable, is_unavailable
from bot.groups import Addressing, quote_for
from bot.guard import guard_text
from bot.logs import answering
from bot.models import Member
from bot.smalltalk import classify, strip_pleasantries
from bot.smalltalk import reply as smalltalk_reply
from bot.store import Store
from bot.text import utf8_len
from bot.types import HandoffReply, InboundMessage, MemberRef, NoReply, Reply, TextReply
from knowledge.types import Citation

log = logging.getLogger(__name__)

SESSION_IDLE = timedelta(minutes=30)
"""History older than this is a past conversation: follow-ups do not refer to it."""


@dataclass(slots=True)
class Context:
    """What the steps learn about one message as it passes through the chain."""

    msg: InboundMessage
    now: datetime
    question: str = ""
    query: str = ""
    """What the answerer is asked: ``question`` without a greeting (set by the small-talk step)."""
    quote: str | None = None
    member: Member | None = None
    history: list[Turn] | None = field(default=None, repr=False)

    @property
    def sender(self) -> Member:
        """The stored member; set by the member step."""
        if self.member is None:
            raise RuntimeError("the member step has not run")
        return self.member


Next = Callable[[Context], Awaitable[Reply]]
Step = Callable[[Context, Next], Awaitable[Reply]]


def _outcome(reply: Reply) -> str:
    """What a log line says about a reply: its kind, never its text (:mod:`bot.redact`)."""
    if isinstance(reply, NoReply):
        return f"silent ({reply.reason})"
    if isinstance(reply, HandoffReply):
        return f"handed off, {len(reply.text)} characters"
    return f"answered by {reply.answered_by}, {len(reply.text)} characters"


def build_chain(steps: Sequence[Step], terminal: Next) -> Next:
    """Join ``steps`` (outermost first) around ``terminal`` into one handler."""
    handler = terminal
    for step in reversed(steps):
        handler = _link(step, handler)
    return handler


def _link(step: Step, call_next: Next) -> Next:
    async def run(ctx: Context) -> Reply:
        return await step(ctx, call_next)

    return run


class KeyedLocks:
    """One asyncio lock per key, dropped when nobody holds or waits for it."""

    def __init__(self) -> None:
        self._locks: dict[str, tuple[asyncio.Lock, int]] = {}

    @asynccontextmanager
    async def hold(self, key: str) -> AsyncIterator[None]:
        """Hold ``key``'s lock; waiters get it in arrival order."""
        lock, users = self._locks.get(key, (asyncio.Lock(), 0))
        self._locks[key] = (lock, users + 1)
        try:
            async with lock:
                yield
        finally:
            lock, users = self._locks[key]
            if users == 1:
                del self._locks[key]
            else:
                self._locks[key] = (lock, users - 1)

    def __len__(self) -> int:
        return len(self._locks)


class Pipeline:
    """Handles every member message: commands, answers and the rules around them."""

    def __init__(
        self,
        store: Store,
        answerer: Answerer,
        config: BotConfig,
        clock: Clock = utc_now,
        *,
        session_idle: timedelta = SESSION_IDLE,
    ) -> None:
        self._store = store
        self._answerer = answerer
        self._config = config
        self._clock = clock
        self._session_idle = session_idle
        self._commands = Commands(store, config)
        self._addressing = Addressing(config.name)
        self._locks = KeyedLocks()
        self._chain = build_chain(
            [
                self._error_boundary,
                self._session_lock,
                self._member,
                self._address,
                self._record,
                self._guard,
                self._command,
                self._complaint,
                self._smalltalk,
            ],
            terminal=self._answer,
        )

    async def handle(self, msg: InboundMessage) -> Reply:
        """Handle one inbound message and return what to send back (maybe nothing). Every line
        logged meanwhile carries the message's id (:func:`bot.logs.answering`)."""
        with answering(msg.id):
            return await self._chain(Context(msg, self._clock()))

    async def human_session_ended(self, ref: MemberRef) -> None:
        """A person closed the member's session on the platform: the bot answers again."""
        member = await self._store.get_member(ref.channel, ref.external_id)
        if member is not None and await self._store.end_handoff(member):
            log.info("%s: the human session of a member ended; the bot answers again", ref.channel)

    async def _error_boundary(self, ctx: Context, call_next: Next) -> Reply:
        try:
            reply = await call_next(ctx)
        except Exception as exc:
            if is_unavailable(exc):  # an outage: the inbox keeps the message, the caller retries
                why = f"{type(exc).__name__}: {exc}"
                log.warning(
                    "message %s on %s waits for a retry: %s", ctx.msg.id, ctx.msg.channel, why
                )
                if isinstance(exc, Unavailable):
                    raise
                raise Unavailable(f"a dependency failed: {why}") from exc
            # The one place message failures are logged; the member still gets a polite reply.
            log.exception("failed to handle message %s on %s", ctx.msg.id, ctx.msg.channel)
            return TextReply(NOT_FOUND_TEXT, quote=quote_for(ctx.msg), answered_by="error")
        log.info("message %s on %s: %s", ctx.msg.id, ctx.msg.channel, _outcome(reply))
        return reply

    async def _session_lock(self, ctx: Context, call_next: Next) -> Reply:
        async with self._locks.hold(ctx.msg.session_key):
            return await call_next(ctx)

    async def _member(self, ctx: Context, call_next: Next) -> Reply:
        ctx.member = await self._store.upsert_member(ctx.msg.sender, ctx.now)
        if ctx.msg.address is not None:
            # The platform counts its window from the member's message: its time, not ours.
            await self._store.record_arrival(ctx.member, ctx.msg.address, ctx.msg.received_at)
        return await call_next(ctx)

    async def _address(self, ctx: Context, call_next: Next) -> Reply:
        question = self._addressing.question(ctx.msg)
        if question is None:
            return NoReply("not addressed")
        ctx.question = question
        ctx.quote = quote_for(ctx.msg)
        return await call_next(ctx)

    async def _record(self, ctx: Context, call_next: Next) -> Reply:
        reply = await call_next(ctx)
        text, answered_by, citations = _loggable(reply)
        await self._store.log_exchange(
            ctx.msg.session_key, ctx.sender, ctx.question, ctx.now,
            reply=text, answered_by=answered_by, citations=citations,
        )  # fmt: skip
        return reply

    async def _guard(self, ctx: Context, call_next: Next) -> Reply:
        reply = await call_next(ctx)
        if isinstance(reply, NoReply):
            return reply
        max_bytes = self._config.reply_max_bytes
        # Channels that render the quote as "@name " inline count it against the same limit.
        reserve = min(utf8_len(f"@{ctx.quote} "), max_bytes // 4) if ctx.quote else 0
        return replace(reply, text=guard_text(reply.text, max_bytes - reserve), quote=ctx.quote)

    async def _command(self, ctx: Context, call_next: Next) -> Reply:
        command = parse_command(ctx.question)
        if ctx.sender.handoff and command not in ALLOWED_DURING_HANDOFF:
            return NoReply("human serving")
        if command is None:
            return await call_next(ctx)
        return await self._commands.run(command, ctx.sender, await self._history(ctx), ctx.now)

    async def _complaint(self, ctx: Context, call_next: Next) -> Reply:
        if not is_complaint(ctx.question):
            return await call_next(ctx)
        history = await self._history(ctx)
        return await self._commands.handoff(ctx.sender, history, ctx.now, complaint=ctx.question)

    async def _smalltalk(self, ctx: Context, call_next: Next) -> Reply:
        name = self._config.name
        talk = classify(ctx.question, name)
        if talk is None:
            ctx.query = strip_pleasantries(ctx.question, name)
            return await call_next(ctx)
        local = ctx.now.astimezone(self._config.timezone)
        text = smalltalk_reply(talk, brand=self._config.brand, name=name, at=local, key=ctx.msg.id)
        return TextReply(text, answered_by="smalltalk")

    async def _answer(self, ctx: Context) -> Reply:
        history = await self._history(ctx) if self._answerer.uses_history else []
        answer = await self._answerer.answer(
            ctx.query or ctx.question, history, store_id=ctx.msg.store_id, at=ctx.now
        )
        return TextReply(answer.text, answer.citations, answered_by=answer.answered_by)

    async def preview(
        self, question: str, *, store_id: str | None = None, at: datetime
    ) -> tuple[str, str]:
        """What a new member asking ``question`` would be told, and which stage says it, through
        the same stages as :meth:`handle` with no history, writing nothing (``siyu ask``,
        ``siyu eval answers``). A command or a complaint is named rather than carried out."""
        command = parse_command(question)
        if command is not None:
            return f"（指令 {command}：不查知识库）", "command"
        if is_complaint(question):
            return "（投诉：道歉并转人工，摘要标记【投诉】）", "complaint"
        name = self._config.name
        talk = classify(question, name)
        if talk is not None:
            local = at.astimezone(self._config.timezone)
            key = "preview"
            text = smalltalk_reply(talk, brand=self._config.brand, name=name, at=local, key=key)
            return text, "smalltalk"
        query = strip_pleasantries(question, name)
        answer = await self._answerer.answer(query, (), store_id=store_id, at=at)
        return guard_text(answer.text, self._config.reply_max_bytes), answer.answered_by

    async def _history(self, ctx: Context) -> list[Turn]:
        # history_turns counts exchanges (a question and its reply): twice as many messages.
        if ctx.history is None:
            ctx.history = await self._store.recent_turns(
                ctx.msg.session_key,
                limit=2 * self._config.history_turns,
                since=ctx.now - self._session_idle,
            )
        return ctx.history


def _loggable(reply: Reply) -> tuple[str | None, str | None, tuple[Citation, ...]]:
    """The bot turn to log for ``reply``: text, answered_by, citations (no text: nothing sent)."""
    if isinstance(reply, TextReply):
        return reply.text, reply.answered_by, reply.citations
    if isinstance(reply, HandoffReply):
        return reply.text, "complaint" if reply.complaint else "handoff", ()
    return None, None, ()
