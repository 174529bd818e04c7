"""The JSON webhook's section of the settings: the bridges allowed to call ``/hooks/<name>``."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator

from bot.config import Section, unique_names


class Bridge(BaseModel):
    """One bridge, a ``SIYU_WEBHOOKS`` entry, e.g. ``[{"name": "bridge", "secret": "..."}]``:
    its name (in the URL), the shared HMAC secret, the optional URL Siyu pushes proactive
    messages to, and the store its members ask about by default."""

    model_config = ConfigDict(frozen=True)

    name: str = Field(pattern=r"^[A-Za-z0-9_-]{1,64}$")
    secret: SecretStr = Field(min_length=16)
    push_url: str | None = None
    store_id: str | None = None


class WebhookSettings(Section):
    """Every configured bridge."""

    bridges: list[Bridge] = Field(default_factory=list, validation_alias="SIYU_WEBHOOKS")

    @field_validator("bridges")
    @classmethod
    def _unique(cls, value: list[Bridge]) -> list[Bridge]:
        return list(unique_names(value))
