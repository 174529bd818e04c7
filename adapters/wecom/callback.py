"""What every WeChat / WeCom callback endpoint shares: :class:`CallbackEndpoint`, the base of the
kf, Official Account and WeCom app channels, and the pieces it is made of (a bounded body, the
query parameters, the encrypted envelope, answering a refused request, and the background tasks
that answer after the platform has been acknowledged).

The base owns what the three channels have in common, as aiogram's request handler does: the
accounts by name (their crypto and API credentials), the ``GET`` URL check, the ``POST`` order of
checks, one HTTP session with an API client per account while the sub-application runs, and the
background tasks. A channel overrides what differs: how its URL check is signed
(:meth:`CallbackEndpoint.check_url`) and what a verified callback does
(:meth:`CallbackEndpoint.handle`).

Order of checks on a callback, cheapest first: known account (404) → the signed ``timestamp``
(400 when it is not a timestamp, 401 when it is more than 5 minutes from our clock) → the other
query parameters (400; :meth:`CallbackEndpoint.check_query`, where an Official Account in plain
mode verifies its signature, since it does not cover the body) → body size (413, from
``Content-Length`` before reading, :mod:`adapters.limits`) → signature (401) → decryption and
receive id (400 / 403) → XML (400). Everything before the body size is checked before the body
is read. A refused request is logged once and answered with the status of its
:class:`CallbackError` and a one-line body naming it; nothing a caller sends can make an
endpoint answer 500. A callback whose message cannot be recorded (the database is down:
:class:`bot.errors.Unavailable`) is answered 503 with ``Retry-After``: not acknowledged, so the
platform sends it again (:mod:`bot.inbox`: nothing is acknowledged that was not recorded).

Freshness (:mod:`adapters.freshness`, the webhook's rule): every signature WeChat and WeCom send
covers the ``timestamp`` query parameter — the Official Account's plain ``signature`` and every
encrypted mode's ``msg_signature``, on ``POST`` callbacks and ``GET`` URL checks alike — so one
check in the base refuses a replayed request of any channel, whatever its body: a plain-mode
signature captured once could otherwise be replayed for ever with new bodies (the plain
signature does not cover the body), answering forged openids. Decision: the freshness check
runs before the signature, on the unverified timestamp: a forged fresh timestamp still fails
the signature, and a stale one is refused without hashing or reading anything. The ``GET`` URL
check is held to the same window: the platform sends it when the URL is saved, signed now.

How many answers run at once is decided once per process, for every channel, by the
:class:`adapters.admission.Admission` the composition root builds and hands to each channel's
:class:`BackgroundTasks`: an answer to an acknowledged callback lines up there without a bound
(refusing it would lose an acknowledged message), and the Official Account acknowledges at once
instead of waiting for a passive reply whenever every slot is taken or promised.

Answering within a deadline is one helper, :class:`adapters.wecom.inflight.InFlight`. Only the
Official Account needs it: its passive reply must leave within the 5 s WeChat waits, so the
answer is raced against ``reply_budget_seconds`` and a retry joins the same answer. kf and the
WeCom app acknowledge at once and send through the API (no deadline to meet), and the webhook
and web chat answer in the request, bounded by the pipeline's own timeouts. A channel that
gains a passive-reply deadline uses ``InFlight``; it is not rewritten per channel.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Generic, TypeVar

import aiohttp
from aiohttp import web

from adapters import MAX_REQUEST_BYTES, limits
from adapters.admission import Admission, Ticket
from adapters.freshness import MalformedTimestamp, StaleTimestamp, fresh_timestamp
from adapters.wecom.client import Credentials, TokenCache, WeComClient
from adapters.wecom.config import CallbackAccount
from adapters.wecom.crypto import CallbackCrypto
from adapters.wecom.errors import CallbackError, MalformedXML, StaleCallback, WeComError
from adapters.wecom.xmlwire import parse_xml
from adapters.written import Tracked, write_now
from bot.errors import Unavailable
from bot.types import InboundMessage, NoReply, Reply

log = logging.getLogger(__name__)

MAX_PARAM_CHARS = 1024
"""Query values are short (a 40-hex signature, a 10-digit timestamp, a nonce, an echostr)."""


class BodyTooLarge(CallbackError):
    """The request body is over the endpoint's limit."""

    status = 413


class BadQuery(CallbackError):
    """A required query parameter is missing or oversized."""


