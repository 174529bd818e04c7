"""The campaigns' SQL tables, next to the core's ``member`` table they key on.

- :class:`MemberProfile`: what marketing knows of a member beyond the core (store, tags, interests,
  staff owner, groups, consent, and ``person``: the key that joins one person's channel
  identities).
- :class:`Campaign`: a daily-deals or re-engagement campaign, its schedule and its options.
- :class:`CampaignRun`: one firing of a campaign, unique per (campaign, run key), so a job that
  fires twice for one day plans once.
- :class:`OutboxRow`: one message to one person (or one group) for one run, unique per
  (run, target); the delivery worker moves it from ``pending`` to ``sent``, ``skipped`` or
  ``failed``. Rows in state ``sent`` are the record of every marketing message a member received
  (caps and reports count them).
- :class:`RateSlot`: the next free send time of one rate limiter (shared by every worker).
- :class:`SendLock`: one worker at a time decides and sends for a person.
- :class:`SchedulerFire`: one execution of a scheduled job (for reports and the leader test).
- :data:`JOBS_TABLE`: APScheduler's job store, which APScheduler creates and owns (not ours:
  migrations leave it alone, see :mod:`bot.schema`).

Datetimes are aware UTC (:class:`bot.models.UTCDateTime`).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

import bot.models  # noqa: F401  (the member table these rows refer to)
from bot.models import UTCDateTime

JOBS_TABLE = "apscheduler_jobs"
"""The table :class:`campaigns.scheduler.CampaignScheduler`'s job store keeps its jobs in."""


def _utc(*, nullable: bool, index: bool = False) -> Any:
    return sa.Column(UTCDateTime(), nullable=nullable, index=index)


def _json(default: Any) -> Any:
    return sa.Column(sa.JSON, nullable=False, default=default)


class MemberProfile(SQLModel, table=True):
    """Marketing's view of one member row (one channel identity).

    ``person`` joins the identities of one human (the brand's customer number, or a unionid);
    without one it is ``"m<member id>"``. Caps, opt-out and the marketing record apply per person.
    ``owner_userid`` + ``external_userid`` make the member reachable by ``add_msg_template`` (the
    staff member confirms the send); ``groups`` names the group robots of the groups they are in.
    """

    __tablename__ = "member_profile"

    member_id: int = Field(primary_key=True, foreign_key="member.id")
    person: str = Field(max_length=128, index=True)
    home_store: str | None = Field(default=None, max_length=64, index=True)
    tags: list[str] = Field(default_factory=list, sa_column=_json(list))
    interests: list[str] = Field(default_factory=list, sa_column=_json(list))
    owner_userid: str | None = Field(default=None, max_length=128)
    external_userid: str | None = Field(default=None, max_length=128)
    groups: list[str] = Field(default_factory=list, sa_column=_json(list))
    consent: bool = Field(default=True)
    consent_at: datetime | None = Field(default=None, sa_column=_utc(nullable=True))
    updated_at: datetime = Field(sa_column=_utc(nullable=False))


class Campaign(SQLModel, table=True):
    """A campaign: ``kind`` is ``daily_deals`` or ``reengage``; ``cron`` runs it in the brand's
    timezone (None: only by hand); ``options`` holds the kind's settings (segments, cooldown,
    groups, templates)."""

    __tablename__ = "campaign"

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(max_length=128, unique=True)
    kind: str = Field(max_length=32)
    store_id: str | None = Field(default=None, max_length=64)
    cron: str | None = Field(default=None, max_length=128)
    options: dict[str, Any] = Field(default_factory=dict, sa_column=_json(dict))
    enabled: bool = Field(default=True)
    created_at: datetime = Field(sa_column=_utc(nullable=False))


