"""The outbound WeCom / Official Account API client and its access-token cache.

The send-only group robot is in :mod:`adapters.wecom.robot`.

Retry policy of :meth:`WeComClient.call` (DESIGN.md §3), one place for every API:

=====================  =============================================================
TokenExpiredError      drop the stale token, fetch a new one, retry once
RateLimitedError       back off ``backoff * 2**(n-1)`` seconds, up to ``max_attempts``
SystemBusyError (-1)   back off likewise, at most 3 attempts in total
TransportError         back off likewise, up to ``max_attempts`` (timeouts, 5xx, non-JSON)
anything else          raised at once (WindowClosedError is never retried)
=====================  =============================================================

Every :meth:`WeComClient.call` ends within ``deadline`` (:data:`CALL_DEADLINE_S`, 15 s), token
fetch, retries and back-off included: a back-off that would end past it is not waited, each
request gets at most the time left, and running out is a :class:`TransportError` (the request may
have arrived). Transport failures feed the client's circuit breaker (:mod:`bot.deadline`): after
3 in a row, calls raise :class:`PlatformUnavailable` at once without a request, until a probe
after 30 s gets an answer (any answer with an errcode counts: the platform is up). The delivery
worker retries those rows later, like any transport failure.

A send retried after a timeout could reach the platform twice. kf ``send_msg`` is idempotent
through the caller-supplied ``msgid``; the sends without such an id (``message/send``,
``custom/send``, ``add_msg_template``, robots) are retried only when the request never left
(connection refused), never after an answer that may have come too late.

The access token travels in the query string and is never put in an error message.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import aiohttp

from adapters.wecom.errors import (
    APIError,
    BadRequestError,
    PlatformUnavailable,
    RateLimitedError,
    SystemBusyError,
    TokenExpiredError,
    TransportError,
    api_error,
)
from adapters.wecom.limits import TEXT_MAX_BYTES
from bot.deadline import CircuitBreaker, retry_delay, time_left, within
from bot.text import utf8_len

WECOM_BASE_URL = "https://qyapi.weixin.qq.com"
OA_BASE_URL = "https://api.weixin.qq.com"
TOKEN_REFRESH_MARGIN_S = 300.0
BUSY_MAX_ATTEMPTS = 3
CALL_DEADLINE_S = 15.0
"""The most one API call (token, retries and back-off included) may take."""
KF_SYNC_MAX_LIMIT = 1000
_MSGID = re.compile(r"[0-9A-Za-z_-]{1,32}")

Clock = Callable[[], float]
Sleep = Callable[[float], Awaitable[None]]
JSON = dict[str, Any]


@dataclass(frozen=True)
class Credentials:
    """Who the client is: a WeCom corp (``gettoken``) or an Official Account (``token``)."""

    kind: Literal["wecom", "oa"]
    app_id: str
    """The corp id (WeCom) or the Official Account's app id."""
    secret: str

    def __repr__(self) -> str:  # the secret must never reach a log line
        return f"Credentials(kind={self.kind!r}, app_id={self.app_id!r}, secret='***')"


@dataclass
class _Token:
    value: str
    refresh_at: float


