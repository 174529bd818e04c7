"""The web chat's HTTP side: the page, the WebSocket, ``/healthz``, ``/readyz``, and running it.

Routes::

    GET /          the chat page (Chinese UI, no external assets: works offline)
    GET /static/*  its script and style sheet
    GET /ws        the chat WebSocket (JSON frames, see :mod:`adapters.web.protocol`)
    GET /api/stores  {"stores": [{"id": str, "name": str}]}: the store menu, read on each request
    GET /healthz   {"status": "ok"}: liveness, nothing but the event loop answering
    GET /readyz    200 {"status": "ready", "checks": {...}} or 503 {"status": "not ready",
                   "failing": [...], "checks": {...}}: the core's checks (:mod:`bot.readiness`:
                   database, knowledge, inbox lag), or ``draining`` once the server stops

Stopping (:func:`serve` given a ``stop`` event, which ``siyu serve`` sets on SIGTERM / SIGINT):
the server drains (:mod:`adapters.web.drain`: new work refused with 503, in-flight work given up
to ``SIYU_WEB_DRAIN_SECONDS``), then the runner cancels what is left within
:data:`SHUTDOWN_TIMEOUT_S` and closes.

The page's suggested questions (chips) are rendered into it once, at start-up. A port that cannot
be bound is a :class:`CannotListen` naming host and port, never an ``OSError`` traceback.

:func:`start_web` serves an application with every limit of the server, whatever is mounted on it
(``siyu serve`` mounts the webhook and the WeCom callbacks here): the idle / header-read timeout
and the connection cap (:mod:`adapters.web.connections`), body size and body time
(:mod:`adapters.limits`). Members' messages take a slot of the process's
:class:`~adapters.admission.Admission` (a ``busy`` frame when there is none).
"""

from __future__ import annotations

import asyncio
import errno
import html
import logging
import socket
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path

from aiohttp import WSMsgType, web
from aiohttp.http_websocket import WSCloseCode

from adapters import Clock, utc_now
from adapters.admission import Admission
from adapters.limits import Throttled, request_limits
from adapters.web.chat import Persona, WebChat
from adapters.web.config import WebSettings
from adapters.web.connections import (
    LINGER_S,
    AcceptErrorLog,
    ConnectionGuard,
    GuardedSite,
    connection_cap,
)
from adapters.web.drain import Drain
from bot.readiness import Check, Report
from bot.types import MessageHandler

logger = logging.getLogger(__name__)

STATIC_DIR = Path(__file__).parent / "static"
HEARTBEAT_S = 30.0
"""Ping idle sockets this often; a browser that misses the pong is dropped."""
SHUTDOWN_TIMEOUT_S = 1.0
"""After the drain, how long the runner waits for the handlers still running before it cancels
them (the drain already waited for them)."""

ReadyCheck = Callable[[], Awaitable[Report]]
"""The process's readiness checks (:meth:`bot.readiness.Readiness.check`)."""
StoreList = Callable[[], Sequence[tuple[str, str]]]
"""The brand's stores as (store id, display name), asked on every request (the directory may
change while the server runs)."""

CHAT = web.AppKey("siyu_web_chat", WebChat)
PAGE = web.AppKey("siyu_web_page", bytes)
MAX_WS_BYTES = web.AppKey("siyu_web_max_ws_bytes", int)
STORES: web.AppKey[StoreList] = web.AppKey("siyu_web_stores")
READY: web.AppKey[ReadyCheck] = web.AppKey("siyu_web_ready")
DRAIN = web.AppKey("siyu_web_drain", Drain)


class CannotListen(Exception):
    """The web server could not bind ``host:port``; ``reason`` says why in plain words."""

    def __init__(self, host: str, port: int, reason: str) -> None:
        super().__init__(f"cannot listen on {_url_host(host)}:{port}: {reason}")
        self.host, self.port, self.reason = host, port, reason


# The page loads only same-origin files; nothing inline, nothing from elsewhere.
_PAGE_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; connect-src 'self' ws: wss:; img-src 'self' data:; "
        "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}


