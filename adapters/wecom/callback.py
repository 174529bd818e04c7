"""What every WeChat / WeCom callback endpoint shares: reading a bounded body, the query
parameters, the encrypted envelope, answering a refused request, and the background tasks that
answer after the platform has been acknowledged.

Order of checks on a callback, cheapest first: known account (404) → body size (413) → query
parameters (400) → signature (401) → decryption and receive id (400 / 403) → XML (400). A refused
request is logged once and answered with the status of its :class:`CallbackError`; nothing a
caller sends can make an endpoint answer 500.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Coroutine, Mapping
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
from aiohttp import web

from adapters.wecom.client import Credentials, TokenCache, WeComClient
from adapters.wecom.crypto import CallbackCrypto
from adapters.wecom.errors import CallbackError, MalformedXML, WeComError
from adapters.wecom.xmlwire import MAX_CALLBACK_BYTES, parse_xml
from bot.types import NoReply, Reply

log = logging.getLogger(__name__)

_READ_CHUNK = 16 * 1024
MAX_PARAM_CHARS = 1024
"""Query values are short (a 40-hex signature, a 10-digit timestamp, a nonce, an echostr)."""


class BodyTooLarge(CallbackError):
    """The request body is over the endpoint's limit."""

    status = 413


class BadQuery(CallbackError):
    """A required query parameter is missing or oversized."""


async def read_body(request: web.Request, max_bytes: int = MAX_CALLBACK_BYTES) -> bytes:
    """The request body, refused with :class:`BodyTooLarge` as soon as it passes ``max_bytes``.

    The body is read in chunks, so a chunked upload without a Content-Length cannot make us
    buffer more than ``max_bytes`` plus one chunk.
    """
    if request.content_length is not None and request.content_length > max_bytes:
        raise BodyTooLarge(f"body of {request.content_length} bytes is over {max_bytes}")
    body = bytearray()
    while chunk := await request.content.read(_READ_CHUNK):
        body += chunk
        if len(body) > max_bytes:
            raise BodyTooLarge(f"body is over {max_bytes} bytes")
    return bytes(body)


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


@asynccontextmanager
async def api_clients(
    accounts: Mapping[str, Credentials], *, api_base: str, tokens: TokenCache
) -> AsyncIterator[dict[str, WeComClient]]:
    """One HTTP session and an API client per account, for as long as a channel runs."""
    async with aiohttp.ClientSession() as session:
        yield {
            name: WeComClient(session, creds, base_url=api_base, tokens=tokens)
            for name, creds in accounts.items()
        }


def refused(channel: str, error: CallbackError) -> web.Response:
    """The 4xx answer to a refused callback, logged once."""
    log.warning("%s: refused a callback (%d): %s", channel, error.status, error)
    return web.Response(status=error.status, text=type(error).__name__)


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
    :meth:`close` cancels what is still running when the application shuts down.
    """

    def __init__(self, channel: str) -> None:
        self._channel = channel
        self._tasks: set[asyncio.Task[Any]] = set()

    def spawn(self, work: Coroutine[Any, Any, None], *, what: str) -> asyncio.Task[None]:
        """Run ``work`` in the background; ``what`` names it in the log line if it fails."""
        task = asyncio.create_task(self._guarded(work, what))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
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
