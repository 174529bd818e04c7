"""Typed settings, read once at the composition root (prefix ``SIYU_``, optional ``.env``).

Each package owns the section it reads, and each component receives only its own: the channels'
sections are ``settings.web`` (:class:`adapters.web.config.WebSettings`), ``settings.webhook``
(:class:`adapters.webhook.config.WebhookSettings`) and ``settings.wecom``
(:class:`adapters.wecom.config.WeComSettings`), and campaigns' is ``settings.campaigns``
(:class:`campaigns.config.CampaignSettings`); the core's are built by :meth:`Settings.knowledge`,
:meth:`Settings.llm` and :meth:`Settings.bot`. Every variable keeps its ``SIYU_*`` name (see
:mod:`bot.config`) and is documented in ``.env.example``. This module composes the sections, so it
belongs to the composition root with :mod:`bot.app` and :mod:`bot.cli` (the import contracts say
so); nothing in the core imports it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from adapters.web.config import WebSettings
from adapters.webhook.config import WebhookSettings
from adapters.wecom.config import WeComSettings
from bot.config import BotConfig, LLMConfig, Section, clock_range
from bot.hours import ServiceHours
from campaigns.config import CampaignSettings
from knowledge.config import EmbeddingConfig, KnowledgeConfig, RetrievalConfig


class Settings(BaseSettings):
    """All of Siyu's settings. Read once with ``Settings()``; pass sections, never this object."""

    model_config = SettingsConfigDict(
        env_prefix="SIYU_", env_file=".env", env_file_encoding="utf-8", extra="ignore",
        env_ignore_empty=True,  # "SIYU_X=" (as in .env.example) means the default, not ""
    )  # fmt: skip

    data_dir: Path = Path("data")
    database_url: str | None = None

    chroma_url: str | None = None
    chroma_collection: str = "siyu_knowledge"
    embedding: Literal["local", "openai", "hash"] = "local"
    embedding_base_url: str | None = None
    embedding_model: str | None = None
    embedding_api_key: SecretStr | None = None

    retrieval_top_k: int = Field(default=5, ge=1, le=50)
    retrieval_fusion: Literal["rrf", "weighted"] = "weighted"
    retrieval_dense_weight: float = Field(default=0.8, ge=0.0, le=1.0)
    retrieval_min_confidence: float | None = Field(default=None, ge=0.0, le=1.0)
    knowledge_refresh_seconds: float = Field(default=5.0, ge=0.0)

    llm_base_url: str | None = None
    llm_model: str | None = None
    llm_api_key: SecretStr | None = None
    llm_timeout: float = Field(default=20.0, gt=0)
    llm_max_retries: int = Field(default=1, ge=0, le=5)
    llm_temperature: float = Field(default=0.2, ge=0.0, le=2.0)

    bot_name: str = "小域"
    brand_name: str = "Siyu"
    reply_max_bytes: int = Field(default=2048, ge=200)
    history_turns: int = Field(default=6, ge=0, le=50)
    timezone: str = "Asia/Shanghai"
    handoff_hours: str = Field(default="09:00-21:00", pattern=r"^\d{2}:\d{2}-\d{2}:\d{2}$")

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

    @field_validator("handoff_hours")
    @classmethod
    def _clock_range(cls, value: str) -> str:
        return clock_range(value)

    @field_validator("timezone")
    @classmethod
    def _known_timezone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:  # a KeyError pydantic would not catch
            raise ValueError(f"unknown time zone {value!r}, e.g. Asia/Shanghai") from exc
        return value

    @property
    def resolved_database_url(self) -> str:
        """``database_url``, or SQLite in the data dir."""
        if self.database_url:
            return self.database_url
        return f"sqlite+aiosqlite:///{(self.data_dir / 'siyu.db').resolve()}"

    def knowledge(self) -> KnowledgeConfig:
        key = self.embedding_api_key.get_secret_value() if self.embedding_api_key else None
        return KnowledgeConfig(
            data_dir=self.data_dir,
            chroma_url=self.chroma_url,
            collection=self.chroma_collection,
            embedding=EmbeddingConfig(
                backend=self.embedding,
                base_url=self.embedding_base_url,
                model=self.embedding_model,
                api_key=key,
            ),
            retrieval=RetrievalConfig(
                top_k=self.retrieval_top_k,
                fusion=self.retrieval_fusion,
                dense_weight=self.retrieval_dense_weight,
                min_confidence=self.retrieval_min_confidence,
            ),
            refresh_seconds=self.knowledge_refresh_seconds,
        )

    def llm(self) -> LLMConfig:
        return LLMConfig(
            base_url=self.llm_base_url,
            model=self.llm_model,
            api_key=self.llm_api_key.get_secret_value() if self.llm_api_key else None,
            timeout=self.llm_timeout,
            max_retries=self.llm_max_retries,
            temperature=self.llm_temperature,
        )

    def bot(self) -> BotConfig:
        return BotConfig(
            name=self.bot_name,
            brand=self.brand_name,
            reply_max_bytes=self.reply_max_bytes,
            history_turns=self.history_turns,
            timezone=ZoneInfo(self.timezone),
            handoff_hours=ServiceHours.parse(self.handoff_hours),
        )


_SECTIONS: dict[str, type[Section]] = {
    "web": WebSettings,
    "webhook": WebhookSettings,
    "wecom": WeComSettings,
    "campaigns": CampaignSettings,
}