class CampaignRun(SQLModel, table=True):
    """One firing of a campaign. ``run_key`` is the local date for scheduled runs."""

    __tablename__ = "campaign_run"
    __table_args__ = (sa.UniqueConstraint("campaign_id", "run_key", name="uq_run_campaign_key"),)

    id: int | None = Field(default=None, primary_key=True)
    campaign_id: int = Field(foreign_key="campaign.id", index=True)
    run_key: str = Field(max_length=64)
    state: str = Field(default="planning", max_length=16)  # planning → planned
    planned_at: datetime = Field(sa_column=_utc(nullable=False))
    summary: dict[str, Any] = Field(default_factory=dict, sa_column=_json(dict))


class OutboxRow(SQLModel, table=True):
    """One message of one run to one target.

    ``target`` is ``"person:<person>"`` or ``"group:<robot>"``; ``channel`` is the delivery
    route (``kf``, ``oa``, ``staff_task``, ``group``); ``address`` what the route needs (open_kfid
    and external_userid, openid, owner and external_userid, robot name). A worker owns a row while
    ``lease_until`` is in the future; ``expires_at`` (the promotions' end) is when the message
    is no longer true and must not go out; ``attempt_at`` is set (committed) just before the
    platform call, so after a crash the next worker knows an attempt may have reached it.
    """

    __tablename__ = "outbox"
    __table_args__ = (
        sa.UniqueConstraint("run_id", "target", name="uq_outbox_run_target"),
        sa.Index("ix_outbox_claim", "state", "not_before"),
        sa.Index("ix_outbox_person_sent", "person", "sent_at"),
    )

    id: int | None = Field(default=None, primary_key=True)
    run_id: int = Field(foreign_key="campaign_run.id", index=True)
    target: str = Field(max_length=200)
    member_id: int | None = Field(default=None, foreign_key="member.id")
    person: str | None = Field(default=None, max_length=128)
    segment: str | None = Field(default=None, max_length=64)
    variant: str | None = Field(default=None, max_length=64)
    channel: str = Field(max_length=32)
    address: dict[str, Any] = Field(default_factory=dict, sa_column=_json(dict))
    text: str = Field(sa_column=sa.Column(sa.Text, nullable=False))
    state: str = Field(default="pending", max_length=16)  # pending → sent | skipped | failed
    reason: str | None = Field(default=None, max_length=64)
    error: str | None = Field(default=None, sa_column=sa.Column(sa.Text, nullable=True))
    attempts: int = Field(default=0)
    not_before: datetime = Field(sa_column=_utc(nullable=False))
    expires_at: datetime | None = Field(default=None, sa_column=_utc(nullable=True))
    lease_owner: str | None = Field(default=None, max_length=64)
    lease_until: datetime | None = Field(default=None, sa_column=_utc(nullable=True))
    attempt_at: datetime | None = Field(default=None, sa_column=_utc(nullable=True))
    sent_at: datetime | None = Field(default=None, sa_column=_utc(nullable=True))
    platform_id: str | None = Field(default=None, max_length=128)
    created_at: datetime = Field(sa_column=_utc(nullable=False))


class RateSlot(SQLModel, table=True):
    """A shared rate limiter: the earliest time its next send may happen (GCRA), as Unix seconds
    so one portable ``UPDATE ... RETURNING`` can advance it on SQLite and PostgreSQL alike."""

    __tablename__ = "rate_slot"

    key: str = Field(primary_key=True, max_length=128)
    next_at: float = Field(default=0.0)


class SendLock(SQLModel, table=True):
    """A short lease on one person while a worker decides and sends to them (Unix seconds)."""

    __tablename__ = "send_lock"

    key: str = Field(primary_key=True, max_length=200)
    owner: str = Field(max_length=64)
    until: float = Field(default=0.0)


class SchedulerFire(SQLModel, table=True):
    """One execution of a scheduled job by the leader."""

    __tablename__ = "scheduler_fire"

    id: int | None = Field(default=None, primary_key=True)
    job_id: str = Field(max_length=128, index=True)
    owner: str = Field(max_length=128)
    fired_at: datetime = Field(sa_column=_utc(nullable=False))
    outcome: str = Field(default="", max_length=255)