def create_web_app(
    handle: MessageHandler,
    config: WebSettings,
    *,
    bot_name: str,
    brand: str,
    stores: StoreList | None = None,
    clock: Clock = utc_now,
    admission: Admission | None = None,
    ready: ReadyCheck | None = None,
) -> web.Application:
    """The web chat application, feeding every member message to ``handle``.

    ``stores`` fills the page's store menu; ``config.suggestions`` become the question chips.
    ``admission`` is the process's (one of its own from ``config`` when not given). ``ready``
    is what ``/readyz`` asks (without it, only whether the server is draining).
    """
    if admission is None:
        admission = Admission(queue=config.answer_queue, wait=config.answer_wait_seconds)
    drain = Drain(admission)
    app = web.Application(client_max_size=config.max_body_bytes, middlewares=[drain.middleware])
    app[DRAIN] = drain
    app[READY] = ready or _no_checks
    persona = Persona(bot_name=bot_name, brand=brand)
    app[CHAT] = WebChat(handle, persona, clock, admission=admission)
    app[PAGE] = render_page(bot_name=bot_name, brand=brand, suggestions=config.suggestions)
    app[MAX_WS_BYTES] = config.max_body_bytes
    app[STORES] = stores or _no_stores
    app.router.add_get("/", _index)
    app.router.add_get("/healthz", _healthz)
    app.router.add_get("/readyz", _readyz)
    app.router.add_get("/api/stores", _stores)
    app.router.add_get("/ws", _websocket)
    app.router.add_static("/static/", STATIC_DIR)
    app.on_shutdown.append(_close_sockets)
    return app


def render_page(*, bot_name: str, brand: str, suggestions: Sequence[str] = ()) -> bytes:
    """``chat.html`` with the bot's name, the brand and the question chips filled in (escaped)."""
    template = (STATIC_DIR / "chat.html").read_text(encoding="utf-8")
    chips = "".join(
        f'<button type="button" class="chip">{html.escape(q, quote=True)}</button>'
        for q in suggestions
        if q.strip()
    )
    page = template.replace("{{SUGGESTIONS}}", chips)
    page = page.replace("{{BOT_NAME}}", html.escape(bot_name, quote=True))
    return page.replace("{{BRAND}}", html.escape(brand, quote=True)).encode("utf-8")


async def _index(request: web.Request) -> web.Response:
    return web.Response(
        body=request.app[PAGE], content_type="text/html", charset="utf-8", headers=_PAGE_HEADERS
    )


