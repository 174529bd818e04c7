"""Typed settings, read once at the composition root (prefix ``SIYU_``, optional ``.env``).

Each component receives only its own section: :meth:`Settings.knowledge` for the knowledge base,
:meth:`Settings.llm` for the LLM client, :meth:`Settings.bot` for the pipeline, :meth:`Settings.web`
for the web chat. Every field is documented in ``.env.example``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from bot.hours import DEFAULT_HANDOFF_HOURS, ServiceHours
from knowledge.config import EmbeddingConfig, KnowledgeConfig, RetrievalConfig


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


DEFAULT_SUGGESTIONS = ("现在有什么优惠活动？", "门店几点关门？", "积分怎么用？", "怎么退换货？")
"""The web chat's question chips when ``SIYU_WEB_SUGGESTIONS`` is not set."""


@dataclass(frozen=True, slots=True)
class WebConfig:
    """Where ``siyu serve`` listens, and the questions the chat page suggests."""

    host: str
    port: int
    max_body_bytes: int
    suggestions: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class WebhookConfig:
    """One bridge on the generic JSON webhook: its name (in the URL), shared HMAC secret, and
    optional URL to push messages to (proactive sends). See ``adapters/webhook``."""

    name: str
    secret: str
    push_url: str | None = None
    store_id: str | None = None


class WebhookAccount(BaseModel):
    """``SIYU_WEBHOOKS`` entry, e.g. ``[{"name": "bridge", "secret": "..."}]`` (JSON)."""

    name: str = Field(pattern=r"^[A-Za-z0-9_-]{1,64}$")
    secret: SecretStr = Field(min_length=16)
    push_url: str | None = None
    store_id: str | None = None


class _Account(BaseModel):
    """Fields every WeChat / WeCom account has: a name (used in callback URLs) and a store scope."""

    model_config = {"frozen": True}

    name: str = Field(pattern=r"^[A-Za-z0-9_-]{1,64}$")
    store_id: str | None = None


class _Callback(_Account):
    """An account whose platform calls us back: the callback Token and EncodingAESKey."""

    token: SecretStr
    encoding_aes_key: SecretStr | None = None  # required for WeCom; OA plain mode has none


class KfAccount(_Callback):
    """WeCom customer service (微信客服): ``SIYU_WECOM_KF`` entries. Callback URL
    ``/wecom/kf/<name>``; ``secret`` is the 微信客服 Secret of the corp."""

    corp_id: str
    secret: SecretStr
    welcome: str = "您好，我是智能客服，有什么可以帮您？回复“人工”可转人工客服。"
    servicer_userid: str | None = None  # hand off to this agent; empty: the human queue


class WeComAppAccount(_Callback):
    """A WeCom self-built app for store staff: ``SIYU_WECOM_APPS`` entries. Callback URL
    ``/wecom/app/<name>``."""

    corp_id: str
    agent_id: int
    secret: SecretStr


class OfficialAccountConfig(_Callback):
    """An Official Account (公众号): ``SIYU_OFFICIAL_ACCOUNTS`` entries. Callback URL
    ``/wechat/oa/<name>``. ``mode`` is the admin page's 消息加解密方式."""

    app_id: str
    secret: SecretStr
    mode: Literal["plain", "compatible", "safe"] = "safe"
    reply_budget_seconds: float = Field(default=4.5, gt=0, le=4.8)


class RobotAccount(_Account):
    """A WeCom group robot (send-only): ``SIYU_WECOM_ROBOTS`` entries.

    ``key`` is the ``key=`` of the robot's webhook URL."""

    key: SecretStr


class ContactAccount(BaseModel):
    """WeCom customer contact (客户联系): ``SIYU_WECOM_CONTACT``, e.g.
    ``{"corp_id": "ww...", "secret": "..."}`` with the 客户联系 Secret. Campaigns create
    ``add_msg_template`` tasks with it for members' staff owners to confirm."""

    model_config = {"frozen": True}

    corp_id: str
    secret: SecretStr