def query_params(query: Mapping[str, str], *names: str) -> list[str]:
    """The values of ``names`` in the query string, in order; :class:`BadQuery` if one is missing,
    empty or oversized."""
    values: list[str] = []
    for name in names:
        value = query.get(name, "")
        if not value or len(value) > MAX_PARAM_CHARS:
            raise BadQuery(f"query parameter {name!r} is missing or oversized")
        values.append(value)
    return values


def open_envelope(crypto: CallbackCrypto, query: Mapping[str, str], body: bytes) -> dict[str, str]:
    """The fields of an encrypted callback: verify ``msg_signature`` over its ``<Encrypt>``,
    decrypt, parse. ``query`` holds ``msg_signature``, ``timestamp`` and ``nonce``."""
    outer = parse_xml(body)
    encrypt = outer.get("Encrypt", "")
    if not encrypt:
        raise MalformedXML("the callback has no <Encrypt> element")
    crypto.verify(
        query.get("msg_signature", ""), query.get("timestamp", ""), query.get("nonce", ""), encrypt
    )
    return parse_xml(crypto.decrypt(encrypt))


def check_fresh(query: Mapping[str, str], now: float) -> None:
    """Refuse a callback whose signed ``timestamp`` query parameter is not a timestamp
    (:class:`BadQuery`) or is further than ``adapters.freshness.MAX_SKEW_S`` from ``now``
    (:class:`~adapters.wecom.errors.StaleCallback`)."""
    try:
        fresh_timestamp(query.get("timestamp", ""), now)
    except MalformedTimestamp as exc:
        raise BadQuery(f"query parameter {exc}") from None
    except StaleTimestamp as exc:
        raise StaleCallback(f"query parameter {exc}") from None


def refused(channel: str, error: CallbackError) -> web.Response:
    """The 4xx answer to a refused callback, logged once; the body names the error class and
    says why in one line (what an operator sees when the platform's URL check fails)."""
    log.warning("%s: refused a callback (%d): %s", channel, error.status, error)
    return web.Response(status=error.status, text=f"{type(error).__name__}: {error}")


def require(fields: Mapping[str, str], *names: str) -> list[str]:
    """The values of ``names`` in a parsed callback; :class:`MalformedXML` if one is missing."""
    missing = [name for name in names if not fields.get(name)]
    if missing:
        raise MalformedXML(f"the callback lacks {', '.join(missing)}")
    return [fields[name] for name in names]


MAX_ID_CHARS = 128
"""Platform ids (MsgId, openid, userid) are short; a longer one is not the platform's."""


def ids(fields: Mapping[str, str], *names: str) -> list[str]:
    """Like :func:`require` for id fields, which are also refused when over MAX_ID_CHARS."""
    values = require(fields, *names)
    for name, value in zip(names, values, strict=True):
        if len(value) > MAX_ID_CHARS:
            raise MalformedXML(f"{name} of {len(value)} characters is not an id")
    return values


def reply_text(reply: Reply) -> str | None:
    """The text to send for ``reply`` in a 1:1 chat (no quote needed), or None for silence."""
    if isinstance(reply, NoReply) or not reply.text.strip():
        return None
    return reply.text


