"""The web server's section of the settings: where ``siyu serve`` listens, the page's chips, and
the limits every endpoint on it shares (the web chat, the webhook and the WeCom callbacks are
mounted on the one server): body size and body time (:mod:`adapters.limits`), idle timeout and
connection cap (:mod:`adapters.web.connections`), how many requests may queue for an answer
(:mod:`adapters.admission`), and how long a stopping server drains (:mod:`adapters.web.drain`)."""

from __future__ import annotations

from pydantic import Field, field_validator

from adapters import MAX_REQUEST_BYTES
from adapters.admission import DEFAULT_QUEUE, DEFAULT_WAIT_S
from bot.config import Section

DEFAULT_SUGGESTIONS = ("现在有什么优惠活动？", "门店几点关门？", "积分怎么用？", "怎么退换货？")
"""The web chat's question chips when ``SIYU_WEB_SUGGESTIONS`` is not set."""


class WebSettings(Section):
    """``SIYU_WEB_HOST``, ``SIYU_WEB_PORT``, ``SIYU_WEB_SUGGESTIONS`` and the server's limits:

    - ``max_body_bytes`` (``SIYU_WEB_MAX_BODY_BYTES``) bounds every request body and WebSocket
      frame on the server (default :data:`adapters.MAX_REQUEST_BYTES`, sized to messages);
    - ``idle_timeout`` (``SIYU_WEB_IDLE_TIMEOUT``): seconds a connection may wait for its request
      line and headers (a new one, or a kept-alive one between requests);
    - ``body_timeout`` (``SIYU_WEB_BODY_TIMEOUT``): seconds from a request's headers to the end of
      its body;
    - ``max_connections`` (``SIYU_WEB_MAX_CONNECTIONS``): open connections at most (lowered to fit
      the open-file limit);
    - ``answer_queue`` (``SIYU_WEB_ANSWER_QUEUE``) and ``answer_wait_seconds``
      (``SIYU_WEB_ANSWER_WAIT_SECONDS``): web chat messages and webhook requests that may wait for
      an answer slot, and for how long; past either the webhook answers 503 with ``Retry-After``
      and the web chat a ``busy`` frame;
    - ``drain_seconds`` (``SIYU_WEB_DRAIN_SECONDS``): on SIGTERM, how long answers in flight may
      take to finish before what is left is given back to the inbox (:mod:`adapters.web.drain`).
    """

    host: str = Field(default="127.0.0.1", validation_alias="SIYU_WEB_HOST")
    port: int = Field(default=8080, ge=0, le=65535, validation_alias="SIYU_WEB_PORT")
    max_body_bytes: int = Field(
        default=MAX_REQUEST_BYTES, ge=1024, validation_alias="SIYU_WEB_MAX_BODY_BYTES"
    )
    idle_timeout: float = Field(default=15.0, gt=0, validation_alias="SIYU_WEB_IDLE_TIMEOUT")
    body_timeout: float = Field(default=10.0, gt=0, validation_alias="SIYU_WEB_BODY_TIMEOUT")
    max_connections: int = Field(default=512, ge=1, validation_alias="SIYU_WEB_MAX_CONNECTIONS")
    answer_queue: int = Field(default=DEFAULT_QUEUE, ge=0, validation_alias="SIYU_WEB_ANSWER_QUEUE")
    answer_wait_seconds: float = Field(
        default=DEFAULT_WAIT_S, ge=0, validation_alias="SIYU_WEB_ANSWER_WAIT_SECONDS"
    )
    drain_seconds: float = Field(default=10.0, ge=0, validation_alias="SIYU_WEB_DRAIN_SECONDS")
    suggestions: tuple[str, ...] = Field(
        default=DEFAULT_SUGGESTIONS, validation_alias="SIYU_WEB_SUGGESTIONS"
    )

    @field_validator("suggestions")
    @classmethod
    def _trimmed(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(q.strip() for q in value if q.strip())
