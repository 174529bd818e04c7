"""WeCom customer service (微信客服, kf): the callback endpoint, mounted at ``/wecom/kf/``.

``GET /{name}``  URL verification: check ``msg_signature`` over ``echostr``, answer its plaintext.
``POST /{name}`` a ``kf_msg_or_event`` callback: verify, decrypt, parse, answer HTTP 200 with an
empty body at once, and nudge the sync loop of (account, ``OpenKfId``) with the callback's
``Token`` (see :mod:`adapters.wecom.kf_channel`); the answers go out later through the API.
When the sub-application starts, every open_kfid with a saved cursor is synced once without a
token (:meth:`~adapters.wecom.kf_channel.KfChannel.resume`): what a dead process left unread.

The order of checks is every callback's (:mod:`adapters.wecom.callback`). Another event or
message type is acknowledged (200) and ignored with a log line.
The signed timestamp is checked for freshness like every channel's (±5 minutes,
:mod:`adapters.wecom.callback`), although a replayed callback would only trigger one more sync,
which answers nothing twice: one rule for every signed request is simpler to trust than a list of
exceptions.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncEngine

from adapters import Clock, utc_now
from adapters.wecom.callback import Account, CallbackEndpoint
from adapters.wecom.client import KF_SYNC_MAX_LIMIT, Credentials
from adapters.wecom.config import KfAccount
from adapters.wecom.crypto import CallbackCrypto
from adapters.wecom.errors import MalformedXML
from adapters.wecom.kf_channel import CHANNEL_PREFIX, KfChannel, KfEndpoint
from adapters.wecom.kf_state import KfState
from bot.contact import ContactLedger
from bot.inbox import Inbox
from bot.types import InboundMessage, Reply, SessionEnded

log = logging.getLogger(__name__)

KF_EVENT = "kf_msg_or_event"


class KfRuntime(CallbackEndpoint[KfAccount]):
    """The kf callbacks, and what the sub-app owns while it runs: the sync loops."""

    label = "kf"
    channel_prefix = CHANNEL_PREFIX

    def __init__(
        self, inbox: Inbox, accounts: Sequence[KfAccount], *, api_base: str,
        engine: AsyncEngine, clock: Clock = utc_now, timeout: float = 10.0, backoff: float = 0.5,
        page_size: int = KF_SYNC_MAX_LIMIT, session_ended: SessionEnded | None = None,
        **options: Any,
    ) -> None:  # fmt: skip
        """``timeout`` and ``backoff`` go to the API client; ``page_size`` is ``sync_msg``'s
        limit. ``session_ended`` is told when a human agent ends a member's session (the bot
        answers again). ``options`` are :class:`CallbackEndpoint`'s. Raises ``ValueError`` for
        an account without an EncodingAESKey (WeCom requires one)."""
        super().__init__(accounts, api_base=api_base, **options)
        self.client_options = {"timeout": timeout, "backoff": backoff}
        self._inbox, self._session_ended = inbox, session_ended
        self._engine, self._clock, self._page_size = engine, clock, page_size
        self._channel: KfChannel | None = None

    @property
    def channel(self) -> KfChannel:
        """The running sync loops; only between startup and cleanup."""
        if self._channel is None:
            raise RuntimeError("the kf sub-application is not running")
        return self._channel

    def crypto(self, config: KfAccount) -> CallbackCrypto:
        if config.encoding_aes_key is None:
            raise ValueError(f"kf account {config.name!r} needs an encoding_aes_key")
        return CallbackCrypto(
            config.token.get_secret_value(),
            config.encoding_aes_key.get_secret_value(),
            config.corp_id,
        )

    def credentials(self, config: KfAccount) -> Credentials:
        return Credentials("wecom", config.corp_id, config.secret.get_secret_value())

    async def started(self) -> None:
        # The kf tables are the migrations' (bot.schema), made before any channel starts.
        endpoints = {
            name: KfEndpoint(a.config, self.clients[name]) for name, a in self.accounts.items()
        }
        self._channel = KfChannel(
            self._inbox, KfState(self._engine), endpoints, ledger=ContactLedger(self._engine),
            clock=self._clock, page_size=self._page_size, session_ended=self._session_ended,
            tasks=self.tasks,
        )  # fmt: skip
        # Not awaited: a slow or absent database must not hold up the start; failures are logged.
        self.tasks.spawn(self._channel.resume(), what="kf resume of the saved cursors")

    async def deliver(self, msg: InboundMessage, reply: Reply) -> str | None:
        """Send the reply to a message recorded earlier (the recovery loop's
        :data:`bot.inbox_recovery.Deliver`): :meth:`KfChannel.deliver`."""
        return await self.channel.deliver(msg, reply)

    async def stopping(self) -> None:
        if self._channel is not None:
            await self._channel.close()
            self._channel = None

    async def handle(
        self, account: Account[KfAccount], query: Mapping[str, str], body: bytes
    ) -> web.Response:
        """Acknowledge at once and nudge the sync loop the callback names."""
        fields = self.open(account, query, body)
        if fields.get("MsgType") != "event" or fields.get("Event") != KF_EVENT:
            log.info(
                "%s: ignored %s/%s", account.channel, fields.get("MsgType"), fields.get("Event")
            )
            return web.Response()
        token, open_kfid = fields.get("Token", ""), fields.get("OpenKfId", "")
        if not token or not open_kfid:
            raise MalformedXML("kf_msg_or_event without Token / OpenKfId")
        self.channel.nudge(account.name, open_kfid, token)
        return web.Response()


KF_RUNTIME = web.AppKey("siyu_wecom_kf", KfRuntime)


def create_kf_app(inbox: Inbox, accounts: Sequence[KfAccount], **options: Any) -> web.Application:
    """A sub-application to mount at ``/wecom/kf/``, recording and answering each pulled message
    through ``inbox`` (``options``: :class:`KfRuntime`'s); one
    route per verb serves every account; ``app[KF_RUNTIME]`` is the runtime."""
    runtime = KfRuntime(inbox, accounts, **options)
    app = runtime.application()
    app[KF_RUNTIME] = runtime
    return app
