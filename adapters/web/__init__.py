"""The web chat: a self-contained page, a WebSocket for 1:1 chats and group rooms, ``/healthz``.

``create_web_app`` builds the aiohttp application around a ``MessageHandler``; ``start_web``
binds it and returns the URL; ``serve`` runs it until cancelled.
"""

from __future__ import annotations

from adapters.web.server import create_web_app, serve, start_web

__all__ = ["create_web_app", "serve", "start_web"]
