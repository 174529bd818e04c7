"""The Official Account (公众号) channel: passive replies inside WeChat's deadline, customer-service
messages after it, and exactly one answer per message across WeChat's retries.

Mounted at ``/wechat/oa/``; each account answers at ``/{name}``:

- ``GET``: the URL check, a 3-part ``signature`` over (token, timestamp, nonce); ``echostr`` is
  echoed unchanged.
- ``POST`` in plain mode: ``signature`` checked, the body is plain XML, the reply is plain.
  With ``encrypt_type=aes`` (safe mode, and compatible mode which also carries the plain fields):
  ``msg_signature`` checked over ``<Encrypt>``, only the encrypted message is read, and the
  passive reply is encrypted. A ``safe`` account refuses plain callbacks; a ``plain`` account (no
  EncodingAESKey) refuses encrypted ones.

Deadline (DESIGN.md §3): the answer is raced against the account's ``reply_budget_seconds``. If
it is ready in time it is the passive reply; otherwise the request answers ``success`` and the
answer goes out through ``message/custom/send`` when it arrives.

Contact window: ``custom/send`` allows 5 messages within 48 h of the member's last message. Each
customer-service message (every part of a split answer) is consumed from the core's contact-window
ledger (:mod:`bot.contact`, shared with campaign pushes) before it is sent, and a long answer is
split to what the window still allows; a closed window is logged and nothing is sent, never
retried. The pipeline opens the window when a text message reaches it (the message carries its
:class:`bot.types.Address`, ``oa``/account/openid). Decision: the passive reply (the HTTP response
to the member's message) is not a customer-service message — WeChat allows exactly one per
message, within the callback's deadline, whatever the 48-hour count — so it is not counted; the
rest of a long passive answer goes through ``custom/send`` and is. Media and ``subscribe``
(answered without the pipeline) open no window here: their notice is a passive reply, and under
overload (sent through the API) it is refused by the ledger unless the member wrote earlier —
the safe side.

Overload: answers take a slot of the process's :class:`adapters.admission.Admission` (shared
with every channel). When every slot is taken or promised, a new message does not wait at all: it
is acknowledged with ``success`` at once and its answer follows through ``message/custom/send``.
And a request already waiting for its passive reply stops waiting the moment work starts to queue
for a slot (``Admission.strained``): it too answers ``success`` and its answer follows through the
API. Decision: in a burst, the first messages would otherwise hold their requests open for as long
as their answers take (seconds with an LLM), which was the whole p99 of the acknowledgements
(issue 11: 4.57 s); now an acknowledgement waits for an answer only while the process is idle
enough to give it one at once (bench/load.py ``oa_burst``, bench/callback_ack.py).

Durable, and exactly once: each text message is recorded in the inbox
(:meth:`bot.inbox.Inbox.record`) before the callback is answered, overloaded or not; when it
cannot be recorded the callback gets 503, no ``success``, and WeChat sends it again. Its answer
is then made with :meth:`bot.inbox.Inbox.answer_to_send` and is done (``delivered``) once the
passive reply carrying it was written to WeChat's connection (:mod:`adapters.written`; if
WeChat had hung up, it goes through ``custom/send`` instead) or ``custom/send`` accepted it
(:meth:`bot.inbox.Inbox.sent`); a
process that dies before that leaves it to the recovery loop (:mod:`bot.inbox_recovery`), which
sends it through :meth:`OfficialAccountChannel.deliver` once the dead process's lease ran out.
Decision: a message cut by a crash is not answered passively to a retry (the lease of its dead
owner outlives WeChat's three retries, ~15 s): the retries get ``success`` and the answer
follows through ``custom/send``, once.

WeChat retries a message it saw no answer to (same MsgId, about every 5 s, three attempts).
Within one process each message's answer is one task in :class:`InFlight`; a retry waits on the
same task within its own budget. Whoever finds the finished answer first claims it: a request
still open returns it passively, else the task's completion sends it through the API. A retry
after delivery answers ``success``, in this process or any other (the inbox says it is done).

Media and ``subscribe`` notices are not recorded: they are answered from constants, without the
pipeline, and a lost one costs a member a notice, not an answer.

Text (and voice with WeChat's speech recognition) goes to the pipeline; ``subscribe`` gets a
welcome; images, voice, video get a polite "text only" note; everything else is ``success`` and
a log line.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from adapters import MAX_TEXT_CHARS, Clock, utc_now
from adapters.wecom.callback import (
    MAX_ID_CHARS,
    Account,
    BadQuery,
    CallbackEndpoint,
    ids,
    open_envelope,
    query_params,
    reply_text,
)
from adapters.wecom.client import Credentials
from adapters.wecom.config import OfficialAccountConfig
from adapters.wecom.crypto import CallbackCrypto, verify_plain
from adapters.wecom.errors import WindowClosedError
from adapters.wecom.inflight import Answer, InFlight
from adapters.wecom.limits import TEXT_MAX_BYTES, fit_window, split_text
from adapters.wecom.xmlwire import parse_xml, text_reply_xml
from adapters.written import Tracked
from bot.contact import ContactLedger
from bot.errors import Unavailable
from bot.inbox import Inbox
from bot.types import Address, InboundMessage, MemberRef, Reply

log = logging.getLogger(__name__)

CHANNEL_PREFIX = "oa."
SUCCESS = "success"
DEFAULT_WELCOME = "感谢关注！有问题直接发消息问我；回复“人工”可转人工客服。"
MEDIA_TEXT = "目前只能处理文字消息，请用文字描述您的问题。"
MEDIA_TYPES = frozenset({"image", "voice", "video", "shortvideo"})
MAX_CUSTOM_PARTS = 3
"""A long answer is cut to at most this many customer-service messages (fewer when the contact
window has fewer left)."""
_Account = Account[OfficialAccountConfig]

Produce = Callable[[], Awaitable[str | None]]


@dataclass(frozen=True)
class _Callback:
    """One verified callback: its fields, and the crypto to encrypt the reply with (safe mode)."""

    fields: dict[str, str]
    crypto: CallbackCrypto | None
    timestamp: str
    nonce: str


class OfficialAccountChannel(CallbackEndpoint[OfficialAccountConfig]):
    """The callbacks, passive replies and customer-service sends of every Official Account."""

    label = "oa"
    channel_prefix = CHANNEL_PREFIX

    def __init__(
        self,
        inbox: Inbox,
        accounts: Sequence[OfficialAccountConfig],
        *,
        api_base: str,
        ledger: ContactLedger,
        clock: Clock = utc_now,
        welcome: str = DEFAULT_WELCOME,
        monotonic: Callable[[], float] = time.monotonic,
        **options: Any,
    ) -> None:
        """``options`` are :class:`CallbackEndpoint`'s (``admission``, ``max_body_bytes``,
        ``tokens``). Raises ``ValueError`` for a compatible- or safe-mode account without an
        EncodingAESKey."""
        super().__init__(accounts, api_base=api_base, **options)
        self._inbox = inbox
        self._ledger = ledger
        self._clock = clock
        self._welcome = welcome
        self.inflight = InFlight(monotonic=monotonic)

    def crypto(self, config: OfficialAccountConfig) -> CallbackCrypto | None:
        key = config.encoding_aes_key
        if key is None and config.mode != "plain":
            raise ValueError(f"Official Account {config.name!r} in {config.mode} mode needs a key")
        if key is None:
            return None
        return CallbackCrypto(
            config.token.get_secret_value(), key.get_secret_value(), config.app_id
        )

    def credentials(self, config: OfficialAccountConfig) -> Credentials:
        return Credentials("oa", config.app_id, config.secret.get_secret_value())

    def check_url(self, account: _Account, query: Mapping[str, str]) -> str:
        """Echo ``echostr`` of a correctly signed URL check, unchanged (a plain signature, in
        every mode)."""
        names = ("signature", "timestamp", "nonce", "echostr")
        signature, timestamp, nonce, echostr = query_params(query, *names)
        verify_plain(_token(account), signature, timestamp, nonce)
        return echostr

    async def handle(
        self, account: _Account, query: Mapping[str, str], body: bytes
    ) -> web.Response:
        """The passive reply if the answer is ready within the budget, else ``success``."""
        callback = self._open(account, query, body)
        text, msg = await self._dispatch(account, callback.fields)
        if text is None:
            return web.Response(text=SUCCESS)
        user = callback.fields["FromUserName"]
        first = split_text(text, TEXT_MAX_BYTES)[0]
        # A passive reply carries one message (the first part is a prefix of the stripped text):
        # the rest goes through the API.
        if rest := text.strip()[len(first) :].strip():
            self.tasks.spawn(self._send_later(account, user, rest, None), what="rest of an answer")
        xml = self._passive(callback, first)
        if msg is None:  # a notice, not a recorded message
            return web.Response(text=xml, content_type="application/xml")

        async def written(delivered: bool) -> None:
            await self._passive_written(account, msg, first, delivered)

        return Tracked(text=xml, content_type="application/xml", written=written)

    async def _passive_written(
        self, account: _Account, msg: InboundMessage, text: str, delivered: bool
    ) -> None:
        """The passive reply carrying ``msg``'s answer was written (done), or WeChat had gone
        (its 5 s are up): the answer goes through ``custom/send`` instead."""
        if not delivered:
            work = self._send_later(account, msg.conversation, text, msg)
            self.tasks.spawn(work, what="customer-service send")
            return
        try:
            await self._inbox.sent(msg, "passive")
        except Unavailable as exc:  # its lease runs out and it is sent again: at least once
            log.warning("%s: could not mark %s answered: %s", account.channel, msg.id, exc)

    def check_query(self, account: _Account, query: Mapping[str, str]) -> None:
        """Before the body is read: an encrypted callback has its signed parameters; a plain one
        is verified whole (its signature covers token, timestamp and nonce, not the body)."""
        if query.get("encrypt_type") == "aes":
            if account.crypto is None:
                raise BadQuery("an encrypted callback for a plain-mode account")
            query_params(query, "msg_signature", "timestamp", "nonce")
            return
        if account.config.mode == "safe":
            raise BadQuery("a plain callback for a safe-mode account")
        signature, timestamp, nonce = query_params(query, "signature", "timestamp", "nonce")
        verify_plain(_token(account), signature, timestamp, nonce)

    def _open(self, account: _Account, query: Mapping[str, str], body: bytes) -> _Callback:
        """The callback's fields; its query passed :meth:`check_query`."""
        timestamp, nonce = query["timestamp"], query["nonce"]
        if account.crypto is not None and query.get("encrypt_type") == "aes":
            fields = open_envelope(account.crypto, query, body)
            return _Callback(fields, account.crypto, timestamp, nonce)
        return _Callback(parse_xml(body), None, timestamp, nonce)

    async def _dispatch(
        self, account: _Account, fields: dict[str, str]
    ) -> tuple[str | None, InboundMessage | None]:
        """The passive reply's text (None: ``success``) and the recorded message it answers
        (None for a notice)."""
        (user,) = ids(fields, "FromUserName")
        kind = fields.get("MsgType", "")
        question = fields.get("Content") if kind == "text" else fields.get("Recognition")
        if question and question.strip():
            (msg_id,) = ids(fields, "MsgId")
            msg = self._message(account, msg_id, user, question)
            if msg is None:
                return None, None
            await self._inbox.record(msg)  # before any acknowledgement; Unavailable: 503
            return await self._respond(account, msg_id, user, lambda: self._ask(msg), msg), msg
        if kind in MEDIA_TYPES:
            key = fields.get("MsgId", "")[:MAX_ID_CHARS] or f"{user}:{fields.get('CreateTime', '')}"
            return await self._respond(account, key, user, _constant(MEDIA_TEXT)), None
        if kind == "event" and fields.get("Event") == "subscribe":
            key = f"subscribe:{user}:{fields.get('CreateTime', '')[:MAX_ID_CHARS]}"  # no MsgId
            return await self._respond(account, key, user, _constant(self._welcome)), None
        log.info("%s: ignored a %r callback (%s)", account.channel, kind, fields.get("Event", ""))
        return None, None

    def _message(
        self, account: _Account, msg_id: str, user: str, text: str
    ) -> InboundMessage | None:
        if len(text) > MAX_TEXT_CHARS:
            log.info("%s: ignored message %s of %d characters", account.channel, msg_id, len(text))
            return None
        return InboundMessage(
            id=msg_id,
            channel=account.channel,
            conversation=user,
            sender=MemberRef(account.channel, user),
            text=text,
            received_at=self._clock(),
            store_id=account.config.store_id,
            address=_address(account, user),
        )

    async def _ask(self, msg: InboundMessage) -> str | None:
        """The answer's text for this process to deliver, if it is this process's to deliver."""
        reply = await self._inbox.answer_to_send(msg)
        if reply is None:
            return None  # done already, or another request (maybe another process) has it
        text = reply_text(reply)
        if text is None:
            await self._inbox.sent(msg, "no_reply")
        return text

    async def _respond(
        self, account: _Account, key: str, user: str, produce: Produce,
        msg: InboundMessage | None = None,
    ) -> str | None:  # fmt: skip
        """Start (or join) the answer for ``key`` and wait for it within the account's budget;
        the passive reply's text (``msg``, if recorded, is marked delivered once it is written:
        :meth:`_passive_written`)."""
        budget = account.config.reply_budget_seconds
        answer = self.inflight.get(f"{account.config.name}:{key}")
        if answer is None:
            overloaded = self.tasks.saturated
            answer = self.inflight.start(
                f"{account.config.name}:{key}",
                lambda entry: self.tasks.answer(_fill(entry, produce), what=f"answer to {key}"),
                lambda entry: self._finished(account, user, entry, msg),
            )
            if overloaded:
                return None  # acknowledge now; the answer follows through the API
        return await answer.wait(budget, until=self.tasks.admission.strained())

    def _finished(
        self, account: _Account, user: str, answer: Answer, msg: InboundMessage | None
    ) -> None:
        """The answer is ready and no request is waiting for it: send it through the API."""
        if answer.text is not None and answer.claim():
            work = self._send_later(account, user, answer.text, msg)
            self.tasks.spawn(work, what="customer-service send")

    async def _send_later(
        self, account: _Account, user: str, text: str, msg: InboundMessage | None
    ) -> None:
        outcome = await self._send(account, user, text)
        if msg is not None:
            await self._inbox.sent(msg, outcome)

    async def deliver(self, msg: InboundMessage, reply: Reply) -> str:
        """Send the answer to a message of this channel's recorded earlier (the recovery loop,
        :data:`bot.inbox_recovery.Deliver`) through ``custom/send``; the outcome."""
        account = self.accounts.get(msg.channel.removeprefix(CHANNEL_PREFIX))
        text = reply_text(reply)
        if account is None:
            return "rejected"  # an account no longer configured: nowhere to send it
        if text is None:
            return "no_reply"
        return await self._send(account, msg.sender.external_id, text)

    async def _send(self, account: _Account, user: str, text: str) -> str:
        """Send ``text`` through ``custom/send``, split to what the contact window allows; the
        outcome (``sent``, ``window_closed``). A platform failure raises."""
        address = _address(account, user)
        at = self._clock()
        parts = await fit_window(self._ledger, address, text, at, max_parts=MAX_CUSTOM_PARTS)
        if not parts:
            log.info("%s: window of %s closed: answer not sent", account.channel, user)
            return "window_closed"
        client = self.clients[account.name]
        for part in parts:
            try:
                await client.custom_send_text(touser=user, content=part)
            except WindowClosedError as exc:
                await self._ledger.close(address)
                log.info("%s: platform closed the window of %s: %s", account.channel, user, exc)
                return "window_closed"
        return "sent"

    def _passive(self, callback: _Callback, text: str) -> str:
        """The passive reply XML carrying ``text``, encrypted when the callback was."""
        user, ours = callback.fields["FromUserName"], callback.fields.get("ToUserName", "")
        xml = text_reply_xml(user, ours, text, int(self._clock().timestamp()))
        if callback.crypto is None:
            return xml
        return callback.crypto.encrypted_reply(
            xml, timestamp=callback.timestamp, nonce=callback.nonce
        )


def _address(account: _Account, user: str) -> Address:
    return Address("oa", account.name, user)


def _token(account: _Account) -> str:
    return account.config.token.get_secret_value()


async def _fill(answer: Answer, produce: Produce) -> None:
    answer.text = await produce()


def _constant(text: str) -> Produce:
    async def produce() -> str | None:
        return text

    return produce


def create_official_app(
    inbox: Inbox, accounts: Sequence[OfficialAccountConfig], **options: Any
) -> web.Application:
    """A sub-application to mount at ``/wechat/oa/``, recording and answering through ``inbox``
    (``options``: the channel's; ``ledger``, the core's contact-window ledger every
    customer-service send consumes from, is required).

    ``app[OA_CHANNEL]`` exposes the in-flight answers and background tasks (tests, shutdown).
    """
    channel = OfficialAccountChannel(inbox, accounts, **options)
    app = channel.application()
    app[OA_CHANNEL] = channel
    return app


OA_CHANNEL = web.AppKey("siyu_oa_channel", OfficialAccountChannel)
