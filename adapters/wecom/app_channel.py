"""The WeCom self-built app channel: store staff ask the bot inside WeCom.

Mounted at ``/wecom/app/``; each account answers at ``/{name}``:

- ``GET``: the URL check. ``msg_signature`` is verified over ``echostr``, which is decrypted and
  answered as plain text (no quotes, no newline), as the admin page expects within 1 s.
- ``POST``: the encrypted callback. It is verified, decrypted and parsed, recorded in the inbox
  (:meth:`bot.inbox.Inbox.record`; 503 when it cannot be, and WeCom retries), then acknowledged
  with HTTP 200 and an empty body; the pipeline runs in a background task owned by the
  sub-application, and the answer goes out through ``message/send`` (split to the 2048-byte
  limit), at most 30 a minute and 1,000 an hour to one member (:mod:`adapters.wecom.quota`: a
  reply over it is dropped with a log line, never sent for the platform to refuse). The message
  is done once its send went out or was dropped (:meth:`bot.inbox.Inbox.sent`); a process that
  dies before leaves it to the recovery loop (:mod:`bot.inbox_recovery`, through
  :meth:`WeComAppChannel.deliver`). WeCom retries a callback it did not see acknowledged; the
  inbox's key ``(channel, MsgId)`` makes a retried message answer nothing.

Only text messages reach the pipeline; events (enter_agent, ...) and other message types are
acknowledged and logged.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

from aiohttp import web

from adapters import MAX_TEXT_CHARS, Clock, utc_now
from adapters.wecom.callback import Account, CallbackEndpoint, ids, reply_text, require
from adapters.wecom.client import Credentials
from adapters.wecom.config import WeComAppAccount
from adapters.wecom.crypto import CallbackCrypto
from adapters.wecom.limits import TEXT_MAX_BYTES, split_text
from adapters.wecom.quota import RecipientQuota
from bot.inbox import Inbox
from bot.types import InboundMessage, MemberRef, Reply

log = logging.getLogger(__name__)

CHANNEL_PREFIX = "wecom_app."
_Account = Account[WeComAppAccount]
MAX_PARTS = 5
"""A long answer is cut to at most this many messages (a staff member's per-minute cap is 30)."""


class WeComAppChannel(CallbackEndpoint[WeComAppAccount]):
    """The callbacks and replies of every configured WeCom self-built app."""

    label = "wecom_app"
    channel_prefix = CHANNEL_PREFIX

    def __init__(
        self,
        inbox: Inbox,
        accounts: Sequence[WeComAppAccount],
        *,
        api_base: str,
        clock: Clock = utc_now,
        quota: RecipientQuota | None = None,
        **options: Any,
    ) -> None:
        """``options`` are :class:`CallbackEndpoint`'s (``admission``, ``max_body_bytes``,
        ``tokens``). Raises ``ValueError`` for an account without an EncodingAESKey."""
        super().__init__(accounts, api_base=api_base, **options)
        self._inbox = inbox
        self._quota = quota if quota is not None else RecipientQuota()
        self._clock = clock

    def crypto(self, config: WeComAppAccount) -> CallbackCrypto:
        if config.encoding_aes_key is None:
            raise ValueError(f"WeCom app {config.name!r} needs an encoding_aes_key")
        return CallbackCrypto(
            token=config.token.get_secret_value(),
            encoding_aes_key=config.encoding_aes_key.get_secret_value(),
            receive_id=config.corp_id,
        )

    def credentials(self, config: WeComAppAccount) -> Credentials:
        return Credentials("wecom", config.corp_id, config.secret.get_secret_value())

    async def handle(
        self, account: _Account, query: Mapping[str, str], body: bytes
    ) -> web.Response:
        """Record a text message and acknowledge; it is answered in the background."""
        msg = self._message(account, self.open(account, query, body))
        if msg is not None:
            await self._inbox.record(msg)  # Unavailable: 503, WeCom sends it again
            self.tasks.answer(self._answer(msg), what=f"answer to {msg.id}")
        return web.Response(status=200)

    def _message(self, account: _Account, fields: dict[str, str]) -> InboundMessage | None:
        kind = fields.get("MsgType", "")
        if kind != "text":
            log.info("%s: ignored a %r callback", account.channel, kind or "typeless")
            return None
        user, msg_id = ids(fields, "FromUserName", "MsgId")
        (text,) = require(fields, "Content")
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
        )

    async def _answer(self, msg: InboundMessage) -> None:
        reply = await self._inbox.answer_to_send(msg)
        if reply is not None:
            await self._inbox.sent(msg, await self.deliver(msg, reply))

    async def deliver(self, msg: InboundMessage, reply: Reply) -> str:
        """Send ``reply`` to the staff member who wrote ``msg`` (also the recovery loop's
        :data:`bot.inbox_recovery.Deliver`); the outcome. A platform failure raises."""
        account = self.accounts.get(msg.channel.removeprefix(CHANNEL_PREFIX))
        text = reply_text(reply)
        if account is None:
            return "rejected"  # an account no longer configured: nowhere to send it
        if text is None:
            return "no_reply"
        client = self.clients[account.name]
        user = msg.sender.external_id
        for part in split_text(text, TEXT_MAX_BYTES, max_parts=MAX_PARTS):
            if not self._quota.take(f"{account.name}:{user}"):
                log.warning("%s: reply to %s dropped: over message/send's per-member limit "
                            "(30 a minute, 1,000 an hour)", account.channel, user)  # fmt: skip
                return "over_quota"
            await client.message_send_text(
                agentid=account.config.agent_id, touser=user, content=part
            )
        return "sent"


def create_wecom_app_channel(
    inbox: Inbox, accounts: Sequence[WeComAppAccount], **options: Any
) -> web.Application:
    """A sub-application to mount at ``/wecom/app/``, recording and answering through ``inbox``
    (``options``: :class:`WeComAppChannel`'s);
    ``app[APP_CHANNEL].tasks`` holds the answers still being worked on."""
    channel = WeComAppChannel(inbox, accounts, **options)
    app = channel.application()
    app[APP_CHANNEL] = channel
    return app


APP_CHANNEL = web.AppKey("siyu_wecom_app_channel", WeComAppChannel)
