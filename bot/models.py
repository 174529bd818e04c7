"""The core's SQL tables: members, the message log (history), and the inbox (dedupe, answers).

Every datetime column uses :class:`UTCDateTime`, which refuses naive datetimes on the way in and
always hands back aware UTC datetimes (SQLite stores no offset, PostgreSQL ``timestamptz`` does).

Campaigns add consent and segments in their own tables keyed by ``member.id``; columns that every
channel needs (opt-out, handoff) live here.

The migrations create these tables (:mod:`bot.schema`); a change to any table here is a new
revision in ``bot/migrations/versions`` (``docs/migrations.md``).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Dialect
from sqlmodel import Field, SQLModel


def require_aware(value: datetime) -> datetime:
    """``value`` unchanged; a clear ValueError for a naive datetime (no timezone)."""
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"naive datetime {value!r}: use timezone-aware datetimes")
    return value


class UTCDateTime(sa.types.TypeDecorator[datetime]):
    """A timezone-aware datetime column, stored in UTC, read back aware on every backend."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return require_aware(value).astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        # SQLite drops the offset; what we stored was UTC, so attach it back.
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


def _utc_column(*, nullable: bool, index: bool = False) -> Any:
    # A fresh Column per field: SQLAlchemy columns cannot be shared between tables or fields.
    return sa.Column(UTCDateTime(), nullable=nullable, index=index)


class Member(SQLModel, table=True):
    """A member on one channel. ``(channel, external_id)`` is unique."""

    __tablename__ = "member"
    __table_args__ = (sa.UniqueConstraint("channel", "external_id", name="uq_member_channel_ext"),)

    id: int | None = Field(default=None, primary_key=True)
    channel: str = Field(max_length=64)
    external_id: str = Field(max_length=255)
    display_name: str = Field(default="", max_length=255)
    first_seen: datetime = Field(sa_column=_utc_column(nullable=False))
    last_active: datetime = Field(sa_column=_utc_column(nullable=False, index=True))
    opted_out: bool = Field(default=False)
    opted_out_at: datetime | None = Field(default=None, sa_column=_utc_column(nullable=True))
    opted_in_at: datetime | None = Field(default=None, sa_column=_utc_column(nullable=True))
    handoff: bool = Field(default=False)
    handoff_at: datetime | None = Field(default=None, sa_column=_utc_column(nullable=True))


class MessageLog(SQLModel, table=True):
    """One message of a session: the member's (``role="user"``) or the bot's (``role="bot"``).

    ``answered_by`` is set on bot rows ("llm", "extractive", "retail", "smalltalk", "command",
    "not_found", "handoff", "complaint", "error"); ``citations`` is a JSON list of
    :class:`knowledge.types.Citation` fields. A handoff because the member complained is logged
    as "complaint": the log is the record ``siyu report`` counts, in one query.
    """

    __tablename__ = "message_log"
    __table_args__ = (sa.Index("ix_message_log_session_time", "session_key", "created_at"),)

    id: int | None = Field(default=None, primary_key=True)
    session_key: str = Field(max_length=512)
    member_id: int = Field(foreign_key="member.id", index=True)
    role: str = Field(max_length=8)
    text: str = Field(sa_column=sa.Column(sa.Text, nullable=False))
    answered_by: str | None = Field(default=None, max_length=32)
    citations: list[dict[str, Any]] = Field(
        default_factory=list, sa_column=sa.Column(sa.JSON, nullable=False)
    )
    created_at: datetime = Field(sa_column=_utc_column(nullable=False))


class InboxMessage(SQLModel, table=True):
    """One inbound message, recorded before the platform is acknowledged (:mod:`bot.inbox`).

    ``(channel, message_id)`` is unique: the platform's id is the dedupe key, so retries,
    restarts and replicas agree. ``message`` is the :class:`bot.types.InboundMessage` as JSON (to
    answer it again after a crash), ``reply`` the answer once recorded. ``state``: ``pending``
    → ``answering`` (``owner`` holds a lease until ``lease_until``) → ``answered`` →
    ``delivered``. ``session_key`` orders the messages of one conversation.
    """

    __tablename__ = "inbox_message"
    __table_args__ = (
        sa.UniqueConstraint("channel", "message_id", name="uq_inbox_channel_msg"),
        sa.Index("ix_inbox_message_session", "session_key", "id"),
        sa.Index("ix_inbox_message_state_lease", "state", "lease_until"),
    )

    id: int | None = Field(default=None, primary_key=True)
    channel: str = Field(max_length=64)
    message_id: str = Field(max_length=255)
    session_key: str = Field(max_length=512)
    message: dict[str, Any] = Field(
        default_factory=dict, sa_column=sa.Column(sa.JSON, nullable=False)
    )
    state: str = Field(max_length=16)
    owner: str | None = Field(default=None, max_length=128)
    lease_until: datetime | None = Field(default=None, sa_column=_utc_column(nullable=True))
    attempts: int = Field(default=0)
    reply: dict[str, Any] | None = Field(default=None, sa_column=sa.Column(sa.JSON, nullable=True))
    outcome: str | None = Field(default=None, max_length=32)
    received_at: datetime = Field(sa_column=_utc_column(nullable=False))
    updated_at: datetime = Field(sa_column=_utc_column(nullable=False, index=True))
