"""events

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-04 18:40:00.000000

Events (issue 12): an event is an alert of kind `event`; the hazard alerts
that belong to it point to it (`alerts.event_id`). An event's level changes in
place and `epoch` counts the changes; each restarts its escalation, so a timer
records the epoch it was planned in and the timers' uniqueness includes it.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "0004"
down_revision: str | Sequence[str] | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    """events"""
    with op.batch_alter_table("alerts", schema=None) as batch_op:
        batch_op.add_column(sa.Column("event_id", _BIG_ID, nullable=True))
        batch_op.add_column(sa.Column("epoch", sa.Integer(), server_default="0", nullable=False))
        batch_op.create_index(batch_op.f("ix_alerts_event_id"), ["event_id"], unique=False)
        batch_op.create_foreign_key(
            batch_op.f("fk_alerts_event_id_alerts"), "alerts", ["event_id"], ["id"]
        )
    with op.batch_alter_table("escalation_timers", schema=None) as batch_op:
        batch_op.add_column(sa.Column("epoch", sa.Integer(), server_default="0", nullable=False))
        batch_op.drop_constraint("uq_escalation_timers_alert_id", type_="unique")
        batch_op.create_unique_constraint(
            "uq_escalation_timers_alert_id", ["alert_id", "kind", "step", "round", "epoch"]
        )


def downgrade() -> None:
    """Undo: events"""
    with op.batch_alter_table("escalation_timers", schema=None) as batch_op:
        batch_op.drop_constraint("uq_escalation_timers_alert_id", type_="unique")
        batch_op.create_unique_constraint(
            "uq_escalation_timers_alert_id", ["alert_id", "kind", "step", "round"]
        )
        batch_op.drop_column("epoch")
    with op.batch_alter_table("alerts", schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f("fk_alerts_event_id_alerts"), type_="foreignkey")
        batch_op.drop_index(batch_op.f("ix_alerts_event_id"))
        batch_op.drop_column("epoch")
        batch_op.drop_column("event_id")
