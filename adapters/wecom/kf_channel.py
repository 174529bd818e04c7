"""The kf pull loop: ``kf/sync_msg`` pages → the pipeline → ``kf/send_msg``.

A callback only says "something happened on open_kfid X" (with a short-lived ``Token``).
:meth:`KfChannel.nudge` runs one loop per (account, open_kfid): when a loop is already running
the nudge marks it dirty and hands it the newer token, and the loop syncs once more before it
stops, so no callback is lost and two loops never race on one cursor in this process.

An entry that cannot be used (:class:`~adapters.wecom.kf_messages.BadKfMessage`: a missing
field, text that is not Unicode) is skipped, logged once with its msgid and counted in
:attr:`KfChannel.skipped`; the rest of the page is handled and the cursor moves past it, so one
bad entry never blocks the account.

One sync reads pages while ``has_more``; the cursor is saved only after a page's messages were
handled, and each customer text message is recorded in the inbox before it is answered
(:meth:`bot.inbox.Inbox.answer_to_send`), so none is lost when the cursor moves. A message is
done when its reply was sent, or a decision says it never will be (a person serves, the window
is closed, the platform refused it): :meth:`bot.inbox.Inbox.sent` with that outcome. A crash in
between (the answer handed out, ``send_msg`` not yet made) leaves it ``sending``: the re-read
page finds it leased, and once the lease has run out the recovery loop (:mod:`bot.inbox_recovery`,
through :meth:`KfChannel.deliver`) sends it. Our ``send_msg`` msgid (derived from the inbound
one) makes a repeated send idempotent on the platform, so that sending again cannot deliver
twice. A send that fails in transport (timeout, busy, frequency limit) stays ``sending`` for the
recovery loop too, and the sync moves on. Messages are handled one after another, in the
platform's order.

On start (:meth:`KfChannel.resume`, run by ``siyu serve`` when the kf sub-application starts)
the channel syncs once, without a callback token, every open_kfid it has a saved cursor for:
a process that died mid-page (SIGKILL, or SIGTERM cancelling the loop) left the page's later
messages unrecorded, and without this they would be read only when the next callback for that
open_kfid arrives, so a member who wrote once and waits would get nothing. WeCom accepts a
``sync_msg`` without ``token`` but strictly rate-limits it: hence once per open_kfid per start,
never as a poll. A callback arriving meanwhile hands the running loop its token as usual. An
open_kfid is saved (with an empty cursor, :meth:`~adapters.wecom.kf_state.KfState.remember`)
before its very first page, so a process that dies during that page is resumed too.

Before each reply the channel:

1. asks ``kf/service_state/get`` (one extra call per reply, none for messages that get no reply):
   states 2/3 mean a person owns the chat, and the bot stays silent;
2. consumes the reply's sends from the customer's 48 h / 5-message contact window (the core's
   :class:`bot.contact.ContactLedger`, shared with campaign pushes), splitting a long answer into
   as many parts as the window still allows, never relying on the platform to refuse; a
   ``WindowClosedError`` from the platform closes our window too. Each part is a message, and a
   handoff notice is one. The window is opened by the pipeline when a message reaches it (the
   message carries its :class:`bot.types.Address`), and here for the messages answered without
   it (non-text, too long). The ``enter_session`` welcome goes through ``send_msg_on_event``
   (one message per event code, not a ``send_msg``): it is not metered.

A handoff sends its text first and then moves the session to the human queue (state 2), or to
the account's ``servicer_userid`` (state 3): the platform refuses the bot's ``send_msg`` once a
person owns the session, so the order matters. When the agent ends the session
(``session_status_change`` with ``change_type`` 3) the core is told (``session_ended``): its
handoff flag clears and the bot answers the member again, without them having to say 机器人.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field

from adapters import Clock
from adapters.wecom.callback import BackgroundTasks
from adapters.wecom.client import KF_SYNC_MAX_LIMIT, WeComClient
from adapters.wecom.config import KfAccount
from adapters.wecom.errors import (
    APIError,
    RateLimitedError,
    SystemBusyError,
    TransportError,
    WindowClosedError,
)
from adapters.wecom.kf_messages import (
    HUMAN_STATES,
    ORIGIN_CUSTOMER,
    BadKfMessage,
    KfMessage,
    parse_kf_message,
    reply_msgid,
)
from adapters.wecom.kf_state import KfState
from adapters.wecom.limits import fit_window
from bot.contact import ContactLedger
from bot.inbox import Inbox
from bot.text import encodable
from bot.types import (
    Address,
    HandoffReply,
    InboundMessage,
    MemberRef,
    NoReply,
    Reply,
    SessionEnded,
)

log = logging.getLogger(__name__)

CHANNEL_PREFIX = "kf."
NON_TEXT_TEXT = "目前只能处理文字消息，请用文字描述您的问题。"
TOO_LONG_TEXT = "消息太长了，请分几次发送。"
MAX_QUESTION_CHARS = 2000
SESSION_ENDED = 3
"""``session_status_change`` ``change_type`` when the human agent ended the session."""
STATE_QUEUE, STATE_AGENT = 2, 3
SENT = "sent"
RETRYABLE = (TransportError, SystemBusyError, RateLimitedError)
"""Send failures that may pass: the message stays ``sending`` and is sent again later."""


@dataclass
class _Loop:
    """One running sync loop: the newest callback token (None: a token-less resume) and whether
    a callback came meanwhile."""

    token: str | None
    dirty: bool = False
    task: asyncio.Task[None] | None = field(default=None, repr=False)


@dataclass(frozen=True, slots=True)
class KfEndpoint:
    """One kf account as the loop needs it: its settings and its API client."""

    account: KfAccount
    client: WeComClient


class KfChannel:
    """The sync loops of every kf account, tracked so that shutdown cancels and awaits them."""

    def __init__(
        self, inbox: Inbox, state: KfState, endpoints: Mapping[str, KfEndpoint], *,
        ledger: ContactLedger, clock: Clock, page_size: int = KF_SYNC_MAX_LIMIT,
        session_ended: SessionEnded | None = None, tasks: BackgroundTasks | None = None,
    ) -> None:  # fmt: skip
        self._inbox = inbox
        self._ledger = ledger
        self._session_ended = session_ended
        self._page_size = page_size
        self._state = state
        self._endpoints = endpoints
        self._clock = clock
        self._loops: dict[tuple[str, str], _Loop] = {}
        self._tasks = tasks if tasks is not None else BackgroundTasks("kf")
        self.skipped = 0
        """``sync_msg`` entries skipped as unusable since start (each also logged once)."""

    def nudge(self, account: str, open_kfid: str, token: str | None) -> None:
        """A callback arrived: start the loop of (account, open_kfid), or make it sync again.
        ``token`` None (:meth:`resume`) syncs without one; it never replaces a callback's."""
        key = (account, open_kfid)
        loop = self._loops.get(key)
        if loop is not None:
            loop.token, loop.dirty = token or loop.token, True
            return
        loop = self._loops[key] = _Loop(token)
        loop.task = self._tasks.spawn(self._run(key, loop), what=f"sync of {account}/{open_kfid}")

    async def resume(self) -> None:
        """Sync once, without a callback token, every open_kfid with a saved cursor: what a dead
        process left unread is pulled and answered (see the module's docs)."""
        for name in self._endpoints:
            for open_kfid in await self._state.open_kfids(name):
                log.info("kf %s/%s: resuming from the saved cursor", name, open_kfid)
                self.nudge(name, open_kfid, None)

    async def drain(self) -> None:
        """Wait until every loop has stopped (loops a nudge starts meanwhile included)."""
        await self._tasks.drain()

    async def close(self) -> None:
        """Cancel the running loops and wait for them; saved cursors keep what was done."""
        await self._tasks.close()

    async def _run(self, key: tuple[str, str], loop: _Loop) -> None:
        account, open_kfid = key
        try:
            while True:
                loop.dirty = False
                try:
                    await self._sync(self._endpoints[account], open_kfid, loop)
                except APIError as exc:  # logged here, once; the next callback resumes
                    log.warning("kf %s/%s: sync stopped: %s", account, open_kfid, exc)
                if not loop.dirty:
                    return
        finally:  # an unexpected error is logged once by the task runner; the channel stays up
            del self._loops[key]

    async def _sync(self, endpoint: KfEndpoint, open_kfid: str, loop: _Loop) -> None:
        name = endpoint.account.name
        cursor = await self._state.cursor(name, open_kfid)
        if cursor is None:  # known from now on, so a start resumes it if this page is cut
            await self._state.remember(name, open_kfid, self._clock())
        while True:
            page = await endpoint.client.kf_sync_msg(
                token=loop.token, open_kfid=open_kfid, cursor=cursor, limit=self._page_size
            )
            entries = page.get("msg_list")
            for raw in entries if isinstance(entries, list) else []:
                await self._on_entry(endpoint, open_kfid, raw)
            next_cursor = page.get("next_cursor")
            if isinstance(next_cursor, str) and next_cursor and next_cursor != cursor:
                cursor = next_cursor
                await self._state.save_cursor(name, open_kfid, cursor, self._clock())
            elif page.get("has_more"):
                log.warning("kf %s/%s: has_more without a new cursor", name, open_kfid)
                return
            if not page.get("has_more"):
                return

    async def _on_entry(self, endpoint: KfEndpoint, open_kfid: str, raw: object) -> None:
        try:
            msg = parse_kf_message(raw, open_kfid=open_kfid)
        except BadKfMessage as exc:
            self.skipped += 1
            msgid = raw.get("msgid") if isinstance(raw, dict) else None
            shown = msgid if isinstance(msgid, str) and encodable(msgid) else "?"
            log.warning("kf %s/%s: skipped message %.64s (%d so far): %s",
                        endpoint.account.name, open_kfid, shown, self.skipped, exc)  # fmt: skip
            return
        if msg.msgtype == "event":
            await self._on_event(endpoint, msg)
        elif msg.is_customer and msg.external_userid:
            await self._on_customer(endpoint, msg)

    async def _on_event(self, endpoint: KfEndpoint, msg: KfMessage) -> None:
        if msg.event_type == "session_status_change" and msg.change_type == SESSION_ENDED:
            if self._session_ended is not None and msg.external_userid:
                channel = CHANNEL_PREFIX + endpoint.account.name
                await self._session_ended(MemberRef(channel, msg.external_userid))
            return
        if msg.event_type != "enter_session" or not msg.welcome_code:
            log.debug("kf %s: ignored event %s", endpoint.account.name, msg.event_type or "?")
            return
        try:
            await endpoint.client.kf_send_msg_on_event(
                code=msg.welcome_code, content=endpoint.account.welcome
            )
        except APIError as exc:  # a re-read page meets a used code: nothing to do
            log.info("kf %s: welcome not sent: %s", endpoint.account.name, exc)

    async def _on_customer(self, endpoint: KfEndpoint, msg: KfMessage) -> None:
        address = Address("kf", endpoint.account.name, msg.external_userid, chat=msg.open_kfid)
        if msg.msgtype != "text" or len(msg.text) > MAX_QUESTION_CHARS:
            await self._ledger.open(address, msg.sent_at)  # the pipeline does not see it
            notice = NON_TEXT_TEXT if msg.msgtype != "text" else TOO_LONG_TEXT
            await self._reply_text(endpoint, msg, address, notice)
        else:
            inbound = self._inbound(endpoint.account, msg, address)
            reply = await self._inbox.answer_to_send(inbound)  # recorded before the cursor moves
            if reply is None:
                return  # done already, or another request has it
            outcome = await self._deliver(endpoint, msg, address, reply)
            if outcome is not None:
                await self._inbox.sent(inbound, outcome)

    async def deliver(self, inbound: InboundMessage, reply: Reply) -> str | None:
        """Send the reply to a message recorded earlier (the recovery loop's
        :data:`bot.inbox_recovery.Deliver`); the outcome, None to try again later."""
        address = inbound.address
        endpoint = self._endpoints.get(inbound.channel.removeprefix(CHANNEL_PREFIX))
        if endpoint is None or address is None or not address.chat:
            return "rejected"  # an account no longer configured, or no chat to send to
        msg = KfMessage(
            msgid=inbound.id, open_kfid=address.chat, external_userid=address.user,
            sent_at=inbound.received_at, origin=ORIGIN_CUSTOMER, msgtype="text",
            text=inbound.text,
        )  # fmt: skip
        return await self._deliver(endpoint, msg, address, reply)

    def _inbound(self, account: KfAccount, msg: KfMessage, address: Address) -> InboundMessage:
        channel = CHANNEL_PREFIX + account.name
        return InboundMessage(
            id=msg.msgid,
            channel=channel,
            conversation=msg.conversation,
            sender=MemberRef(channel, msg.external_userid),
            text=msg.text,
            received_at=msg.sent_at,
            store_id=account.store_id,
            address=address,
        )

    async def _deliver(
        self, endpoint: KfEndpoint, msg: KfMessage, address: Address, reply: Reply
    ) -> str | None:
        """Send ``reply`` (and hand off when it says so); the outcome, None to try again."""
        if isinstance(reply, NoReply):
            return "no_reply"
        outcome = await self._reply_text(endpoint, msg, address, reply.text)
        if outcome == SENT and isinstance(reply, HandoffReply):
            await self._hand_off(endpoint, msg)
        return outcome

    async def _reply_text(
        self, endpoint: KfEndpoint, msg: KfMessage, address: Address, text: str
    ) -> str | None:
        """Send ``text`` (split to what the window allows) unless a person serves or the window
        is closed; the outcome (``sent`` when every part was), None to try again later."""
        name = endpoint.account.name
        if await self._human_serving(endpoint, msg):
            log.info("kf %s: %s is served by a person: silent", name, msg.external_userid)
            return "person_serving"
        limit = self._ledger.limit
        parts = await fit_window(self._ledger, address, text, self._clock(), max_parts=limit)
        if not parts:
            log.info("kf %s: window of %s closed: not sent", name, msg.external_userid)
            return "window_closed"
        for part, content in enumerate(parts):
            failed = await self._send(endpoint, msg, address, part, content)
            if failed != SENT:
                return failed
        return SENT

    async def _send(
        self, endpoint: KfEndpoint, msg: KfMessage, address: Address, part: int, content: str
    ) -> str | None:
        name = endpoint.account.name
        try:
            await endpoint.client.kf_send_text(
                touser=msg.external_userid,
                open_kfid=msg.open_kfid,
                content=content,
                msgid=reply_msgid(msg, part),
            )
        except WindowClosedError as exc:
            await self._ledger.close(address)
            log.info("kf %s: platform closed the window of %s: %s", name, msg.msgid, exc)
            return "window_closed"
        except RETRYABLE as exc:  # same msgid next time: the platform never delivers it twice
            log.warning("kf %s: reply to %s not sent yet: %s", name, msg.msgid, exc)
            return None
        except APIError as exc:
            log.warning("kf %s: reply to %s not sent: %s", name, msg.msgid, exc)
            return "rejected"
        return SENT

    async def _human_serving(self, endpoint: KfEndpoint, msg: KfMessage) -> bool:
        try:
            state = await endpoint.client.kf_service_state_get(
                open_kfid=msg.open_kfid, external_userid=msg.external_userid
            )
        except APIError as exc:
            # Unknown state: try to send; the platform refuses (95018) if a person serves.
            log.warning("kf %s: service state unknown: %s", endpoint.account.name, exc)
            return False
        return state in HUMAN_STATES

    async def _hand_off(self, endpoint: KfEndpoint, msg: KfMessage) -> None:
        servicer = endpoint.account.servicer_userid or None
        try:
            await endpoint.client.kf_service_state_trans(
                open_kfid=msg.open_kfid,
                external_userid=msg.external_userid,
                service_state=STATE_AGENT if servicer else STATE_QUEUE,
                servicer_userid=servicer,
            )
        except APIError as exc:
            log.warning("kf %s: handoff of %s failed: %s", endpoint.account.name, msg.msgid, exc)
