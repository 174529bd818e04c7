"""WeCom customer service (微信客服, kf): the callback endpoint, mounted at ``/wecom/kf/``.

``GET /{name}``  URL verification: check ``msg_signature`` over ``echostr``, answer its plaintext.
``POST /{name}`` a ``kf_msg_or_event`` callback: verify, decrypt, parse, answer HTTP 200 with an
empty body at once, and nudge the sync loop of (account, ``OpenKfId``) with the callback's
``Token`` (see :mod:`adapters.wecom.kf_channel`); the answers go out later through the API.

Order of checks, cheapest first: known account (404) → body size (413) → envelope XML (400) →
signature over ``<Encrypt>`` (401) → decryption (400) and receive id (403) → inner XML (400).
Hostile input gets a 4xx and one log line, never a 500. Another event or message type is
acknowledged (200) and ignored with a log line.
Timestamps are not checked for freshness: replaying a callback only triggers one more sync, which
answers nothing twice.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass

import aiohttp
from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncEngine

from adapters import Clock, utc_now
from adapters.wecom.callback import open_envelope, read_body, refused
from adapters.wecom.client import KF_SYNC_MAX_LIMIT, Credentials, TokenCache, WeComClient
from adapters.wecom.crypto import CallbackCrypto
from adapters.wecom.errors import CallbackError, MalformedXML
from adapters.wecom.kf_channel import KfChannel, KfEndpoint
from adapters.wecom.kf_state import KfState, create_kf_tables
from adapters.wecom.xmlwire import MAX_CALLBACK_BYTES
from bot.contact import ContactLedger
from bot.settings import KfAccount
from bot.types import MessageHandler, SessionEnded

log = logging.getLogger(__name__)

KF_EVENT = "kf_msg_or_event"


@dataclass(frozen=True)
class _Account:
    settings: KfAccount
    crypto: CallbackCrypto


class KfRuntime:
    """What the sub-app owns while it runs: the HTTP session, API clients and the sync loops."""

    def __init__(
        self, handle: MessageHandler, accounts: Sequence[KfAccount], *, api_base: str,
        engine: AsyncEngine, clock: Clock, timeout: float, backoff: float, page_size: int,
        session_ended: SessionEnded | None = None,
    ) -> None:  # fmt: skip
        self._handle, self._accounts, self._api_base = handle, accounts, api_base
        self._session_ended = session_ended
        self._engine, self._clock = engine, clock
        self._timeout, self._backoff, self._page_size = timeout, backoff, page_size
        self._channel: KfChannel | None = None

    @property
    def channel(self) -> KfChannel:
        """The running sync loops; only between startup and cleanup."""
        if self._channel is None:
            raise RuntimeError("the kf sub-application is not running")
        return self._channel

    async def lifecycle(self, _app: web.Application) -> AsyncIterator[None]:
        """``cleanup_ctx``: create the tables and clients; on cleanup stop the loops first."""
        await create_kf_tables(self._engine)
        async with aiohttp.ClientSession() as session:
            tokens = TokenCache()  # one per process: every account of the corp shares a token
            endpoints = {
                a.name: KfEndpoint(a, self._client(session, tokens, a)) for a in self._accounts
            }
            self._channel = KfChannel(
                self._handle, KfState(self._engine), endpoints, ledger=ContactLedger(self._engine),
                clock=self._clock, page_size=self._page_size, session_ended=self._session_ended,
            )  # fmt: skip
            try:
                yield
            finally:
                await self._channel.close()
                self._channel = None

    def _client(
        self, session: aiohttp.ClientSession, tokens: TokenCache, account: KfAccount
    ) -> WeComClient:
        creds = Credentials("wecom", account.corp_id, account.secret.get_secret_value())
        return WeComClient(
            session, creds, base_url=self._api_base, tokens=tokens,
            timeout=self._timeout, backoff=self._backoff,
        )  # fmt: skip


KF_RUNTIME = web.AppKey("siyu_wecom_kf", KfRuntime)


def create_kf_app(
    handle: MessageHandler,
    accounts: Sequence[KfAccount],
    *,
    api_base: str,
    engine: AsyncEngine,
    clock: Clock = utc_now,
    timeout: float = 10.0,
    backoff: float = 0.5,
    page_size: int = KF_SYNC_MAX_LIMIT,
    session_ended: SessionEnded | None = None,
) -> web.Application:
    """A sub-application to mount at ``/wecom/kf/``; one route per verb serves every account.

    ``timeout`` and ``backoff`` go to the API client; ``page_size`` is ``sync_msg``'s limit.
    ``session_ended`` is told when a human agent ends a member's session (the bot answers again).
    Raises ``ValueError`` for an account without an EncodingAESKey (WeCom requires one).
    """
    runtime = KfRuntime(
        handle, accounts, api_base=api_base, engine=engine, clock=clock,
        timeout=timeout, backoff=backoff, page_size=page_size, session_ended=session_ended,
    )  # fmt: skip
    callbacks = _Callbacks({a.name: _account(a) for a in accounts}, runtime)
    app = web.Application()
    app[KF_RUNTIME] = runtime
    app.cleanup_ctx.append(runtime.lifecycle)
    app.router.add_get("/{name}", callbacks.verify_url)
    app.router.add_post("/{name}", callbacks.receive)
    return app


def _account(account: KfAccount) -> _Account:
    if account.encoding_aes_key is None:
        raise ValueError(f"kf account {account.name!r} needs an encoding_aes_key")
    crypto = CallbackCrypto(
        account.token.get_secret_value(),
        account.encoding_aes_key.get_secret_value(),
        account.corp_id,
    )
    return _Account(account, crypto)


class _Callbacks:
    def __init__(self, accounts: dict[str, _Account], runtime: KfRuntime) -> None:
        self._accounts = accounts
        self._runtime = runtime

    async def verify_url(self, request: web.Request) -> web.Response:
        account = self._accounts.get(request.match_info["name"])
        if account is None:
            return web.Response(status=404, text="unknown account")
        query = request.query
        try:
            plain = account.crypto.verify_url(
                query.get("msg_signature", ""), query.get("timestamp", ""),
                query.get("nonce", ""), query.get("echostr", ""),
            )  # fmt: skip
        except CallbackError as exc:
            return refused(f"kf {account.settings.name}", exc)
        return web.Response(text=plain)

    async def receive(self, request: web.Request) -> web.Response:
        account = self._accounts.get(request.match_info["name"])
        if account is None:
            return web.Response(status=404, text="unknown account")
        channel = f"kf {account.settings.name}"
        try:
            body = await read_body(request, MAX_CALLBACK_BYTES)
            fields = open_envelope(account.crypto, request.query, body)
        except CallbackError as exc:
            return refused(channel, exc)
        if fields.get("MsgType") != "event" or fields.get("Event") != KF_EVENT:
            log.info("%s: ignored %s/%s", channel, fields.get("MsgType"), fields.get("Event"))
            return web.Response()
        token, open_kfid = fields.get("Token", ""), fields.get("OpenKfId", "")
        if not token or not open_kfid:
            return refused(channel, MalformedXML("kf_msg_or_event without Token / OpenKfId"))
        self._runtime.channel.nudge(account.settings.name, open_kfid, token)
        return web.Response()
