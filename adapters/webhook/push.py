"""Pushing messages to a bridge (proactive sends: campaign posts into groups, handoff notices).

A failed push is a :class:`bot.errors.DeliveryError` (:class:`PushError`) classified for the
outbox's retry rules: a 5xx answer, 429, a timeout or a failed connection is ``transport`` and
retryable; any other status is ``rejected`` and final (the bridge refused this push, sending it
again would not change that). Retrying is safe because a push carries its id (the outbox key,
given as ``message_id``): the contract asks a bridge to show each id once.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence

import aiohttp

from adapters.webhook.config import Bridge
from adapters.webhook.signing import signed_headers
from bot.errors import DeliveryError


class PushError(DeliveryError):
    """The bridge did not accept a push (HTTP status, timeout, connection error)."""


def _status_error(bridge: str, status: int) -> PushError:
    retryable = status >= 500 or status == 429
    return PushError(
        f"{bridge}: push answered HTTP {status}",
        reason="transport" if retryable else "rejected",
        retryable=retryable,
    )


class WebhookPusher:
    """Signed ``{"type": "push", ...}`` POSTs to one bridge's ``push_url``."""

    def __init__(
        self, session: aiohttp.ClientSession, bridge: Bridge, *, timeout: float = 10.0
    ) -> None:
        if not bridge.push_url:
            raise ValueError(f"webhook {bridge.name!r} has no push_url")
        self._session = session
        self._bridge = bridge
        self._url = bridge.push_url
        self._timeout = aiohttp.ClientTimeout(total=timeout)

    async def push(
        self,
        conversation: str,
        text: str,
        *,
        mention: Sequence[str] = (),
        message_id: str | None = None,
    ) -> str:
        """Send ``text`` to ``conversation``; returns the push id (the bridge may dedupe on it)."""
        push_id = message_id or uuid.uuid4().hex
        payload = {
            "type": "push",
            "id": push_id,
            "conversation": conversation,
            "text": text,
            "mention": list(mention),
        }
        body = json.dumps(payload, ensure_ascii=False).encode()
        headers = {
            "Content-Type": "application/json",
            **signed_headers(self._bridge.secret.get_secret_value(), body),
        }
        try:
            async with self._session.post(
                self._url, data=body, headers=headers, timeout=self._timeout
            ) as resp:
                if resp.status >= 300:
                    raise _status_error(self._bridge.name, resp.status)
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise PushError(
                f"{self._bridge.name}: push failed: {exc!r}", reason="transport", retryable=True
            ) from exc
        return push_id
