"""Typed settings, read once at the composition root (prefix ``SIYU_``, optional ``.env``).

Each package owns the section it reads, and each component receives only its own: the channels'
sections are ``settings.web`` (:class:`adapters.web.config.WebSettings`), ``settings.webhook``
(:class:`adapters.webhook.config.WebhookSettings`) and ``settings.wecom``
(:class:`adapters.wecom.config.WeComSettings`), and campaigns' is ``settings.campaigns``
(:class:`campaigns.config.CampaignSettings`); the core's are ``settings.knowledge``,
``settings.llm``, ``settings.bot`` and ``settings.ops`` (:mod:`bot.config`). Only the data dir
and the database URL sit at the top, read by every part that stores something.

Every variable keeps its ``SIYU_*`` name (see :mod:`bot.config`) and is documented in
``.env.example``. This module composes the sections, so it belongs to the composition root with
:mod:`bot.app` and :mod:`bot.cli` (the import contracts say so); nothing in the core imports it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import Field, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from adapters.web.config import WebSettings
from adapters.webhook.config import WebhookSettings
from adapters.wecom.config import WeComSettings
from bot.config import BotSettings, KnowledgeSettings, LLMSettings, OpsSettings, Section
from campaigns.config import CampaignSettings


class Settings(BaseSettings):
    """All of Siyu's settings. Read once with ``Settings()``; pass sections, never this object."""

    model_config = SettingsConfigDict(
        env_prefix="SIYU_", env_file=".env", env_file_encoding="utf-8", extra="ignore",
        env_ignore_empty=True,  # "SIYU_X=" (as in .env.example) means the default, not ""
    )  # fmt: skip

    data_dir: Path = Path("data")
    database_url: str | None = None

    knowledge: KnowledgeSettings = Field(default_factory=KnowledgeSettings)
    llm: LLMSettings = Field(default_factory=LLMSettings)
    bot: BotSettings = Field(default_factory=BotSettings)
    ops: OpsSettings = Field(default_factory=OpsSettings)

    web: WebSettings = Field(default_factory=WebSettings)
    webhook: WebhookSettings = Field(default_factory=WebhookSettings)
    wecom: WeComSettings = Field(default_factory=WeComSettings)

    campaigns: CampaignSettings = Field(default_factory=CampaignSettings)

    def __init__(self, **values: Any) -> None:
        # A section not given is read from the same place as the rest: ``Settings(_env_file=None)``
        # must not let a section read the developer's ``.env``.
        # Every section is read before any error is raised, so one run names every bad setting.
        source = {k: v for k, v in values.items() if k == "_env_file"}
        problems: list[Any] = []
        for name, section in _SECTIONS.items():
            if name not in values:
                try:
                    values[name] = section(**source)
                except ValidationError as exc:
                    problems.extend(exc.errors())
                    values[name] = section.model_construct()  # a stand-in: the rest is checked
        try:
            super().__init__(**values)
        except ValidationError as exc:
            problems.extend(exc.errors())
        if problems:
            raise ValidationError.from_exception_data(type(self).__name__, problems)

    @staticmethod
    def env_name(field: str) -> str | None:
        """The variable a section's field reads (``kf`` → ``SIYU_WECOM_KF``), if it is one."""
        for section in _SECTIONS.values():
            info = section.model_fields.get(field)
            if info is not None and isinstance(info.validation_alias, str):
                return info.validation_alias
        return None

    @property
    def resolved_database_url(self) -> str:
        """``database_url``, or SQLite in the data dir."""
        if self.database_url:
            return self.database_url
        return f"sqlite+aiosqlite:///{(self.data_dir / 'siyu.db').resolve()}"


_SECTIONS: dict[str, type[Section]] = {
    "knowledge": KnowledgeSettings,
    "llm": LLMSettings,
    "bot": BotSettings,
    "ops": OpsSettings,
    "web": WebSettings,
    "webhook": WebhookSettings,
    "wecom": WeComSettings,
    "campaigns": CampaignSettings,
}
