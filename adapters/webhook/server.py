"""The generic JSON webhook endpoint: ``POST /hooks/{name}`` for each configured bridge.

Order of checks, cheapest first: known bridge (404) → body size (413) → signature and freshness
(401; a timestamp header that is not a timestamp is 400) → contract (400) → the pipeline → a
signed JSON response. Nothing a bridge sends can make this answer 500: every parse error is a 400
naming what is wrong (:mod:`adapters.freshness`, :mod:`adapters.webhook.contract`), and a pipeline
failure is already turned into a polite reply by the pipeline's own error boundary.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Sequence
from typing import Any

from aiohttp import web

from adapters import Clock, utc_now
from adapters.freshness import MalformedTimestamp
from adapters.webhook.config import Bridge
from adapters.webhook.contract import ContractError, parse_message, render_reply
from adapters.webhook.signing import SignatureMismatch, signed_headers, verify
from bot.types import MessageHandler

log = logging.getLogger(__name__)

CHANNEL_PREFIX = "webhook."


def create_webhook_app(
    handle: MessageHandler,
    bridges: Sequence[Bridge],
    *,
    max_body_bytes: int,
    clock: Clock = utc_now,
    wall: Callable[[], float] = time.time,
) -> web.Application:
    """A sub-application to mount at ``/hooks/``; one route serves every bridge by name."""
    endpoint = _Endpoint(handle, {b.name: b for b in bridges}, max_body_bytes, clock, wall)
    app = web.Application(client_max_size=max_body_bytes)
    app.router.add_post("/{name}", endpoint.receive)
    return app


class _Endpoint:
    def __init__(
        self,
        handle: MessageHandler,
        bridges: dict[str, Bridge],
        max_body_bytes: int,
        clock: Clock,
        wall: Callable[[], float],
    ) -> None:
        self._handle = handle
        self._bridges = bridges
        self._max = max_body_bytes
        self._clock = clock
        self._wall = wall

    async def receive(self, request: web.Request) -> web.Response:
        bridge = self._bridges.get(request.match_info["name"])
        if bridge is None:
            return _error(404, "unknown bridge")
        if request.content_length is not None and request.content_length > self._max:
            return _error(413, f"body larger than {self._max} bytes")
        try:
            body = await request.read()
        except web.HTTPRequestEntityTooLarge:
            return _error(413, f"body larger than {self._max} bytes")
        try:
            verify(bridge.secret.get_secret_value(), request.headers, body, self._wall)
        except MalformedTimestamp as exc:
            log.info("webhook %s: refused a malformed request: %s", bridge.name, exc)
            return _error(400, str(exc))
        except SignatureMismatch as exc:
            log.info("webhook %s: refused a request: %s", bridge.name, exc)
            return _error(401, str(exc))
        try:
            msg = parse_message(
                body,
                channel=CHANNEL_PREFIX + bridge.name,
                received_at=self._clock(),
                store_id=bridge.store_id,
            )
        except ContractError as exc:
            return _error(400, str(exc))
        reply = await self._handle(msg)
        return _signed_json(bridge.secret.get_secret_value(), render_reply(reply), self._wall)


def _signed_json(secret: str, payload: dict[str, Any], wall: Callable[[], float]) -> web.Response:
    body = json.dumps(payload, ensure_ascii=False).encode()
    return web.Response(
        body=body,
        content_type="application/json",
        charset="utf-8",
        headers=signed_headers(secret, body, wall),
    )


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)
