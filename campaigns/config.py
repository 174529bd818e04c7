"""The campaigns' settings section (:class:`CampaignSettings`, read from ``SIYU_CAMPAIGN_*``,
``SIYU_RETENTION_*`` and ``SIYU_DAILY_DEALS``) and the values it gives the planner, the policy and
the worker (:class:`CampaignsConfig`).

Defaults follow DESIGN.md §4: quiet hours 21:30–08:30 in the brand's timezone, at most one
marketing message per person per day and three per week, a cooldown between win-back attempts,
and ``add_msg_template`` at most four times per customer per month (configurable: newer accounts
may allow one a day).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import time
from zoneinfo import ZoneInfo

from pydantic import BaseModel, Field, field_validator, model_validator

from bot.config import Section, clock_range

OPT_OUT_HINT = '回复"退订"不再接收'
"""Appended to every marketing message (the core's opt-out command understands 退订)."""


@dataclass(frozen=True, slots=True)
class RateLimits:
    """Sends per minute allowed per delivery route (shared by all workers), and per robot."""

    kf_per_minute: float = 600.0
    oa_per_minute: float = 600.0
    staff_task_per_minute: float = 60.0
    robot_per_minute: float = 20.0  # WeCom: 20 messages a minute per group robot
    webhook_per_minute: float = 60.0  # per bridge: a bridge drives a real WeChat client
    margin_seconds: float = 1.0
    """Arrival jitter absorbed by stretching each minute (see :mod:`campaigns.ratelimit`)."""

    def per_minute(self, channel: str) -> float:
        """The route's limit; ``group`` is the per-robot limit, ``webhook`` the per-bridge one."""
        return {
            "kf": self.kf_per_minute,
            "oa": self.oa_per_minute,
            "staff_task": self.staff_task_per_minute,
            "group": self.robot_per_minute,
            "webhook": self.webhook_per_minute,
        }[channel]


@dataclass(frozen=True, slots=True)
class RetentionConfig:
    """How many days each growing table keeps its rows (see :mod:`campaigns.retention`), and
    when (a crontab line in the brand's timezone) the scheduler leader prunes them."""

    seen_messages_days: int = 7
    message_log_days: int = 180
    outbox_days: int = 90
    runs_days: int = 90
    cron: str = "30 4 * * *"


@dataclass(frozen=True, slots=True)
class CampaignsConfig:
    """Everything the planner, the delivery policy and the worker need."""

    timezone: ZoneInfo = field(default_factory=lambda: ZoneInfo("Asia/Shanghai"))
    quiet_start: time = time(21, 30)
    quiet_end: time = time(8, 30)
    cap_per_day: int = 1
    cap_per_week: int = 3
    reengage_cooldown_days: int = 14
    staff_task_per_month: int = 4
    rates: RateLimits = field(default_factory=RateLimits)
    lease_seconds: float = 60.0
    max_attempts: int = 5
    sensitive_words: tuple[str, ...] = ()
    templates: dict[str, str] = field(default_factory=dict)
    """Copy templates by segment name (``default`` for the rest); see :mod:`campaigns.copy`."""
    opt_out_hint: str = OPT_OUT_HINT
    retention: RetentionConfig = field(default_factory=RetentionConfig)


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


class CampaignSettings(Section):
    """The campaigns' section of the settings; each field reads the variable its alias names."""

    daily_deals: list[DailyDeals] = Field(default_factory=list, validation_alias="SIYU_DAILY_DEALS")
    quiet_hours: str = Field(default="21:30-08:30", validation_alias="SIYU_CAMPAIGN_QUIET_HOURS")
    cap_per_day: int = Field(default=1, ge=0, validation_alias="SIYU_CAMPAIGN_CAP_PER_DAY")
    cap_per_week: int = Field(default=3, ge=0, validation_alias="SIYU_CAMPAIGN_CAP_PER_WEEK")
    reengage_cooldown_days: int = Field(
        default=14, ge=0, validation_alias="SIYU_CAMPAIGN_REENGAGE_COOLDOWN_DAYS"
    )
    staff_task_per_month: int = Field(
        default=4, ge=0, validation_alias="SIYU_CAMPAIGN_STAFF_TASK_PER_MONTH"
    )
    kf_per_minute: float = Field(
        default=600.0, gt=0, validation_alias="SIYU_CAMPAIGN_KF_PER_MINUTE"
    )
    oa_per_minute: float = Field(
        default=600.0, gt=0, validation_alias="SIYU_CAMPAIGN_OA_PER_MINUTE"
    )
    staff_task_per_minute: float = Field(
        default=60.0, gt=0, validation_alias="SIYU_CAMPAIGN_STAFF_TASK_PER_MINUTE"
    )
    robot_per_minute: float = Field(
        default=20.0, gt=0, le=20.0, validation_alias="SIYU_CAMPAIGN_ROBOT_PER_MINUTE"
    )
    webhook_per_minute: float = Field(
        default=60.0, gt=0, validation_alias="SIYU_CAMPAIGN_WEBHOOK_PER_MINUTE"
    )
    sensitive_words: list[str] = Field(
        default_factory=list, validation_alias="SIYU_CAMPAIGN_SENSITIVE_WORDS"
    )
    templates: dict[str, str] = Field(
        default_factory=dict, validation_alias="SIYU_CAMPAIGN_TEMPLATES"
    )
    retention_seen_days: int = Field(default=7, ge=1, validation_alias="SIYU_RETENTION_SEEN_DAYS")
    retention_message_log_days: int = Field(
        default=180, ge=1, validation_alias="SIYU_RETENTION_MESSAGE_LOG_DAYS"
    )
    retention_outbox_days: int = Field(
        default=90, ge=32, validation_alias="SIYU_RETENTION_OUTBOX_DAYS"
    )
    retention_runs_days: int = Field(default=90, ge=1, validation_alias="SIYU_RETENTION_RUNS_DAYS")
    retention_cron: str = Field(default="30 4 * * *", validation_alias="SIYU_RETENTION_CRON")

    @field_validator("quiet_hours")
    @classmethod
    def _clock_range(cls, value: str) -> str:
        return clock_range(value)

    @model_validator(mode="after")
    def _outbox_outlives_the_cooldown(self) -> CampaignSettings:
        if self.retention_outbox_days <= self.reengage_cooldown_days:
            raise ValueError(
                f"SIYU_RETENTION_OUTBOX_DAYS ({self.retention_outbox_days}) must exceed "
                f"SIYU_CAMPAIGN_REENGAGE_COOLDOWN_DAYS ({self.reengage_cooldown_days}): "
                "the cooldown is read from the outbox"
            )
        return self

    def config(self, timezone: ZoneInfo) -> CampaignsConfig:
        """What the planner, policy and worker need, in the brand's ``timezone``."""
        start, end = (time.fromisoformat(t) for t in self.quiet_hours.split("-"))
        return CampaignsConfig(
            timezone=timezone, quiet_start=start, quiet_end=end,
            cap_per_day=self.cap_per_day, cap_per_week=self.cap_per_week,
            reengage_cooldown_days=self.reengage_cooldown_days,
            staff_task_per_month=self.staff_task_per_month,
            rates=RateLimits(
                kf_per_minute=self.kf_per_minute, oa_per_minute=self.oa_per_minute,
                staff_task_per_minute=self.staff_task_per_minute,
                robot_per_minute=self.robot_per_minute, webhook_per_minute=self.webhook_per_minute,
            ),
            sensitive_words=tuple(self.sensitive_words), templates=dict(self.templates),
            retention=RetentionConfig(
                seen_messages_days=self.retention_seen_days,
                message_log_days=self.retention_message_log_days,
                outbox_days=self.retention_outbox_days, runs_days=self.retention_runs_days,
                cron=self.retention_cron,
            ),
        )  # fmt: skip