class DailyDeals(BaseModel):
    """``SIYU_DAILY_DEALS`` entry: a store's daily-deals campaign, e.g.
    ``[{"store_id": "sh-xuhui", "cron": "0 9 * * *", "groups": ["xuhui-fans"]}]``. ``cron`` is
    in the brand's timezone; ``groups`` are SIYU_WECOM_ROBOTS names; ``bridge_groups`` are
    ``"<bridge>:<conversation>"`` pushed to a SIYU_WEBHOOKS bridge's ``push_url``.
    ``store_id`` null = chain."""

    model_config = {"frozen": True}

    store_id: str | None = None
    cron: str = "0 9 * * *"
    groups: list[str] = Field(default_factory=list)
    bridge_groups: list[str] = Field(default_factory=list)


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

    web_host: str = "127.0.0.1"
    web_port: int = Field(default=8080, ge=0, le=65535)
    web_max_body_bytes: int = Field(default=1_048_576, ge=1024)
    web_suggestions: list[str] = Field(default_factory=lambda: list(DEFAULT_SUGGESTIONS))

    webhooks: list[WebhookAccount] = Field(default_factory=list)

    wecom_kf: list[KfAccount] = Field(default_factory=list)
    wecom_apps: list[WeComAppAccount] = Field(default_factory=list)
    official_accounts: list[OfficialAccountConfig] = Field(default_factory=list)
    wecom_robots: list[RobotAccount] = Field(default_factory=list)
    wecom_contact: ContactAccount | None = None

    daily_deals: list[DailyDeals] = Field(default_factory=list)
    campaign_quiet_hours: str = Field(default="21:30-08:30", pattern=r"^\d{2}:\d{2}-\d{2}:\d{2}$")
    campaign_cap_per_day: int = Field(default=1, ge=0)
    campaign_cap_per_week: int = Field(default=3, ge=0)
    campaign_reengage_cooldown_days: int = Field(default=14, ge=0)
    campaign_staff_task_per_month: int = Field(default=4, ge=0)
    campaign_kf_per_minute: float = Field(default=600.0, gt=0)
    campaign_oa_per_minute: float = Field(default=600.0, gt=0)
    campaign_staff_task_per_minute: float = Field(default=60.0, gt=0)
    campaign_robot_per_minute: float = Field(default=20.0, gt=0, le=20.0)
    campaign_webhook_per_minute: float = Field(default=60.0, gt=0)
    campaign_sensitive_words: list[str] = Field(default_factory=list)
    campaign_templates: dict[str, str] = Field(default_factory=dict)
    retention_seen_days: int = Field(default=7, ge=1)
    retention_message_log_days: int = Field(default=180, ge=1)
    retention_outbox_days: int = Field(default=90, ge=32)
    retention_runs_days: int = Field(default=90, ge=1)
    retention_cron: str = "30 4 * * *"
    wecom_api_base: str = "https://qyapi.weixin.qq.com"
    wechat_api_base: str = "https://api.weixin.qq.com"

    @field_validator("webhooks", "wecom_kf", "wecom_apps", "official_accounts", "wecom_robots")
    @classmethod
    def _unique_names(cls, value: list[Any]) -> list[Any]:
        names = [a.name for a in value]
        if len(names) != len(set(names)):
            raise ValueError(f"account names must be unique within a channel, got {names}")
        return value

    @model_validator(mode="after")
    def _outbox_outlives_the_cooldown(self) -> Settings:
        if self.retention_outbox_days <= self.campaign_reengage_cooldown_days:
            raise ValueError(
                f"SIYU_RETENTION_OUTBOX_DAYS ({self.retention_outbox_days}) must exceed "
                f"SIYU_CAMPAIGN_REENGAGE_COOLDOWN_DAYS ({self.campaign_reengage_cooldown_days}): "
                "the cooldown is read from the outbox"
            )
        return self

    @field_validator("campaign_quiet_hours", "handoff_hours")
    @classmethod
    def _clock_times(cls, value: str) -> str:
        from datetime import time

        for part in value.split("-"):
            time.fromisoformat(part)  # raises for 25:00 and the like
        return value

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

    def webhooks_config(self) -> list[WebhookConfig]:
        return [
            WebhookConfig(a.name, a.secret.get_secret_value(), a.push_url, a.store_id)
            for a in self.webhooks
        ]

    def web(self) -> WebConfig:
        return WebConfig(
            host=self.web_host,
            port=self.web_port,
            max_body_bytes=self.web_max_body_bytes,
            suggestions=tuple(q.strip() for q in self.web_suggestions if q.strip()),
        )
