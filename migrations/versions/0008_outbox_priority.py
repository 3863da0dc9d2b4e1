"""outbox priority

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-07 19:15:00.000000

The claim order when a rate limit binds (red 0, orange 1, yellow 2, blue 3),
stored on the outbox row when it is created, with an index the claim reads in
order (status, priority, due time, id) instead of sorting every due row on the
level of its alert (issue 14). Rows still waiting to go get the priority of
their alert's level; rows already finished keep orange, which nothing reads.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "0008"
down_revision: str | Sequence[str] | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """outbox priority"""
    with op.batch_alter_table("notifications", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("priority", sa.SmallInteger(), server_default="1", nullable=False)
        )
    op.execute(
        "UPDATE notifications SET priority = CASE (SELECT level FROM alerts "
        "WHERE alerts.id = notifications.alert_id) "
        "WHEN 'red' THEN 0 WHEN 'orange' THEN 1 WHEN 'yellow' THEN 2 WHEN 'blue' THEN 3 "
        "ELSE 1 END WHERE status IN ('pending', 'sending') AND alert_id IS NOT NULL"
    )
    op.create_index(
        "ix_notifications_claim",
        "notifications",
        ["status", "priority", "next_attempt_at", "id"],
        unique=False,
    )


def downgrade() -> None:
    """Undo: outbox priority"""
    op.drop_index("ix_notifications_claim", table_name="notifications")
    with op.batch_alter_table("notifications", schema=None) as batch_op:
        batch_op.drop_column("priority")
