"""A fake WeCom + Official Account API on 127.0.0.1 for tests.

Use the ``wecom_server`` fixture (import it into a conftest). One base URL serves both the WeCom
(``qyapi``) and the Official Account (``api.weixin``) paths; point clients at ``server.url``.

The fake's time is ``server.clock`` (a :class:`ManualClock`, epoch seconds), which only moves when
a test calls ``server.clock.advance(s)``: tokens expire by it, the 48-hour windows and the robot's
per-minute limit are measured by it. A test may hand the same clock to the client under test.

Credentials: WeCom corp ``server.corp_id`` / ``server.corp_secret``; Official Account
``server.oa_app_id`` / ``server.oa_secret``. Tokens live 7200 s; an expired token gets 42001, an
unknown one 40014.

Endpoints and the rules they enforce (errcodes as the fake uses them):

- GET ``/cgi-bin/gettoken`` (WeCom), ``/cgi-bin/token`` (OA): 40013 wrong id, 40001 wrong secret.
- POST ``/cgi-bin/kf/sync_msg``: pages of ``add_kf_message`` messages per ``open_kfid``, after the
  opaque ``cursor``; ``has_more`` 1/0, ``next_cursor``. The callback ``token`` must be
  ``server.kf_callback_token`` (95007 otherwise); limit 1..1000 (40058 otherwise). A call without
  ``token`` is allowed, as WeCom's is, but strictly rate-limited: at most
  ``server.kf_tokenless_per_minute`` per open_kfid in any 60 s (45009 beyond); the accepted ones
  are counted in ``server.kf_tokenless_syncs`` (per open_kfid).
- POST ``/cgi-bin/kf/send_msg``, checked in this order:
  a ``msgid`` already accepted → success again, not delivered twice;
  session state 2 or 3 (human queue / agent) → 95018;
  no customer message (origin 3) within 48 h → 95001;
  5 replies already sent since the customer's last message → 95002.
  Accepted sends are in ``server.kf_sent``.
- POST ``/cgi-bin/kf/send_msg_on_event``: the ``code`` from ``issue_event_code`` works once
  (95016 otherwise). Accepted sends are in ``server.event_sent``.
- POST ``/cgi-bin/kf/service_state/get`` and ``/trans`` over ``server.service_states``.
- POST ``/cgi-bin/message/send`` (WeCom app): recorded in ``server.app_sent``.
- POST ``/cgi-bin/webhook/send?key=``: at most 20 accepted per key in any 60 s (45009 beyond);
  text over 2048 / markdown over 4096 bytes → 40058. Accepted posts (with the clock time) are in
  ``server.robot_sent``. No access token.
- POST ``/cgi-bin/externalcontact/add_msg_template``: a staff member's mass-message task; ``sender``
  and a non-empty ``external_userid`` list required (40058 otherwise). Accepted tasks are in
  ``server.templates_sent``.
- POST ``/cgi-bin/message/custom/send`` (OA): 45015 when the user (``add_oa_message``) has not
  written within 48 h, 45047 after 5 replies since. Accepted sends in ``server.custom_sent``.

Injectable faults, each used by the next request(s) to that path, before any other rule:
``fail_next(api, errcode, times=1)``, ``http_status(api, 500, times=1)``,
``not_json(api, times=1)``, ``delay(api, seconds, times=1)``. Every request is recorded in
``server.requests`` (api, params, json); ``server.count(api)`` counts them.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import time
from collections import Counter, defaultdict, deque
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiohttp import web

TOKEN_TTL_S = 7200
WINDOW_S = 48 * 3600
REPLIES_PER_MESSAGE = 5
ROBOT_PER_MINUTE = 20
START_TIME = 1_772_000_000.0

JSON = dict[str, Any]
Handler = Callable[[web.Request, JSON], Awaitable[JSON]]


@dataclass
class ManualClock:
    """Epoch seconds that move only when told to."""

    now: float = START_TIME

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@dataclass(frozen=True)
class Recorded:
    """One request the fake received."""

    api: str
    params: dict[str, str]
    json: Any


@dataclass(frozen=True)
class _Fault:
    errcode: int | None = None
    status: int | None = None
    not_json: bool = False
    delay: float = 0.0


def _ok(**fields: Any) -> JSON:
    return {"errcode": 0, "errmsg": "ok", **fields}


def _err(errcode: int, errmsg: str) -> JSON:
    return {"errcode": errcode, "errmsg": errmsg}


@dataclass
class FakePlatform:
    """The fake's state, scripts and recordings; ``url`` is set once it listens."""

    url: str = ""
    clock: ManualClock = field(default_factory=ManualClock)
    corp_id: str = "wwfakecorp"
    corp_secret: str = "corp-secret"
    oa_app_id: str = "wxfakeoa"
    oa_secret: str = "oa-secret"
    kf_callback_token: str = "kf-callback-token"
    kf_tokenless_per_minute: int = 10
    kf_tokenless_syncs: Counter[str] = field(default_factory=Counter)
    requests: list[Recorded] = field(default_factory=list)
    tokens: dict[str, float] = field(default_factory=dict)
    kf_messages: dict[str, list[JSON]] = field(default_factory=lambda: defaultdict(list))
    kf_sent: list[JSON] = field(default_factory=list)
    event_sent: list[JSON] = field(default_factory=list)
    app_sent: list[JSON] = field(default_factory=list)
    custom_sent: list[JSON] = field(default_factory=list)
    custom_sent_at: list[float] = field(default_factory=list)
    """``time.monotonic()`` when each of ``custom_sent`` was accepted."""
    templates_sent: list[JSON] = field(default_factory=list)
    robot_sent: list[tuple[float, JSON]] = field(default_factory=list)
    service_states: dict[tuple[str, str], int] = field(default_factory=dict)
    _windows: dict[tuple[str, str], list[float]] = field(default_factory=dict)
    _kf_msgids: set[str] = field(default_factory=set)
    _kf_tokenless_at: list[tuple[float, str]] = field(default_factory=list)
    _event_codes: set[str] = field(default_factory=set)
    _faults: dict[str, deque[_Fault]] = field(default_factory=lambda: defaultdict(deque))
    _ids: itertools.count[int] = field(default_factory=itertools.count)
    _closing: asyncio.Event = field(default_factory=asyncio.Event)

    # Scripting.

    def fail_next(self, api: str, errcode: int, *, times: int = 1) -> None:
        """Answer the next ``times`` requests to ``api`` with ``errcode``."""
        self._faults[api].extend(_Fault(errcode=errcode) for _ in range(times))

    def http_status(self, api: str, status: int = 500, *, times: int = 1) -> None:
        """Answer the next ``times`` requests to ``api`` with an HTTP error status."""
        self._faults[api].extend(_Fault(status=status) for _ in range(times))

    def not_json(self, api: str, *, times: int = 1) -> None:
        """Answer the next ``times`` requests to ``api`` with a 200 that is not JSON."""
        self._faults[api].extend(_Fault(not_json=True) for _ in range(times))

    def delay(self, api: str, seconds: float, *, times: int = 1) -> None:
        """Answer the next ``times`` requests to ``api`` only after ``seconds`` (real time)."""
        self._faults[api].extend(_Fault(delay=seconds) for _ in range(times))

    def add_kf_message(
        self, external_userid: str, content: str, *, open_kfid: str = "wkfake", origin: int = 3
    ) -> JSON:
        """Append a kf message (origin 3 = the customer; it opens a 48 h / 5 reply window)."""
        msg: JSON = {
            "msgid": f"kfmsg{next(self._ids)}",
            "open_kfid": open_kfid,
            "external_userid": external_userid,
            "send_time": int(self.clock()),
            "origin": origin,
            "msgtype": "text",
            "text": {"content": content},
        }
        self.kf_messages[open_kfid].append(msg)
        if origin == 3:
            self._windows[("kf:" + open_kfid, external_userid)] = [self.clock()]
        return msg

    def add_oa_message(self, openid: str) -> None:
        """The OA user ``openid`` writes now: a 48 h / 5 reply window opens."""
        self._windows[("oa", openid)] = [self.clock()]

    def issue_event_code(self) -> str:
        """A one-time ``code`` as an ``enter_session`` event carries it."""
        code = f"code{next(self._ids)}"
        self._event_codes.add(code)
        return code

    def count(self, api: str) -> int:
        """How many requests ``api`` received."""
        return sum(1 for r in self.requests if r.api == api)

    # The HTTP side.

    def app(self) -> web.Application:
        """The aiohttp application serving every endpoint."""
        app = web.Application()
        routes: dict[str, Handler] = {
            "/cgi-bin/gettoken": self._gettoken,
            "/cgi-bin/token": self._oa_token,
            "/cgi-bin/kf/sync_msg": self._kf_sync_msg,
            "/cgi-bin/kf/send_msg": self._kf_send_msg,
            "/cgi-bin/kf/send_msg_on_event": self._kf_send_on_event,
            "/cgi-bin/kf/service_state/get": self._kf_state_get,
            "/cgi-bin/kf/service_state/trans": self._kf_state_trans,
            "/cgi-bin/message/send": self._message_send,
            "/cgi-bin/webhook/send": self._webhook_send,
            "/cgi-bin/message/custom/send": self._custom_send,
            "/cgi-bin/externalcontact/add_msg_template": self._add_msg_template,
        }
        for path, handler in routes.items():
            app.router.add_route("*", path, self._endpoint(path, handler))
        return app

    def _endpoint(self, api: str, handler: Handler) -> Callable[[web.Request], Awaitable[Any]]:
        async def endpoint(request: web.Request) -> web.StreamResponse:
            raw = await request.read()
            try:
                body = json.loads(raw) if raw else {}
            except ValueError:
                return web.json_response(_err(47001, "data format error"))
            self.requests.append(Recorded(api, dict(request.query), body))
            faulted = await self._fault(api)
            if faulted is not None:
                return faulted
            if not isinstance(body, dict):
                return web.json_response(_err(47001, "data format error"))
            return web.json_response(await handler(request, body), dumps=_dumps)

        return endpoint

    async def _fault(self, api: str) -> web.StreamResponse | None:
        if not self._faults[api]:
            return None
        fault = self._faults[api].popleft()
        if fault.delay:
            # Wakes early when the server closes, so teardown never waits for the delay.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._closing.wait(), fault.delay)
            return None
        if fault.status is not None:
            return web.Response(status=fault.status, text="<html>server error</html>")
        if fault.not_json:
            return web.Response(text="<html>not json</html>", content_type="text/html")
        return web.json_response(_err(fault.errcode or -1, "injected fault"))

    def _auth(self, request: web.Request) -> JSON | None:
        """None when the access token is valid, else the error answer."""
        expires = self.tokens.get(request.query.get("access_token", ""))
        if expires is None:
            return _err(40014, "invalid access_token")
        if self.clock() >= expires:
            return _err(42001, "access_token expired")
        return None

    def _issue_token(self) -> JSON:
        token = f"token{next(self._ids)}"
        self.tokens[token] = self.clock() + TOKEN_TTL_S
        return _ok(access_token=token, expires_in=TOKEN_TTL_S)

    async def _gettoken(self, request: web.Request, _body: JSON) -> JSON:
        if request.query.get("corpid") != self.corp_id:
            return _err(40013, "invalid corpid")
        if request.query.get("corpsecret") != self.corp_secret:
            return _err(40001, "invalid credential")
        return self._issue_token()

    async def _oa_token(self, request: web.Request, _body: JSON) -> JSON:
        query = request.query
        if query.get("grant_type") != "client_credential" or query.get("appid") != self.oa_app_id:
            return _err(40013, "invalid appid")
        if query.get("secret") != self.oa_secret:
            return _err(40001, "invalid credential")
        answer = self._issue_token()
        del answer["errcode"], answer["errmsg"]  # the OA answers success without errcode
        return answer

    async def _kf_sync_msg(self, request: web.Request, body: JSON) -> JSON:
        if (denied := self._auth(request)) is not None:
            return denied
        if (refused := self._kf_sync_token(body)) is not None:
            return refused
        limit = body.get("limit", 1000)
        if not isinstance(limit, int) or not 1 <= limit <= 1000:
            return _err(40058, "invalid limit")
        messages = self.kf_messages[str(body.get("open_kfid", ""))]
        start = _cursor_position(body.get("cursor"))
        if start is None or start > len(messages):
            return _err(95012, "invalid cursor")
        end = min(start + limit, len(messages))
        more = 1 if end < len(messages) else 0
        return _ok(next_cursor=f"cur{end}", has_more=more, msg_list=messages[start:end])

    def _kf_sync_token(self, body: JSON) -> JSON | None:
        """None when the call's token is the callback's, or it has none within the rate limit."""
        if "token" in body:
            ok = body["token"] == self.kf_callback_token
            return None if ok else _err(95007, "invalid msg token")
        kfid, now = str(body.get("open_kfid", "")), self.clock()
        recent = [t for t, k in self._kf_tokenless_at if k == kfid and t > now - 60]
        if len(recent) >= self.kf_tokenless_per_minute:
            return _err(45009, "api freq out of limit")
        self._kf_tokenless_at.append((now, kfid))
        self.kf_tokenless_syncs[kfid] += 1
        return None

    async def _kf_send_msg(self, request: web.Request, body: JSON) -> JSON:
        if (denied := self._auth(request)) is not None:
            return denied
        msgid = body.get("msgid")
        if isinstance(msgid, str) and msgid in self._kf_msgids:
            return _ok(msgid=msgid)
        kfid, user = str(body.get("open_kfid", "")), str(body.get("touser", ""))
        if self.service_states.get((kfid, user), 0) in (2, 3):
            return _err(95018, "session state not allowed to send")
        refused = self._use_window(("kf:" + kfid, user), closed=95001, used_up=95002)
        if refused is not None:
            return refused
        msgid = msgid if isinstance(msgid, str) else f"sent{next(self._ids)}"
        self._kf_msgids.add(msgid)
        self.kf_sent.append({**body, "msgid": msgid})
        return _ok(msgid=msgid)

    def _use_window(self, key: tuple[str, str], *, closed: int, used_up: int) -> JSON | None:
        """Count one reply in the member's window, or the error when none is allowed."""
        window = self._windows.get(key)
        if window is None or self.clock() - window[0] > WINDOW_S:
            return _err(closed, "no customer message within 48 hours")
        if len(window) > REPLIES_PER_MESSAGE:
            return _err(used_up, "reply count exceeds the limit")
        window.append(self.clock())
        return None

    async def _kf_send_on_event(self, request: web.Request, body: JSON) -> JSON:
        if (denied := self._auth(request)) is not None:
            return denied
        code = body.get("code")
        if code not in self._event_codes:
            return _err(95016, "invalid or used code")
        self._event_codes.discard(code)
        self.event_sent.append(body)
        return _ok(msgid=f"event{next(self._ids)}")

    async def _kf_state_get(self, request: web.Request, body: JSON) -> JSON:
        if (denied := self._auth(request)) is not None:
            return denied
        key = (str(body.get("open_kfid", "")), str(body.get("external_userid", "")))
        return _ok(service_state=self.service_states.get(key, 0), servicer_userid="")

    async def _kf_state_trans(self, request: web.Request, body: JSON) -> JSON:
        if (denied := self._auth(request)) is not None:
            return denied
        state = body.get("service_state")
        if not isinstance(state, int) or not 0 <= state <= 4:
            return _err(95014, "invalid service_state")
        key = (str(body.get("open_kfid", "")), str(body.get("external_userid", "")))
        self.service_states[key] = state
        return _ok(msg_code="")

    async def _message_send(self, request: web.Request, body: JSON) -> JSON:
        if (denied := self._auth(request)) is not None:
            return denied
        self.app_sent.append(body)
        return _ok(msgid=f"app{next(self._ids)}", invaliduser="")

    async def _webhook_send(self, request: web.Request, body: JSON) -> JSON:
        key = request.query.get("key", "")
        if not key:
            return _err(93000, "invalid webhook url")
        now = self.clock()
        recent = [t for t, sent in self.robot_sent if sent["key"] == key and t > now - 60]
        if len(recent) >= ROBOT_PER_MINUTE:
            return _err(45009, "api freq out of limit")
        kind = body.get("msgtype")
        content = str(body.get(kind, {}).get("content", "")) if kind in ("text", "markdown") else ""
        limit = 2048 if kind == "text" else 4096
        if not content or len(content.encode()) > limit:
            return _err(40058, "content exceed max length or empty")
        self.robot_sent.append((now, {"key": key, **body}))
        return _ok()

    async def _custom_send(self, request: web.Request, body: JSON) -> JSON:
        if (denied := self._auth(request)) is not None:
            return denied
        refused = self._use_window(("oa", str(body.get("touser", ""))), closed=45015, used_up=45047)
        if refused is not None:
            return refused
        self.custom_sent.append(body)
        self.custom_sent_at.append(time.monotonic())
        return _ok()

    async def _add_msg_template(self, request: web.Request, body: JSON) -> JSON:
        if (denied := self._auth(request)) is not None:
            return denied
        users = body.get("external_userid")
        if not body.get("sender") or not isinstance(users, list) or not users:
            return _err(40058, "invalid sender or external_userid")
        self.templates_sent.append(body)
        return _ok(msgid=f"tmpl{next(self._ids)}", fail_list=[])


def _cursor_position(cursor: Any) -> int | None:
    if cursor in (None, ""):
        return 0
    if isinstance(cursor, str) and cursor.startswith("cur") and cursor[3:].isdigit():
        return int(cursor[3:])
    return None


def _dumps(data: Any) -> str:
    text = json.dumps(data, ensure_ascii=False)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate goes out as a JSON escape, as JSON allows
        return json.dumps(data)
    return text


@pytest.fixture
async def wecom_server() -> AsyncIterator[FakePlatform]:
    """A running fake WeCom + Official Account API; closed after the test."""
    fake = FakePlatform()
    runner = web.AppRunner(fake.app())
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    fake.url = f"http://127.0.0.1:{runner.addresses[0][1]}"
    try:
        yield fake
    finally:
        fake._closing.set()
        await runner.cleanup()
