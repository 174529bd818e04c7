"""The inbox records how a message was done (``inbox_message.outcome``).

Channels that send through a platform API now mark a message ``delivered`` only once its send
succeeded, or once a decision says it never will (window closed, a person serving, ...);
``outcome`` keeps which (``bot.inbox``). The new state ``sending`` needs no schema change
(``state`` is a string). Rows delivered before the upgrade keep no outcome.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-08
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | Sequence[str] | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("inbox_message") as batch:
        batch.add_column(sa.Column("outcome", sa.String(length=32), nullable=True))


def downgrade() -> None:
    # A message still being sent goes back to "answered": the old code hands it out on a retry.
    op.execute("UPDATE inbox_message SET state = 'answered' WHERE state = 'sending'")
    with op.batch_alter_table("inbox_message") as batch:
        batch.drop_column("outcome")
