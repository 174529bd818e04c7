"""The web chat's section of the settings: where ``siyu serve`` listens, and the page's chips."""

from __future__ import annotations

from pydantic import Field, field_validator

from bot.config import Section

DEFAULT_SUGGESTIONS = ("现在有什么优惠活动？", "门店几点关门？", "积分怎么用？", "怎么退换货？")
"""The web chat's question chips when ``SIYU_WEB_SUGGESTIONS`` is not set."""


class WebSettings(Section):
    """``SIYU_WEB_HOST``, ``SIYU_WEB_PORT``, ``SIYU_WEB_MAX_BODY_BYTES``, ``SIYU_WEB_SUGGESTIONS``.

    ``max_body_bytes`` bounds every request body and WebSocket frame on the server (the webhook
    and WeCom callbacks are mounted on it too)."""

    host: str = Field(default="127.0.0.1", validation_alias="SIYU_WEB_HOST")
    port: int = Field(default=8080, ge=0, le=65535, validation_alias="SIYU_WEB_PORT")
    max_body_bytes: int = Field(
        default=1_048_576, ge=1024, validation_alias="SIYU_WEB_MAX_BODY_BYTES"
    )
    suggestions: tuple[str, ...] = Field(
        default=DEFAULT_SUGGESTIONS, validation_alias="SIYU_WEB_SUGGESTIONS"
    )

    @field_validator("suggestions")
    @classmethod
    def _trimmed(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(q.strip() for q in value if q.strip())
