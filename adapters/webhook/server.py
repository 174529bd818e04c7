"""The generic JSON webhook endpoint: ``POST /hooks/{name}`` for each configured bridge.

Order of checks, cheapest first: known bridge (404) → signature headers present and timestamp
fresh (401; a timestamp header that is not a timestamp is 400, :mod:`adapters.freshness`), before
the body is read → body size (413, from ``Content-Length`` before reading) → signature over the
body (401) → contract (400) → an answer slot (503) → the durable inbox (:mod:`bot.inbox`) and the
pipeline → a signed JSON response. Nothing a bridge sends can make this answer 500: every parse
error is a 400 naming what is wrong, a bug in answering is turned into a polite reply by the
pipeline's error boundary, and a dependency failure (the database, say) is 503 with
``Retry-After``: the message waits in the inbox and the bridge's retry is answered. The answer
is written before the inbox is told it went out (``responded``); when the bridge has gone before
its answer was ready (its own timeout), the answer is handed back to the inbox, so that the retry
gets it instead of ``duplicate`` (:meth:`bot.inbox.Inbox.respond`).

Load shedding: the answer takes a slot of the process's :class:`~adapters.admission.Admission`.
When the line for slots is full, or no slot comes within its wait, the bridge gets 503 with
``Retry-After`` at once and the message is not answered (nor marked seen: the retry is answered).
A bridge can retry a 503; it cannot retry an answer that arrives after its own timeout.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from aiohttp import web

from adapters import Clock, utc_now
from adapters.admission import Admission, Busy
from adapters.freshness import MalformedTimestamp
from adapters.limits import BodyTooLarge, read_body
from adapters.webhook.config import Bridge
from adapters.webhook.contract import ContractError, parse_message, render_reply
from adapters.webhook.signing import SignatureMismatch, signed_headers, signed_timestamp, verify
from adapters.written import write_now
from bot.errors import Unavailable
from bot.types import InboundMessage, MessageHandler

log = logging.getLogger(__name__)

CHANNEL_PREFIX = "webhook."

Responded = Callable[[InboundMessage, bool], Awaitable[None]]
"""Told whether the reply to a message reached its bridge: :meth:`bot.inbox.Inbox.responded`."""


def create_webhook_app(
    handle: MessageHandler,
    bridges: Sequence[Bridge],
    *,
    max_body_bytes: int,
    admission: Admission | None = None,
    responded: Responded | None = None,
    clock: Clock = utc_now,
    wall: Callable[[], float] = time.time,
) -> web.Application:
    """A sub-application to mount at ``/hooks/``; one route serves every bridge by name.
    ``admission`` is the process's (one of its own when not given). With the durable inbox,
    ``handle`` is :meth:`bot.inbox.Inbox.respond` and ``responded`` tells it whether each
    response went out (:meth:`bot.inbox.Inbox.responded`); a plain handler needs neither."""
    endpoint = _Endpoint(
        handle, {b.name: b for b in bridges}, max_body_bytes, admission or Admission(), clock, wall
    )
    endpoint.responded = responded
    app = web.Application(client_max_size=max_body_bytes)
    app.router.add_post("/{name}", endpoint.receive)
    return app


class _Endpoint:
    def __init__(
        self,
        handle: MessageHandler,
        bridges: dict[str, Bridge],
        max_body_bytes: int,
        admission: Admission,
        clock: Clock,
        wall: Callable[[], float],
    ) -> None:
        self._handle = handle
        self._bridges = bridges
        self._max = max_body_bytes
        self._admission = admission
        self._clock = clock
        self._wall = wall
        self.responded: Responded | None = None

    async def receive(self, request: web.Request) -> web.Response:
        bridge = self._bridges.get(request.match_info["name"])
        if bridge is None:
            return _error(404, "unknown bridge")
        secret = bridge.secret.get_secret_value()
        try:
            signed_timestamp(request.headers, self._wall)
            body = await read_body(request, self._max)
            verify(secret, request.headers, body, self._wall)
        except MalformedTimestamp as exc:
            log.info("webhook %s: refused a malformed request: %s", bridge.name, exc)
            return _error(400, str(exc))
        except SignatureMismatch as exc:
            log.info("webhook %s: refused a request: %s", bridge.name, exc)
            return _error(401, str(exc))
        except BodyTooLarge as exc:
            return _error(413, str(exc), close=True)
        try:
            msg = parse_message(
                body, channel=CHANNEL_PREFIX + bridge.name, received_at=self._clock(),
                store_id=bridge.store_id,
            )  # fmt: skip
        except ContractError as exc:
            return _error(400, str(exc))
        try:
            async with self._admission.admit():
                reply = await self._handle(msg)
        except Busy as exc:
            log.debug("webhook %s: busy, message %s not answered: %s", bridge.name, msg.id, exc)
            return _busy(exc)
        except Unavailable as exc:  # a dependency failed: the inbox keeps it for the retry
            return _unavailable(exc)
        response = _signed_json(secret, render_reply(reply), self._wall)
        delivered = await write_now(request, response)
        if not delivered:
            log.info("webhook %s: bridge left before the answer to %s", bridge.name, msg.id)
        if self.responded is not None:
            await self._confirm(self.responded, msg, delivered)
        return response

    @staticmethod
    async def _confirm(responded: Responded, msg: InboundMessage, delivered: bool) -> None:
        """Tell the inbox; an outage here is only logged: the response has gone already, and
        the message's lease runs out (its retry then gets the answer again: at least once)."""
        try:
            await responded(msg, delivered)
        except Unavailable as exc:
            log.warning("webhook: could not confirm message %s: %s", msg.id, exc)


def _signed_json(secret: str, payload: dict[str, Any], wall: Callable[[], float]) -> web.Response:
    body = json.dumps(payload, ensure_ascii=False).encode()
    return web.Response(
        body=body,
        content_type="application/json",
        charset="utf-8",
        headers=signed_headers(secret, body, wall),
    )


def _error(status: int, message: str, *, close: bool = False) -> web.Response:
    response = web.json_response({"error": message}, status=status)
    if close:  # what is left of an oversized body is not worth reading
        response.force_close()
    return response


def _unavailable(exc: Unavailable) -> web.Response:
    """503 with ``Retry-After``: a dependency failed; the message waits for the bridge's retry."""
    retry_after = max(1, math.ceil(exc.retry_after))
    response = web.json_response({"error": "unavailable", "retry_after": retry_after}, status=503)
    response.headers["Retry-After"] = str(retry_after)
    return response


def _busy(exc: Busy) -> web.Response:
    """503 with ``Retry-After``: no answer slot now; the bridge sends the message again later."""
    response = web.json_response({"error": "busy", "retry_after": exc.retry_after}, status=503)
    response.headers["Retry-After"] = str(exc.retry_after)
    return response
