"""undelivered: given-up notifications

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-07 19:00:00.000000

A notification that failed for good with no other way left (failover found
none) is marked given up (`gave_up_at`) instead of being forgotten: the
undelivered system alert counts these rows, and they are sent again when
their channel recovers (`recovery_retries` counts those retries and spaces
them out). NULL / 0 on every other row.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "0007"
down_revision: str | Sequence[str] | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """undelivered: given-up notifications"""
    with op.batch_alter_table("notifications", schema=None) as batch_op:
        batch_op.add_column(sa.Column("gave_up_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(
            sa.Column("recovery_retries", sa.Integer(), server_default="0", nullable=False)
        )
        batch_op.create_index(
            batch_op.f("ix_notifications_gave_up_at"), ["gave_up_at"], unique=False
        )


def downgrade() -> None:
    """Undo: undelivered: given-up notifications"""
    with op.batch_alter_table("notifications", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_notifications_gave_up_at"))
        batch_op.drop_column("recovery_retries")
        batch_op.drop_column("gave_up_at")
