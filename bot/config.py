"""The base every settings section derives from, so that each package owns its own section; the
core's sections (:class:`KnowledgeSettings`, :class:`LLMSettings`, :class:`BotSettings`,
:class:`OpsSettings`) and the values they build for the components (:class:`LLMConfig`,
:class:`BotConfig`, :class:`ReadinessConfig`, :class:`knowledge.config.KnowledgeConfig`).

A section is a ``pydantic-settings`` model read from the environment and an optional ``.env``
file. Every variable keeps its ``SIYU_*`` name: a section's field names its variable in full with
``validation_alias`` (:class:`adapters.web.config.WebSettings`'s ``port`` reads ``SIYU_WEB_PORT``),
so an error about a field already names the variable to fix. Fields are still settable by name in
code (``WebSettings(port=0)``), which is how tests build them.

:class:`bot.settings.Settings` composes the sections; a component receives only its section, or
the value its section builds (``settings.llm.config()``). The knowledge package never reads the
environment, so its section lives here, beside the core's.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Protocol, TypeVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from bot.hours import DEFAULT_HANDOFF_HOURS, ServiceHours
from knowledge.config import (
    EmbeddingBackend,
    EmbeddingConfig,
    FusionMethod,
    KnowledgeConfig,
    RetrievalConfig,
)

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


def _secret(value: SecretStr | None) -> str | None:
    return value.get_secret_value() if value is not None else None


class KnowledgeSettings(Section):
    """Where Chroma lives and how to embed and retrieve (``SIYU_CHROMA_*``, ``SIYU_EMBEDDING*``,
    ``SIYU_RETRIEVAL_*``)."""

    chroma_url: str | None = Field(default=None, validation_alias="SIYU_CHROMA_URL")
    collection: str = Field(default="siyu_knowledge", validation_alias="SIYU_CHROMA_COLLECTION")
    embedding: EmbeddingBackend = Field(default="local", validation_alias="SIYU_EMBEDDING")
    embedding_base_url: str | None = Field(default=None, validation_alias="SIYU_EMBEDDING_BASE_URL")
    embedding_model: str | None = Field(default=None, validation_alias="SIYU_EMBEDDING_MODEL")
    embedding_api_key: SecretStr | None = Field(
        default=None, validation_alias="SIYU_EMBEDDING_API_KEY"
    )
    top_k: int = Field(default=5, ge=1, le=50, validation_alias="SIYU_RETRIEVAL_TOP_K")
    fusion: FusionMethod = Field(default="weighted", validation_alias="SIYU_RETRIEVAL_FUSION")
    dense_weight: float = Field(
        default=0.8, ge=0.0, le=1.0, validation_alias="SIYU_RETRIEVAL_DENSE_WEIGHT"
    )
    min_confidence: float | None = Field(
        default=None, ge=0.0, le=1.0, validation_alias="SIYU_RETRIEVAL_MIN_CONFIDENCE"
    )
    refresh_seconds: float = Field(
        default=5.0, ge=0.0, validation_alias="SIYU_KNOWLEDGE_REFRESH_SECONDS"
    )

    def config(self, data_dir: Path) -> KnowledgeConfig:
        """The knowledge base's configuration, its embedded Chroma (if any) under ``data_dir``."""
        return KnowledgeConfig(
            data_dir=data_dir, chroma_url=self.chroma_url, collection=self.collection,
            embedding=EmbeddingConfig(
                backend=self.embedding, base_url=self.embedding_base_url,
                model=self.embedding_model, api_key=_secret(self.embedding_api_key),
            ),
            retrieval=RetrievalConfig(
                top_k=self.top_k, fusion=self.fusion, dense_weight=self.dense_weight,
                min_confidence=self.min_confidence,
            ),
            refresh_seconds=self.refresh_seconds,
        )  # fmt: skip


class LLMSettings(Section):
    """The OpenAI-compatible chat endpoint (``SIYU_LLM_*``); none configured means offline."""

    base_url: str | None = Field(default=None, validation_alias="SIYU_LLM_BASE_URL")
    model: str | None = Field(default=None, validation_alias="SIYU_LLM_MODEL")
    api_key: SecretStr | None = Field(default=None, validation_alias="SIYU_LLM_API_KEY")
    timeout: float = Field(default=20.0, gt=0, validation_alias="SIYU_LLM_TIMEOUT")
    max_retries: int = Field(default=1, ge=0, le=5, validation_alias="SIYU_LLM_MAX_RETRIES")
    temperature: float = Field(default=0.2, ge=0.0, le=2.0, validation_alias="SIYU_LLM_TEMPERATURE")

    @property
    def enabled(self) -> bool:
        return bool(self.model)

    def config(self) -> LLMConfig:
        return LLMConfig(
            base_url=self.base_url, model=self.model, api_key=_secret(self.api_key),
            timeout=self.timeout, max_retries=self.max_retries, temperature=self.temperature,
        )  # fmt: skip


LEASE_MARGIN_S = 2.0
"""What an answer does besides waiting on remote services (retrieval, storing), at most."""


