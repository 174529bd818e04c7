"""The web chat: a self-contained page, a WebSocket for 1:1 chats and group rooms, the store
menu (``/api/stores``), ``/healthz``.

``create_web_app`` builds the aiohttp application around a ``MessageHandler``; ``start_web``
binds it and returns the URL; ``serve`` runs it until cancelled. ``check_can_listen`` probes the
address early; both raise :class:`CannotListen` when the address cannot be bound.
"""

from __future__ import annotations

from adapters.web.server import CannotListen, check_can_listen, create_web_app, serve, start_web

__all__ = ["CannotListen", "check_can_listen", "create_web_app", "serve", "start_web"]
