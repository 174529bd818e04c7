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

__all__ = ["MAX_TEXT_CHARS", "Clock", "utc_now"]

MAX_TEXT_CHARS = 2000
"""The longest member message any adapter accepts (longer input is refused, not truncated)."""