class TokenCache:
    """Access tokens per (kind, app id, secret), shared by every client of the process.

    A token is refreshed ahead of its expiry (``expires_in`` - 300 s), under one lock per key so
    that concurrent callers share one fetch.
    """

    def __init__(self, *, clock: Clock = time.monotonic) -> None:
        self._clock = clock
        self._tokens: dict[Credentials, _Token] = {}
        self._locks: dict[Credentials, asyncio.Lock] = {}

    async def get(
        self, creds: Credentials, fetch: Callable[[], Awaitable[tuple[str, float]]]
    ) -> str:
        """The cached token for ``creds``, or a new one: ``fetch()`` gives (token, expires_in)."""
        token = self._valid(creds)
        if token is not None:
            return token
        async with self._locks.setdefault(creds, asyncio.Lock()):
            token = self._valid(creds)  # another caller may have fetched it while we waited
            if token is not None:
                return token
            value, expires_in = await fetch()
            ahead = max(expires_in - TOKEN_REFRESH_MARGIN_S, expires_in / 2)
            self._tokens[creds] = _Token(value, self._clock() + ahead)
            return value

    def invalidate(self, creds: Credentials, stale_token: str) -> None:
        """Forget the token, unless another caller has already replaced the stale one."""
        cached = self._tokens.get(creds)
        if cached is not None and cached.value == stale_token:
            del self._tokens[creds]

    def _valid(self, creds: Credentials) -> str | None:
        cached = self._tokens.get(creds)
        if cached is None or self._clock() >= cached.refresh_at:
            return None
        return cached.value


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how long to retry the retryable errors (see the module docstring)."""

    max_attempts: int = 3
    backoff: float = 0.5

    def attempts_for(self, error: Exception) -> int:
        """How many attempts in total ``error`` allows; 1 means it is not retried."""
        if isinstance(error, SystemBusyError):
            return min(self.max_attempts, BUSY_MAX_ATTEMPTS)
        if isinstance(error, RateLimitedError | TransportError):
            return self.max_attempts
        return 1

    async def run(
        self, attempt: Callable[[], Awaitable[JSON]], sleep: Sleep, *, idempotent: bool = True
    ) -> JSON:
        """Run ``attempt`` until it succeeds or raises an error with no attempts left.

        A request that is not ``idempotent`` (a send with no caller id) is not repeated after a
        transport error that may have reached the platform: a second copy would be delivered."""
        done = 0
        while True:
            done += 1
            try:
                return await attempt()
            except (RateLimitedError, SystemBusyError, TransportError) as error:
                if done >= self.attempts_for(error):
                    raise
                if not idempotent and isinstance(error, TransportError) and error.maybe_delivered:
                    raise
                delay = retry_delay(self.backoff * 2 ** (done - 1), time_left())
                if delay is None:  # the back-off would end past the call's deadline
                    raise
            await sleep(delay)


async def request_json(
    session: aiohttp.ClientSession,
    method: str,
    url: str,
    *,
    api: str,
    params: Mapping[str, str],
    payload: JSON | None,
    seconds: float,
) -> JSON:
    """One HTTP exchange: the JSON answer, or a typed error for errcode != 0 or no usable answer."""
    body = None if payload is None else json.dumps(payload, ensure_ascii=False).encode()
    headers = {"Content-Type": "application/json; charset=utf-8"} if body is not None else {}
    try:
        async with session.request(
            method,
            url,
            params=dict(params),
            data=body,
            headers=headers,
            timeout=aiohttp.ClientTimeout(total=seconds),
        ) as response:
            status, raw = response.status, await response.read()
    except TimeoutError:
        raise TransportError(f"no answer within {seconds} s", api=api) from None
    except aiohttp.ClientConnectorError as exc:  # no connection: nothing was sent
        message = _redact(f"{type(exc).__name__}: {exc}", params)
        raise TransportError(message, api=api, maybe_delivered=False) from None
    except aiohttp.ClientError as exc:
        message = _redact(f"{type(exc).__name__}: {exc}", params)
        raise TransportError(message, api=api) from None
    return _decode(status, raw, api=api)


def _decode(status: int, raw: bytes, *, api: str) -> JSON:
    if status != 200:
        raise TransportError(f"HTTP {status}", api=api)
    try:
        data = json.loads(raw)
    except ValueError:
        raise TransportError("the answer is not JSON", api=api) from None
    if not isinstance(data, dict):
        raise TransportError("the answer is not a JSON object", api=api)
    errcode = data.get("errcode", 0)
    if errcode != 0:
        code = errcode if isinstance(errcode, int) else -2
        raise api_error(code, str(data.get("errmsg", "")), api=api)
    return data


_SECRET_PARAMS = ("access_token", "corpsecret", "secret", "key")


def _redact(text: str, params: Mapping[str, str]) -> str:
    for name in _SECRET_PARAMS:
        secret = params.get(name)
        if secret:
            text = text.replace(secret, "***")
    return text


def check_text(content: str, max_bytes: int = TEXT_MAX_BYTES) -> None:
    """Refuse blank text or text over the platform's byte limit (split it first)."""
    if not content.strip():
        raise BadRequestError("the message text is empty")
    if utf8_len(content) > max_bytes:
        raise BadRequestError(f"the message is {utf8_len(content)} bytes, over {max_bytes}")