class BotSettings(Section):
    """How the bot talks and when people take over (``SIYU_BOT_NAME``, ``SIYU_BRAND_NAME``,
    ``SIYU_REPLY_MAX_BYTES``, ``SIYU_HISTORY_TURNS``, ``SIYU_TIMEZONE``, ``SIYU_HANDOFF_HOURS``,
    ``SIYU_ANSWER_DEADLINE``, ``SIYU_INBOX_LEASE_SECONDS``).

    ``timezone`` is the brand's: handoff hours, campaign crons and quiet hours, and "today" in
    the answers are all read in it.

    ``answer_deadline``: the most one answer waits on remote services. Every LLM and embeddings
    request made for one question shares it (:func:`knowledge.deadline.budget`, opened by
    :class:`bot.retail.RetailAnswerer`); a service that has not answered by then is given up and
    the answer is extractive (keyword retrieval when the embeddings server is the one missing).
    8 s leaves a member's answer under 10 s with the local work included.

    ``inbox_lease``: how long a process holds a message it answers or sends (:mod:`bot.inbox`).
    It bounds how long a message cut by a crash waits before another process (or this one,
    restarted) takes it over, and must exceed the answer deadline with room to spare, or a live
    process would lose a message mid-answer.
    """

    name: str = Field(default="小域", validation_alias="SIYU_BOT_NAME")
    brand: str = Field(default="Siyu", validation_alias="SIYU_BRAND_NAME")
    reply_max_bytes: int = Field(default=2048, ge=200, validation_alias="SIYU_REPLY_MAX_BYTES")
    history_turns: int = Field(default=6, ge=0, le=50, validation_alias="SIYU_HISTORY_TURNS")
    timezone: ZoneInfo = Field(default=ZoneInfo("Asia/Shanghai"), validation_alias="SIYU_TIMEZONE")
    handoff_hours: str = Field(
        default="09:00-21:00", pattern=r"^\d{2}:\d{2}-\d{2}:\d{2}$",
        validation_alias="SIYU_HANDOFF_HOURS",
    )  # fmt: skip
    answer_deadline: float = Field(
        default=8.0, gt=0, le=60, validation_alias="SIYU_ANSWER_DEADLINE"
    )
    inbox_lease: float = Field(
        default=30.0, ge=5, le=600, validation_alias="SIYU_INBOX_LEASE_SECONDS"
    )

    @model_validator(mode="after")
    def _lease_outlasts_an_answer(self) -> BotSettings:
        if self.inbox_lease < self.answer_deadline + LEASE_MARGIN_S:
            raise ValueError(
                f"SIYU_INBOX_LEASE_SECONDS ({self.inbox_lease:g}) must be at least "
                f"SIYU_ANSWER_DEADLINE + {LEASE_MARGIN_S:g} s ({self.answer_deadline:g} + "
                f"{LEASE_MARGIN_S:g}): a lease shorter than an answer loses live messages"
            )
        return self

    @field_validator("timezone", mode="before")
    @classmethod
    def _known_timezone(cls, value: object) -> object:
        if isinstance(value, str):
            try:
                return ZoneInfo(value)
            except (ZoneInfoNotFoundError, ValueError) as exc:  # a KeyError pydantic would miss
                raise ValueError(f"unknown time zone {value!r}, e.g. Asia/Shanghai") from exc
        return value

    @field_validator("handoff_hours")
    @classmethod
    def _clock_range(cls, value: str) -> str:
        return clock_range(value)

    def config(self) -> BotConfig:
        return BotConfig(
            name=self.name, brand=self.brand, reply_max_bytes=self.reply_max_bytes,
            history_turns=self.history_turns, timezone=self.timezone,
            handoff_hours=ServiceHours.parse(self.handoff_hours),
        )  # fmt: skip


LogLevel = Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"]


@dataclass(frozen=True, slots=True)
class ReadinessConfig:
    """What :mod:`bot.readiness` holds a process to: each check's time bound, and how long the
    oldest message may wait in the inbox before the process says it is not ready."""

    check_timeout: float
    max_inbox_lag: float


class OpsSettings(Section):
    """Operating a process (README "Operations"): how the long-running commands log (``serve``,
    ``demo``, ``worker``, ``scheduler``; :mod:`bot.logs`) and what ``/readyz`` asks of it
    (:mod:`bot.readiness`).

    - ``log_level`` (``SIYU_LOG_LEVEL``, default INFO, any case);
    - ``log_json`` (``SIYU_LOG_JSON``, default off: plain lines; on: one JSON object per line with
      a timestamp, level, logger, message and the id of the message being answered);
    - ``ready_timeout`` (``SIYU_READY_TIMEOUT``, seconds, default 2): the most each readiness
      check may take (a hung database answers "not ready" in that time, not never);
    - ``ready_max_inbox_lag`` (``SIYU_READY_MAX_INBOX_LAG``, seconds, default 60): a message
      waiting (pending or being answered) longer than this makes the process not ready.
    """

    log_level: LogLevel = Field(default="INFO", validation_alias="SIYU_LOG_LEVEL")
    log_json: bool = Field(default=False, validation_alias="SIYU_LOG_JSON")
    ready_timeout: float = Field(default=2.0, gt=0, le=30, validation_alias="SIYU_READY_TIMEOUT")
    ready_max_inbox_lag: float = Field(
        default=60.0, gt=0, validation_alias="SIYU_READY_MAX_INBOX_LAG"
    )

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper(cls, value: object) -> object:
        return value.strip().upper() if isinstance(value, str) else value

    def readiness(self) -> ReadinessConfig:
        return ReadinessConfig(
            check_timeout=self.ready_timeout, max_inbox_lag=self.ready_max_inbox_lag
        )
