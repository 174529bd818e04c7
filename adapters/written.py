"""Responses that carry an answer the inbox must know reached the caller: written, then confirmed.

aiohttp writes a handler's response after the handler returns, so a handler cannot know whether
it went out. For most responses that does not matter. For one that carries a member's answer (a
bridge's JSON, an Official Account's passive reply) the inbox (:mod:`bot.inbox`) must not count
the answer delivered before it was written: a process killed in between would leave the
caller's retry with "already answered" for an answer it never got. So such a response is written
here, inside the handler (:func:`write_now`), and only then confirmed; a caller that hung up
first is reported as such, and the answer is kept for its retry (or sent another way).

:class:`Tracked` marks a callback channel's response as one of these: the WeCom callback base
(:mod:`adapters.wecom.callback`) writes it and awaits its ``written`` hook with the outcome.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

Written = Callable[[bool], Awaitable[None]]
"""Told True once the response was written to the caller's connection, False if the caller had
gone (or went while it was written)."""


class Tracked(web.Response):
    """A response whose delivery its channel must hear about (``written``)."""

    def __init__(self, *, written: Written, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.written = written


async def write_now(request: web.Request, response: web.StreamResponse) -> bool:
    """Write ``response`` to ``request``'s connection now (a handler may still return it
    afterwards); False when the caller had already hung up or hangs up while it is written.
    Written means handed to the kernel: a process killed after this has sent it."""
    if request.transport is None or request.transport.is_closing():
        return False
    try:
        await response.prepare(request)
        await response.write_eof()
    except (ConnectionError, RuntimeError):  # reset; or "cannot write to closing transport"
        return False
    return request.transport is not None
