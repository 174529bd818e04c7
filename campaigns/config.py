"""The campaigns' settings section, built by the composition root from ``SIYU_CAMPAIGN_*``.

Defaults follow DESIGN.md §4: quiet hours 21:30–08:30 in the brand's timezone, at most one
marketing message per person per day and three per week, a cooldown between win-back attempts,
and ``add_msg_template`` at most four times per customer per month (configurable: newer accounts
may allow one a day).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import time
from zoneinfo import ZoneInfo

from pydantic import BaseModel, Field

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