class WeComClient:
    """Calls the WeCom (``qyapi``) or Official Account (``api.weixin``) API with one credential."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        creds: Credentials,
        *,
        base_url: str | None = None,
        tokens: TokenCache | None = None,
        timeout: float = 10.0,
        max_attempts: int = 3,
        backoff: float = 0.5,
        clock: Clock = time.monotonic,
        sleep: Sleep = asyncio.sleep,
        deadline: float = CALL_DEADLINE_S,
        breaker: CircuitBreaker | None = None,
    ) -> None:
        """``timeout`` bounds one request, ``deadline`` one call (module docstring);
        ``breaker`` defaults to one of the client's own, on ``clock``."""
        if max_attempts < 1 or timeout <= 0 or deadline <= 0:
            raise ValueError("max_attempts must be at least 1, timeout and deadline positive")
        default = WECOM_BASE_URL if creds.kind == "wecom" else OA_BASE_URL
        self._session = session
        self._creds = creds
        self._base_url = (base_url or default).rstrip("/")
        self._deadline = deadline
        self.breaker = breaker or CircuitBreaker(f"the API at {self._base_url}", clock=clock)
        self._tokens = tokens if tokens is not None else TokenCache(clock=clock)
        self._timeout = timeout
        self._retry = RetryPolicy(max_attempts, backoff)
        self._sleep = sleep

    async def call(
        self,
        api: str,
        payload: JSON | None = None,
        *,
        method: str = "POST",
        params: Mapping[str, str] | None = None,
        idempotent: bool = True,
    ) -> JSON:
        """Call ``api`` (a path like ``/cgi-bin/kf/send_msg``) with the access token added,
        within the call's deadline and behind the breaker (module docstring).

        ``idempotent=False`` for sends the platform cannot recognise when repeated (no caller
        id): they are not retried after a transport error that may have reached it."""
        if not self.breaker.allow():
            raise PlatformUnavailable(api=api)
        try:
            async with within(self._deadline):
                answer = await self._call(api, payload, method, params, idempotent)
        except TimeoutError:
            self.breaker.failed()
            raise TransportError(f"no answer within {self._deadline} s", api=api) from None
        except TransportError:
            self.breaker.failed()
            raise
        except APIError:
            self.breaker.succeeded()  # an errcode: the platform answered
            raise
        self.breaker.succeeded()
        return answer

    async def _call(
        self,
        api: str,
        payload: JSON | None,
        method: str,
        params: Mapping[str, str] | None,
        idempotent: bool,
    ) -> JSON:
        async def attempt() -> JSON:
            token = await self._tokens.get(self._creds, self._fetch_token)
            query = {**(params or {}), "access_token": token}
            try:
                return await self._request(method, api, query, payload)
            except TokenExpiredError:
                self._tokens.invalidate(self._creds, token)
                raise

        try:
            return await self._retry.run(attempt, self._sleep, idempotent=idempotent)
        except TokenExpiredError:  # once more, with a fresh token (the platform refused it)
            return await self._retry.run(attempt, self._sleep, idempotent=idempotent)

    async def _fetch_token(self) -> tuple[str, float]:
        if self._creds.kind == "wecom":
            api = "/cgi-bin/gettoken"
            query = {"corpid": self._creds.app_id, "corpsecret": self._creds.secret}
        else:
            api = "/cgi-bin/token"
            query = {
                "grant_type": "client_credential",
                "appid": self._creds.app_id,
                "secret": self._creds.secret,
            }
        try:  # no retry loop here: the caller's attempt covers the fetch
            data = await self._request("GET", api, query, None)
        except TokenExpiredError as exc:  # here 40001 means a wrong secret: refetching won't help
            raise APIError(exc.errcode, exc.errmsg, api=api) from None
        token, expires_in = data.get("access_token"), data.get("expires_in")
        if not isinstance(token, str) or not token or not isinstance(expires_in, int | float):
            raise TransportError("the token answer has no access_token / expires_in", api=api)
        return token, float(expires_in)

    async def _request(
        self, method: str, api: str, query: Mapping[str, str], payload: JSON | None
    ) -> JSON:
        return await request_json(
            self._session,
            method,
            self._base_url + api,
            api=api,
            params=query,
            payload=payload,
            seconds=max(min(self._timeout, time_left()), 0.001),  # aiohttp reads 0 as "none"
        )

    # Thin typed helpers used by the channels.

    async def kf_sync_msg(
        self, *, token: str | None, open_kfid: str, cursor: str | None,
        limit: int = KF_SYNC_MAX_LIMIT,
    ) -> JSON:  # fmt: skip
        """One page of kf messages after ``cursor``: ``next_cursor``, ``has_more``, ``msg_list``.
        Without ``token`` (a callback's) the call is allowed but strictly rate-limited."""
        if not 1 <= limit <= KF_SYNC_MAX_LIMIT:
            raise BadRequestError(f"limit must be 1..{KF_SYNC_MAX_LIMIT}, got {limit}")
        payload: JSON = {"open_kfid": open_kfid, "limit": limit}
        if token:
            payload["token"] = token
        if cursor:
            payload["cursor"] = cursor
        return await self.call("/cgi-bin/kf/sync_msg", payload)

    async def kf_send_text(
        self, *, touser: str, open_kfid: str, content: str, msgid: str | None = None
    ) -> JSON:
        """Send a text to a kf customer; a repeated ``msgid`` is not delivered twice."""
        check_text(content)
        payload: JSON = {
            "touser": touser,
            "open_kfid": open_kfid,
            "msgtype": "text",
            "text": {"content": content},
        }
        if msgid is not None:
            if not _MSGID.fullmatch(msgid):
                raise BadRequestError(f"msgid must be 1-32 of [0-9A-Za-z_-], got {msgid!r}")
            payload["msgid"] = msgid
        return await self.call("/cgi-bin/kf/send_msg", payload)

    async def kf_send_msg_on_event(self, *, code: str, content: str) -> JSON:
        """Answer an event (a welcome on ``enter_session``) with the event's one-time ``code``."""
        check_text(content)
        payload = {"code": code, "msgtype": "text", "text": {"content": content}}
        return await self.call("/cgi-bin/kf/send_msg_on_event", payload)

    async def kf_service_state_get(self, *, open_kfid: str, external_userid: str) -> int:
        """The customer's session state: 0 new, 1 bot, 2 human queue, 3 human agent, 4 ended."""
        payload = {"open_kfid": open_kfid, "external_userid": external_userid}
        data = await self.call("/cgi-bin/kf/service_state/get", payload)
        state = data.get("service_state")
        if not isinstance(state, int):
            raise TransportError("the answer has no service_state", api="kf/service_state/get")
        return state

    async def kf_service_state_trans(
        self,
        *,
        open_kfid: str,
        external_userid: str,
        service_state: int,
        servicer_userid: str | None = None,
    ) -> JSON:
        """Move the customer's session, e.g. to 2 (the human queue) on handoff."""
        if not 0 <= service_state <= 4:
            raise BadRequestError(f"service_state must be 0..4, got {service_state}")
        payload: JSON = {
            "open_kfid": open_kfid,
            "external_userid": external_userid,
            "service_state": service_state,
        }
        if servicer_userid is not None:
            payload["servicer_userid"] = servicer_userid
        return await self.call("/cgi-bin/kf/service_state/trans", payload)

    async def message_send_text(self, *, agentid: int, touser: str, content: str) -> JSON:
        """Send a text to a staff member through a WeCom self-built app."""
        check_text(content)
        payload = {
            "touser": touser,
            "msgtype": "text",
            "agentid": agentid,
            "text": {"content": content},
        }
        return await self.call("/cgi-bin/message/send", payload, idempotent=False)

    async def add_msg_template(
        self, *, sender: str, external_userids: Sequence[str], content: str
    ) -> JSON:
        """Create a mass-message task (``add_msg_template``) from staff member ``sender`` to
        their customers; it reaches them once the staff member confirms it in WeCom."""
        check_text(content)
        if not external_userids:
            raise BadRequestError("add_msg_template needs at least one external_userid")
        payload = {
            "chat_type": "single",
            "sender": sender,
            "external_userid": list(external_userids),
            "text": {"content": content},
        }
        return await self.call(
            "/cgi-bin/externalcontact/add_msg_template", payload, idempotent=False
        )

    async def custom_send_text(self, *, touser: str, content: str) -> JSON:
        """Send an Official Account customer-service text (within 48 h of the user's message)."""
        check_text(content)
        payload = {"touser": touser, "msgtype": "text", "text": {"content": content}}
        return await self.call("/cgi-bin/message/custom/send", payload, idempotent=False)
