"""The WeCom self-built app channel: store staff ask the bot inside WeCom.

Mounted at ``/wecom/app/``; each account answers at ``/{name}``:

- ``GET``: the URL check. ``msg_signature`` is verified over ``echostr``, which is decrypted and
  answered as plain text (no quotes, no newline), as the admin page expects within 1 s.
- ``POST``: the encrypted callback. It is verified, decrypted and parsed, then acknowledged at once
  with HTTP 200 and an empty body; the pipeline runs in a background task owned by the
  sub-application, and the answer goes out through ``message/send`` (split to the 2048-byte
  limit), at most 30 a minute and 1,000 an hour to one member (:mod:`adapters.wecom.quota`: a
  reply over it is dropped with a log line, never sent for the platform to refuse). WeCom
  retries a callback it did not see acknowledged; the pipeline's durable dedupe on
  ``(channel, MsgId)`` makes a retried message answer nothing.

Only text messages reach the pipeline; events (enter_agent, ...) and other message types are
acknowledged and logged.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass

from aiohttp import web

from adapters import MAX_TEXT_CHARS, Clock, utc_now
from adapters.wecom.callback import (
    BackgroundTasks,
    api_clients,
    ids,
    open_envelope,
    query_params,
    read_body,
    refused,
    reply_text,
    require,
)
from adapters.wecom.client import Credentials, TokenCache, WeComClient
from adapters.wecom.config import WeComAppAccount
from adapters.wecom.crypto import CallbackCrypto
from adapters.wecom.errors import CallbackError
from adapters.wecom.limits import TEXT_MAX_BYTES, split_text
from adapters.wecom.quota import RecipientQuota
from adapters.wecom.xmlwire import MAX_CALLBACK_BYTES
from bot.types import InboundMessage, MemberRef, MessageHandler

log = logging.getLogger(__name__)

CHANNEL_PREFIX = "wecom_app."
MAX_PARTS = 5
"""A long answer is cut to at most this many messages (a staff member's per-minute cap is 30)."""


@dataclass(frozen=True)
class _Account:
    config: WeComAppAccount
    crypto: CallbackCrypto
    creds: Credentials

    @property
    def channel(self) -> str:
        return CHANNEL_PREFIX + self.config.name


def _account(config: WeComAppAccount) -> _Account:
    if config.encoding_aes_key is None:
        raise ValueError(f"WeCom app {config.name!r} needs an encoding_aes_key")
    crypto = CallbackCrypto(
        token=config.token.get_secret_value(),
        encoding_aes_key=config.encoding_aes_key.get_secret_value(),
        receive_id=config.corp_id,
    )
    creds = Credentials("wecom", config.corp_id, config.secret.get_secret_value())
    return _Account(config, crypto, creds)


class WeComAppChannel:
    """The callbacks and replies of every configured WeCom self-built app."""

    def __init__(
        self,
        handle: MessageHandler,
        accounts: Sequence[WeComAppAccount],
        *,
        api_base: str,
        clock: Clock = utc_now,
        max_body_bytes: int = MAX_CALLBACK_BYTES,
        tokens: TokenCache | None = None,
        quota: RecipientQuota | None = None,
    ) -> None:
        self._handle = handle
        self._quota = quota if quota is not None else RecipientQuota()
        self._accounts = {a.name: _account(a) for a in accounts}
        self._api_base = api_base
        self._clock = clock
        self._max_body = max_body_bytes
        self._tokens = tokens if tokens is not None else TokenCache()
        self._clients: dict[str, WeComClient] = {}
        self.tasks = BackgroundTasks("wecom_app")

    async def lifecycle(self, _app: web.Application) -> AsyncIterator[None]:
        """``cleanup_ctx``: one HTTP session for the API while the application runs."""
        creds = {name: a.creds for name, a in self._accounts.items()}
        async with api_clients(creds, api_base=self._api_base, tokens=self._tokens) as clients:
            self._clients = clients
            try:
                yield
            finally:
                await self.tasks.close()
                self._clients = {}

    async def verify(self, request: web.Request) -> web.Response:
        """``GET``: answer the decrypted ``echostr`` of a correctly signed URL check."""
        account = self._accounts.get(request.match_info["name"])
        if account is None:
            return web.Response(status=404)
        try:
            signature, timestamp, nonce, echostr = query_params(
                request.query, "msg_signature", "timestamp", "nonce", "echostr"
            )
            plain = account.crypto.verify_url(signature, timestamp, nonce, echostr)
        except CallbackError as exc:
            return refused(account.channel, exc)
        return web.Response(text=plain)

    async def receive(self, request: web.Request) -> web.Response:
        """``POST``: acknowledge at once; a text message is answered in the background."""
        account = self._accounts.get(request.match_info["name"])
        if account is None:
            return web.Response(status=404)
        try:
            body = await read_body(request, self._max_body)
            query_params(request.query, "msg_signature", "timestamp", "nonce")
            fields = open_envelope(account.crypto, request.query, body)
            msg = self._message(account, fields)
        except CallbackError as exc:
            return refused(account.channel, exc)
        if msg is not None:
            self.tasks.spawn(self._answer(account, msg), what=f"answer to {msg.id}")
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

    async def _answer(self, account: _Account, msg: InboundMessage) -> None:
        text = reply_text(await self._handle(msg))
        if text is None:
            return
        client = self._clients[account.config.name]
        user = msg.sender.external_id
        for part in split_text(text, TEXT_MAX_BYTES, max_parts=MAX_PARTS):
            if not self._quota.take(f"{account.config.name}:{user}"):
                log.warning("%s: reply to %s dropped: over message/send's per-member limit "
                            "(30 a minute, 1,000 an hour)", account.channel, user)  # fmt: skip
                return
            await client.message_send_text(
                agentid=account.config.agent_id, touser=msg.sender.external_id, content=part
            )


APP_CHANNEL = web.AppKey("siyu_wecom_app_channel", WeComAppChannel)


def create_wecom_app_channel(
    handle: MessageHandler,
    accounts: Sequence[WeComAppAccount],
    *,
    api_base: str,
    clock: Clock = utc_now,
    max_body_bytes: int = MAX_CALLBACK_BYTES,
    tokens: TokenCache | None = None,
    quota: RecipientQuota | None = None,
) -> web.Application:
    """A sub-application to mount at ``/wecom/app/``: ``GET``/``POST /{name}`` per account.

    Raises ``ValueError`` for an account without an EncodingAESKey (WeCom always encrypts).
    ``app[APP_CHANNEL].tasks`` holds the answers still being worked on.
    """
    channel = WeComAppChannel(
        handle, accounts, api_base=api_base, clock=clock, max_body_bytes=max_body_bytes,
        tokens=tokens, quota=quota,
    )  # fmt: skip
    app = web.Application()
    app[APP_CHANNEL] = channel
    app.router.add_get("/{name}", channel.verify)
    app.router.add_post("/{name}", channel.receive)
    app.cleanup_ctx.append(channel.lifecycle)
    return app
