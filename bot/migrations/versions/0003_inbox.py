"""The durable inbox (``bot.inbox``) replaces the dedupe table ``seen_message``.

``inbox_message`` records each inbound message before the platform is acknowledged, with its
answer and whether it was delivered. The ids ``seen_message`` held move into it as delivered
messages (no payload, no answer), so a platform retry of a message handled just before the
upgrade is still a duplicate. Then ``seen_message`` is dropped.

``downgrade`` moves every id back into ``seen_message`` and drops the inbox (answers waiting to
be delivered are lost: the old code had no place for them).

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-06
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | Sequence[str] | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "inbox_message",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("channel", sa.String(length=64), nullable=False),
        sa.Column("message_id", sa.String(length=255), nullable=False),
        sa.Column("session_key", sa.String(length=512), nullable=False),
        sa.Column("message", sa.JSON(), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("owner", sa.String(length=128), nullable=True),
        sa.Column("lease_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("reply", sa.JSON(), nullable=True),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("channel", "message_id", name="uq_inbox_channel_msg"),
    )
    op.create_index("ix_inbox_message_session", "inbox_message", ["session_key", "id"])
    op.create_index("ix_inbox_message_state_lease", "inbox_message", ["state", "lease_until"])
    op.create_index("ix_inbox_message_updated_at", "inbox_message", ["updated_at"])
    op.execute(
        "INSERT INTO inbox_message (channel, message_id, session_key, message, state, attempts, "
        "received_at, updated_at) "
        "SELECT channel, message_id, '', '{}', 'delivered', 0, seen_at, seen_at FROM seen_message"
    )
    op.drop_index("ix_seen_message_seen_at", table_name="seen_message")
    op.drop_table("seen_message")


def downgrade() -> None:
    op.create_table(
        "seen_message",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("channel", sa.String(length=64), nullable=False),
        sa.Column("message_id", sa.String(length=255), nullable=False),
        sa.Column("seen_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("channel", "message_id", name="uq_seen_channel_msg"),
    )
    op.create_index("ix_seen_message_seen_at", "seen_message", ["seen_at"])
    op.execute(
        "INSERT INTO seen_message (channel, message_id, seen_at) "
        "SELECT channel, message_id, received_at FROM inbox_message"
    )
    op.drop_index("ix_inbox_message_updated_at", table_name="inbox_message")
    op.drop_index("ix_inbox_message_state_lease", table_name="inbox_message")
    op.drop_index("ix_inbox_message_session", table_name="inbox_message")
    op.drop_table("inbox_message")