class BackgroundTasks:
    """The tasks a channel runs after acknowledging a callback, owned by its sub-application.

    Each task is referenced until it ends (no fire-and-forget); its failure is logged here, once;
    :meth:`close` cancels what is still running when the application shuts down. Answers
    (:meth:`answer`) take a slot of the process's :class:`Admission` (one of its own when none is
    given); :attr:`saturated` tells a channel that one more would only queue, so it can
    acknowledge without waiting for it.
    """

    def __init__(self, channel: str, *, admission: Admission | None = None) -> None:
        self._channel = channel
        self._tasks: set[asyncio.Task[Any]] = set()
        self.admission = admission if admission is not None else Admission()

    @property
    def answering(self) -> int:
        """How many answers run at once (shared with every channel of the admission)."""
        return self.admission.limit

    @property
    def saturated(self) -> bool:
        """True when every answer slot is taken or an answer is already waiting for one."""
        return self.admission.saturated

    def spawn(self, work: Coroutine[Any, Any, None], *, what: str) -> asyncio.Task[None]:
        """Run ``work`` in the background; ``what`` names it in the log line if it fails."""
        task = asyncio.create_task(self._guarded(work, what))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def answer(self, work: Coroutine[Any, Any, None], *, what: str) -> asyncio.Task[None]:
        """Like :meth:`spawn`, for work that computes an answer: it waits for an answer slot.
        In line from now, so :attr:`saturated` sees it at once."""
        ticket = self.admission.line_up()
        task = self.spawn(_slotted(ticket, work), what=what)
        task.add_done_callback(lambda _: ticket.abandon())  # cancelled before it first ran
        return task

    async def drain(self) -> None:
        """Wait until every task, including ones spawned meanwhile, has ended (tests, shutdown)."""
        while self._tasks:
            await asyncio.wait(set(self._tasks))

    async def close(self) -> None:
        """Cancel the running tasks and wait for them to end."""
        tasks = set(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def __len__(self) -> int:
        return len(self._tasks)

    async def _guarded(self, work: Coroutine[Any, Any, None], what: str) -> None:
        try:
            await work
        except WeComError as exc:
            log.warning("%s: %s failed: %s", self._channel, what, exc)
        except Exception:
            # The one place a background failure is reported; the platform was already answered.
            log.exception("%s: %s failed", self._channel, what)


async def _slotted(ticket: Ticket, work: Coroutine[Any, Any, None]) -> None:
    try:
        async with ticket:
            await work
    finally:
        work.close()  # never awaited when cancelled while waiting for a slot


C = TypeVar("C", bound=CallbackAccount)


@dataclass(frozen=True)
class Account(Generic[C]):
    """One configured account as its endpoint serves it."""

    config: C
    channel: str
    """``InboundMessage.channel`` of its members: the endpoint's prefix and the account's name."""
    crypto: CallbackCrypto | None
    """None only for an Official Account in plain mode."""
    creds: Credentials

    @property
    def name(self) -> str:
        return self.config.name


class CallbackEndpoint(Generic[C]):
    """The callbacks of every account of one channel; a subclass says what differs.

    Mount :meth:`application` under the channel's prefix: ``GET``/``POST /{name}`` per account.
    Subclasses set :attr:`label` and :attr:`channel_prefix` and implement :meth:`crypto`,
    :meth:`credentials` and :meth:`handle`; they may override :meth:`check_url` (a WeCom URL check
    by default), :meth:`started` / :meth:`stopping` (run inside :meth:`lifecycle`) and
    :attr:`client_options` (passed to every :class:`WeComClient`).
    """

    label: ClassVar[str]
    """The channel in log lines (``kf``, ``oa``, ``wecom_app``)."""
    channel_prefix: ClassVar[str]
    client_options: Mapping[str, Any] = {}

    def __init__(
        self,
        accounts: Sequence[C],
        *,
        api_base: str,
        admission: Admission | None = None,
        max_body_bytes: int = MAX_REQUEST_BYTES,
        tokens: TokenCache | None = None,
        wall: Callable[[], float] = time.time,
    ) -> None:
        """``wall`` is the clock signed timestamps are checked against (Unix seconds). Raises
        ``ValueError`` for an account whose crypto cannot be built (no key where one is
        needed)."""
        self.accounts = {
            a.name: Account(a, self.channel_prefix + a.name, self.crypto(a), self.credentials(a))
            for a in accounts
        }
        self._api_base = api_base
        self._max_body = max_body_bytes
        self._wall = wall
        self._tokens = tokens if tokens is not None else TokenCache()
        self.clients: dict[str, WeComClient] = {}
        self.tasks = BackgroundTasks(self.label, admission=admission)

    def crypto(self, config: C) -> CallbackCrypto | None:
        """The callback crypto of ``config``; ``ValueError`` when it lacks what it needs."""
        raise NotImplementedError

    def credentials(self, config: C) -> Credentials:
        """The API credentials of ``config``."""
        raise NotImplementedError

    async def handle(
        self, account: Account[C], query: Mapping[str, str], body: bytes
    ) -> web.Response:
        """Answer a ``POST`` whose account is known, whose query passed :meth:`check_query` and
        whose body is within the limit; raise :class:`CallbackError` to refuse it."""
        raise NotImplementedError

    def check_url(self, account: Account[C], query: Mapping[str, str]) -> str:
        """The ``GET`` URL check's answer: WeCom signs ``echostr`` with ``msg_signature`` and
        expects it decrypted."""
        names = ("msg_signature", "timestamp", "nonce", "echostr")
        signature, timestamp, nonce, echostr = query_params(query, *names)
        if account.crypto is None:
            raise BadQuery(f"{account.channel} has no EncodingAESKey to check the URL with")
        return account.crypto.verify_url(signature, timestamp, nonce, echostr)

    async def deliver(self, msg: InboundMessage, reply: Reply) -> str | None:
        """Send the answer to a message of this channel recorded earlier through the platform
        API (what the recovery loop calls, :data:`bot.inbox_recovery.Deliver`): the outcome,
        or None to try again later. Only while the sub-application runs."""
        raise NotImplementedError

    def deliverers(self) -> dict[str, Callable[[InboundMessage, Reply], Awaitable[str | None]]]:
        """:meth:`deliver` for each account's ``InboundMessage.channel``."""
        return {account.channel: self.deliver for account in self.accounts.values()}

    async def started(self) -> None:
        """Called once the API clients exist, before the first request is served."""

    async def stopping(self) -> None:
        """Called at shutdown, before the background tasks are cancelled."""

    def open(self, account: Account[C], query: Mapping[str, str], body: bytes) -> dict[str, str]:
        """The fields of an encrypted (WeCom) callback, signature and query checked."""
        query_params(query, "msg_signature", "timestamp", "nonce")
        if account.crypto is None:
            raise BadQuery(f"{account.channel} has no EncodingAESKey to decrypt with")
        return open_envelope(account.crypto, query, body)

    async def verify(self, request: web.Request) -> web.Response:
        """``GET``: the URL check the admin page runs when the callback URL is saved."""
        account = self.accounts.get(request.match_info["name"])
        if account is None:
            return web.Response(status=404, text="unknown account")
        try:
            check_fresh(request.query, self._wall())
            return web.Response(text=self.check_url(account, request.query))
        except CallbackError as exc:
            return refused(account.channel, exc)

    async def receive(self, request: web.Request) -> web.Response:
        """``POST``: a callback, checked in the module's order, then :meth:`handle`."""
        account = self.accounts.get(request.match_info["name"])
        if account is None:
            return web.Response(status=404, text="unknown account")
        try:
            check_fresh(request.query, self._wall())
            self.check_query(account, request.query)
            body = await self._read_body(request)
            response = await self.handle(account, request.query, body)
        except CallbackError as exc:
            return refused(account.channel, exc)
        except Unavailable as exc:  # not recorded: unacknowledged, the platform sends it again
            log.warning("%s: callback not acknowledged: %s", account.channel, exc)
            retry_after = {"Retry-After": str(max(1, round(exc.retry_after)))}
            return web.Response(status=503, text="unavailable", headers=retry_after)
        if isinstance(response, Tracked):  # an answer: written before it counts as delivered
            await response.written(await write_now(request, response))
        return response

    def check_query(self, account: Account[C], query: Mapping[str, str]) -> None:
        """What can be checked of a ``POST`` before its body is read: the signed query
        parameters are present (an encrypted callback's by default). A request that fails here
        costs no body read."""
        query_params(query, "msg_signature", "timestamp", "nonce")

    async def _read_body(self, request: web.Request) -> bytes:
        try:
            return await limits.read_body(request, self._max_body)
        except limits.BodyTooLarge as exc:
            raise BodyTooLarge(str(exc)) from None

    async def lifecycle(self, _app: web.Application) -> AsyncIterator[None]:
        """``cleanup_ctx``: one HTTP session and an API client per account while the app runs."""
        async with aiohttp.ClientSession() as session:
            self.clients = {
                name: self._client(session, a.creds) for name, a in self.accounts.items()
            }
            try:
                await self.started()
                yield
            finally:
                await self.stopping()
                await self.tasks.close()
                self.clients = {}

    def _client(self, session: aiohttp.ClientSession, creds: Credentials) -> WeComClient:
        options = dict(self.client_options)
        return WeComClient(session, creds, base_url=self._api_base, tokens=self._tokens, **options)

    def application(self) -> web.Application:
        """The sub-application: ``GET``/``POST /{name}`` and the lifecycle. A channel's factory
        also stores the endpoint under its own typed key (tests and benchmarks reach it)."""
        app = web.Application()
        app.router.add_get("/{name}", self.verify)
        app.router.add_post("/{name}", self.receive)
        app.cleanup_ctx.append(self.lifecycle)
        return app
