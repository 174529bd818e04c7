"""The base every settings section derives from, so that each package owns its own section, and
the core's own configuration values (:class:`LLMConfig`, :class:`BotConfig`).

A section is a ``pydantic-settings`` model read from the environment and an optional ``.env``
file. Every variable keeps its ``SIYU_*`` name: a section's field names its variable in full with
``validation_alias`` (:class:`adapters.web.config.WebSettings`'s ``port`` reads ``SIYU_WEB_PORT``),
so an error about a field already names the variable to fix. Fields are still settable by name in
code (``WebSettings(port=0)``), which is how tests build them.

:class:`bot.settings.Settings` composes the sections; a component receives only its section.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, TypeVar
from zoneinfo import ZoneInfo

from pydantic_settings import BaseSettings, SettingsConfigDict

from bot.hours import DEFAULT_HANDOFF_HOURS, ServiceHours

ENV_FILE = ".env"


class Section(BaseSettings):
    """One package's settings. Subclasses set ``env_prefix`` or aliases; see the module doc."""

    model_config = SettingsConfigDict(
        env_prefix="SIYU_", env_file=ENV_FILE, env_file_encoding="utf-8", extra="ignore",
        env_ignore_empty=True,  # "SIYU_X=" (as in .env.example) means the default, not ""
        populate_by_name=True, frozen=True,
    )  # fmt: skip


def clock_range(value: str) -> str:
    """``value`` if it is ``HH:MM-HH:MM`` with real times (``25:00`` is refused)."""
    from datetime import time

    start, sep, end = value.partition("-")
    if not sep:
        raise ValueError(f"expected HH:MM-HH:MM, got {value!r}")
    for part in (start, end):
        time.fromisoformat(part)
    return value


class _Named(Protocol):
    @property
    def name(self) -> str: ...


N = TypeVar("N", bound=_Named)


def unique_names(accounts: Sequence[N]) -> Sequence[N]:
    """Refuse two accounts of one channel with the same name (the name is in their URL)."""
    names = [a.name for a in accounts]
    if len(names) != len(set(names)):
        raise ValueError(f"account names must be unique within a channel, got {names}")
    return accounts


@dataclass(frozen=True, slots=True)
class LLMConfig:
    """An OpenAI-compatible chat endpoint. ``enabled`` is False when no model is configured."""

    base_url: str | None
    model: str | None
    api_key: str | None
    timeout: float
    max_retries: int
    temperature: float

    @property
    def enabled(self) -> bool:
        return bool(self.model)


@dataclass(frozen=True, slots=True)
class BotConfig:
    """How the pipeline talks: the bot's name (groups address it by name), reply limits, history,
    and when human agents answer after a handoff (``handoff_hours``, in ``timezone``)."""

    name: str
    brand: str
    reply_max_bytes: int
    history_turns: int
    timezone: ZoneInfo
    handoff_hours: ServiceHours = DEFAULT_HANDOFF_HOURS
