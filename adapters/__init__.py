"""Channels: each sub-module translates one wire format into ``bot.types.InboundMessage`` values,
feeds them to a ``MessageHandler`` (the pipeline) and renders the ``Reply`` it returns.

- :mod:`adapters.console` — chat in a terminal (``siyu chat``).
- :mod:`adapters.web` — the web chat: a page, a WebSocket (1:1 chats, group rooms), ``/healthz``.
- :mod:`adapters.webhook` — a signed JSON webhook for bridges (group chats on other platforms).
- :mod:`adapters.wecom` — WeCom customer service (kf), the Official Account, the WeCom app and
  group robots.

Adapters know the core's values (``bot.types``, ``bot.config``, ``bot.clock``, ``bot.errors``),
never ``knowledge`` or ``campaigns``. Each channel owns its settings section (``config.py``).
"""

from __future__ import annotations

from bot.clock import Clock, utc_now

__all__ = ["MAX_REQUEST_BYTES", "MAX_TEXT_CHARS", "Clock", "utc_now"]

MAX_TEXT_CHARS = 2000
"""The longest member message any adapter accepts (longer input is refused, not truncated)."""

MAX_REQUEST_BYTES = 32 * 1024
"""The largest request body or WebSocket frame any endpoint reads (``SIYU_WEB_MAX_BODY_BYTES``
overrides it). Sized to the messages, not to uploads: a message of :data:`MAX_TEXT_CHARS`
Chinese characters is 6,000 bytes of UTF-8, about 12 KB as JSON with ``\\uXXXX`` escapes and
about 15 KB as an Official Account callback in compatible mode (plain XML beside its base64
ciphertext); nothing a member sends needs more. Larger bodies are refused with 413 before they
are read (:mod:`adapters.limits`); measured before this bound (issue 11), 400 half-sent 1 MB
bodies took a server from 292 to 1,038 MB."""