async def _healthz(_request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def _readyz(request: web.Request) -> web.Response:
    if request.app[DRAIN].draining:
        report = Report((Check("draining", False, "the process is shutting down"),))
    else:
        report = await request.app[READY]()
    status = 200 if report.ready else 503
    return web.json_response(report.as_json(), status=status, headers={"Cache-Control": "no-cache"})


async def _no_checks() -> Report:
    return Report(())


def _no_stores() -> Sequence[tuple[str, str]]:
    return ()


async def _stores(request: web.Request) -> web.Response:
    stores = [{"id": sid, "name": name} for sid, name in request.app[STORES]()]
    return web.json_response({"stores": stores}, headers={"Cache-Control": "no-cache"})


async def _websocket(request: web.Request) -> web.WebSocketResponse:
    ws = web.WebSocketResponse(heartbeat=HEARTBEAT_S, max_msg_size=request.app[MAX_WS_BYTES])
    await ws.prepare(request)
    chat = request.app[CHAT]
    peer = chat.hub.connect(ws, request.transport)
    code, reason = WSCloseCode.OK, b""
    try:
        async for frame in ws:
            if frame.type is WSMsgType.TEXT:
                await chat.on_text(peer, frame.data)
            elif frame.type is WSMsgType.BINARY:
                chat.refuse(peer, "binary_frame", "只接受文本（JSON）消息")
            else:  # ERROR, e.g. a frame over max_msg_size: aiohttp has closed the socket
                logger.info("web chat socket error: %r", ws.exception())
                break
            if peer.exhausted:
                code, reason = WSCloseCode.POLICY_VIOLATION, b"too many bad frames"
                break
    finally:
        chat.leave(peer)
        await peer.close(code, reason)
    return ws


async def _close_sockets(app: web.Application) -> None:
    await app[CHAT].hub.close_all()


async def start_web(app: web.Application, config: WebSettings) -> tuple[web.AppRunner, str]:
    """Start serving ``app`` on ``config.host:config.port`` with the server's limits (module
    docstring); return the runner and the page URL.

    Port 0 picks a free port; the URL names the one bound. The caller owns the runner and must
    ``await runner.cleanup()``. ``app`` gets two middlewares (connection state, request limits).
    """
    throttled = Throttled("web server under pressure", logger=logger)
    runner = web.AppRunner(
        app, shutdown_timeout=SHUTDOWN_TIMEOUT_S, keepalive_timeout=config.idle_timeout,
        lingering_time=LINGER_S,
    )  # fmt: skip
    guard = ConnectionGuard(runner, connection_cap(config.max_connections), throttled)
    app.middlewares.append(guard.middleware)
    app.middlewares.append(
        request_limits(max_body_bytes=config.max_body_bytes, body_timeout=config.body_timeout)
    )
    await runner.setup()
    AcceptErrorLog.install(asyncio.get_running_loop(), throttled)
    try:
        await GuardedSite(runner, config.host, config.port, guard).start()
    except OSError as exc:
        await runner.cleanup()
        raise CannotListen(config.host, config.port, _why(exc)) from exc
    except BaseException:
        await runner.cleanup()
        raise
    if guard.cap < config.max_connections:
        logger.warning(
            "at most %d connections (SIYU_WEB_MAX_CONNECTIONS %d does not fit the open-file limit)",
            guard.cap, config.max_connections,
        )  # fmt: skip
    port = runner.addresses[0][1]
    return runner, f"http://{_url_host(config.host)}:{port}/"


async def serve(
    app: web.Application,
    config: WebSettings,
    *,
    on_started: Callable[[str], None] | None = None,
    stop: asyncio.Event | None = None,
) -> None:
    """Serve ``app`` until ``stop`` is set (then drain, module docstring) or until cancelled,
    then shut down cleanly. ``on_started`` gets the URL."""
    runner, url = await start_web(app, config)
    try:
        if on_started is not None:
            on_started(url)
        await (stop or asyncio.Event()).wait()
        drain = app.get(DRAIN)
        if drain is not None:
            await drain.wait(config.drain_seconds)
    finally:
        await runner.cleanup()


def check_can_listen(config: WebSettings) -> None:
    """Raise :class:`CannotListen` now if ``config``'s address is taken or not ours to bind.

    A quick probe before slow start-up work (loading models, ingesting the demo), so a second
    server fails in a second, not after a minute. ``start_web`` still reports a lost race.
    """
    if config.port == 0:
        return
    try:
        infos = socket.getaddrinfo(config.host or None, config.port, type=socket.SOCK_STREAM)
        family, kind, proto, _, address = infos[0]
        with socket.socket(family, kind, proto) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as aiohttp binds
            probe.bind(address)
    except OSError as exc:
        raise CannotListen(config.host, config.port, _why(exc)) from exc


def _why(exc: OSError) -> str:
    if exc.errno == errno.EADDRINUSE:
        return "the address is already in use (is another siyu serve or make demo running?)"
    if exc.errno in (errno.EACCES, errno.EPERM):
        return "permission denied (ports below 1024 need privileges)"
    if exc.errno == errno.EADDRNOTAVAIL or isinstance(exc, socket.gaierror):
        return "no such address on this machine"
    return exc.strerror or str(exc)


def _url_host(host: str) -> str:
    """A host a browser on this machine can open: wildcards become loopback."""
    if host in ("", "0.0.0.0"):
        return "127.0.0.1"
    if host == "::":
        return "[::1]"
    return f"[{host}]" if ":" in host else host
