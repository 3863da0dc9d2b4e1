"""notification mentions

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-03 14:15:00.000000

A group post (WeCom, DingTalk, Feishu, webhook) @-mentions the zone's
responsible people: their platform ids are stored on the outbox row, so a
retry or a restart sends the same mentions. NULL on every other row.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "0003"
down_revision: str | Sequence[str] | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """notification mentions"""
    with op.batch_alter_table("notifications", schema=None) as batch_op:
        batch_op.add_column(sa.Column("mentions", sa.JSON(), nullable=True))


def downgrade() -> None:
    """Undo: notification mentions"""
    with op.batch_alter_table("notifications", schema=None) as batch_op:
        batch_op.drop_column("mentions")
