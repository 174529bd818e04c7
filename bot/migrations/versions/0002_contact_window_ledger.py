"""The contact-window ledger (``bot.contact``) replaces the kf channel's reply windows.

- ``contact_window``: one window per address (kf and Official Account alike), created here; the
  kf windows of ``wecom_kf_window`` move into it (route ``kf``, the kf account's name, the
  customer's ``external_userid``, chat = ``open_kfid``; ``replies`` becomes ``used``), so a member
  in the middle of a window is not sent more than the platform allows after the upgrade. Then
  ``wecom_kf_window`` is dropped.
- ``member_address``: the address each member last wrote from. Created empty: the old tables
  hold no addresses (deriving them from channel names is what the ledger stopped doing); each
  member's row appears when they next write.

``downgrade`` moves the kf windows back and drops both tables (Official Account windows and the
addresses are lost: the old code had no place for them).

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-06
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "contact_window",
        sa.Column("route", sa.String(length=32), nullable=False),
        sa.Column("account", sa.String(length=64), nullable=False),
        sa.Column("user_id", sa.String(length=128), nullable=False),
        sa.Column("chat", sa.String(length=128), nullable=False),
        sa.Column("opened_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("used", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("route", "account", "user_id", "chat"),
    )
    op.create_table(
        "member_address",
        sa.Column("member_id", sa.Integer(), nullable=False),
        sa.Column("route", sa.String(length=32), nullable=False),
        sa.Column("account", sa.String(length=64), nullable=False),
        sa.Column("user_id", sa.String(length=128), nullable=False),
        sa.Column("chat", sa.String(length=128), nullable=False),
        sa.Column("last_inbound_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["member_id"], ["member.id"]),
        sa.PrimaryKeyConstraint("member_id"),
    )
    op.execute(
        "INSERT INTO contact_window (route, account, user_id, chat, opened_at, used) "
        "SELECT 'kf', account, external_userid, open_kfid, last_customer_at, replies "
        "FROM wecom_kf_window"
    )
    op.drop_table("wecom_kf_window")


def downgrade() -> None:
    op.create_table(
        "wecom_kf_window",
        sa.Column("account", sa.String(length=64), nullable=False),
        sa.Column("open_kfid", sa.String(length=128), nullable=False),
        sa.Column("external_userid", sa.String(length=128), nullable=False),
        sa.Column("last_customer_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("replies", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("account", "open_kfid", "external_userid"),
    )
    op.execute(
        "INSERT INTO wecom_kf_window (account, open_kfid, external_userid, last_customer_at, "
        "replies) SELECT account, chat, user_id, opened_at, used FROM contact_window "
        "WHERE route = 'kf'"
    )
    op.drop_table("member_address")
    op.drop_table("contact_window")
