"""Initial schema: configuration mirror, forecast runs, alerts, outbox, receipts, audit log.

Revision ID: 0001
Revises:
Create Date: 2026-11-29

Written out in full rather than imported from the models, so this revision
builds the same tables forever, whatever the models become. Constraint and
index names are spelled out as the models' naming convention produces them
(`pk_<table>`, `uq_<table>_<column>`, `fk_<table>_<column>_<referred>`,
`ix_<table>_<column>`), so later migrations can address them by name on both
databases. Times are `DateTime(timezone=True)`: the models' `UtcDateTime`
stores UTC through it.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _id() -> sa.types.TypeEngine[int]:
    # BIGINT on PostgreSQL; INTEGER on SQLite, where only that exact type makes
    # the column an alias of the rowid (and so auto-incrementing).
    return sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def _time() -> sa.DateTime:
    return sa.DateTime(timezone=True)


def upgrade() -> None:
    """Create every table of the initial schema."""
    op.create_table(
        "zones",
        sa.Column("id", sa.String(64), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("township", sa.String(64), nullable=False),
        sa.Column("village", sa.String(64), nullable=False),
        sa.Column("latitude", sa.Float(), nullable=False),
        sa.Column("longitude", sa.Float(), nullable=False),
        sa.Column("risk_level", sa.String(16), nullable=False),
        sa.Column("tags", sa.JSON(), nullable=False),
        sa.Column("point_id", sa.String(64), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("updated_at", _time(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_zones"),
    )
    op.create_index("ix_zones_township", "zones", ["township"])

    op.create_table(
        "people",
        sa.Column("id", sa.String(64), nullable=False),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("phone", sa.String(32), nullable=False),
        sa.Column("duty_role", sa.String(32), nullable=True),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("updated_at", _time(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_people"),
    )

    op.create_table(
        "zone_roles",
        sa.Column("zone_id", sa.String(64), nullable=False),
        sa.Column("person_id", sa.String(64), nullable=False),
        sa.Column("role", sa.String(32), nullable=False),
        sa.ForeignKeyConstraint(["zone_id"], ["zones.id"], name="fk_zone_roles_zone_id_zones"),
        sa.ForeignKeyConstraint(
            ["person_id"], ["people.id"], name="fk_zone_roles_person_id_people"
        ),
        sa.PrimaryKeyConstraint("zone_id", "person_id", "role", name="pk_zone_roles"),
    )

    op.create_table(
        "forecast_runs",
        sa.Column("id", _id(), autoincrement=True, nullable=False),
        sa.Column("source", sa.String(64), nullable=False),
        sa.Column("started_at", _time(), nullable=False),
        sa.Column("finished_at", _time(), nullable=False),
        sa.Column("ok", sa.Boolean(), nullable=False),
        sa.Column("points", sa.Integer(), nullable=False),
        sa.Column("hours", sa.Integer(), nullable=False),
        sa.Column("variables", sa.JSON(), nullable=False),
        sa.Column("first_time", _time(), nullable=True),
        sa.Column("last_time", _time(), nullable=True),
        sa.Column("checksum", sa.String(64), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_forecast_runs"),
    )
    op.create_index("ix_forecast_runs_source_finished", "forecast_runs", ["source", "finished_at"])

    op.create_table(
        "alerts",
        sa.Column("id", _id(), autoincrement=True, nullable=False),
        sa.Column("code", sa.String(16), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("zone_id", sa.String(64), nullable=True),
        sa.Column("hazard", sa.String(64), nullable=False),
        sa.Column("rule_id", sa.String(128), nullable=False),
        sa.Column("title", sa.String(128), nullable=False),
        sa.Column("level", sa.String(16), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("onset", _time(), nullable=True),
        sa.Column("until", _time(), nullable=True),
        sa.Column("evidence", sa.JSON(), nullable=False),
        sa.Column("opened_at", _time(), nullable=False),
        sa.Column("updated_at", _time(), nullable=False),
        sa.Column("calm_since", _time(), nullable=True),
        sa.Column("acknowledged_at", _time(), nullable=True),
        sa.Column("acknowledged_by", sa.String(128), nullable=True),
        sa.Column("closed_at", _time(), nullable=True),
        sa.Column("supersedes_id", _id(), nullable=True),
        sa.Column("forecast_run_id", _id(), nullable=True),
        sa.ForeignKeyConstraint(["zone_id"], ["zones.id"], name="fk_alerts_zone_id_zones"),
        sa.ForeignKeyConstraint(
            ["supersedes_id"], ["alerts.id"], name="fk_alerts_supersedes_id_alerts"
        ),
        sa.ForeignKeyConstraint(
            ["forecast_run_id"],
            ["forecast_runs.id"],
            name="fk_alerts_forecast_run_id_forecast_runs",
        ),
        sa.PrimaryKeyConstraint("id", name="pk_alerts"),
        sa.UniqueConstraint("code", name="uq_alerts_code"),
    )
    op.create_index("ix_alerts_state_zone_hazard", "alerts", ["state", "zone_id", "hazard"])

    op.create_table(
        "notifications",
        sa.Column("id", _id(), autoincrement=True, nullable=False),
        sa.Column("idempotency_key", sa.String(255), nullable=False),
        sa.Column("alert_id", _id(), nullable=True),
        sa.Column("transition", sa.String(16), nullable=False),
        sa.Column("person_id", sa.String(64), nullable=True),
        sa.Column("recipient_name", sa.String(64), nullable=False),
        sa.Column("address", sa.String(128), nullable=False),
        sa.Column("channel", sa.String(32), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", _time(), nullable=False),
        sa.Column("lease_until", _time(), nullable=True),
        sa.Column("created_at", _time(), nullable=False),
        sa.Column("sent_at", _time(), nullable=True),
        sa.Column("finished_at", _time(), nullable=True),
        sa.Column("provider_id", sa.String(64), nullable=True),
        sa.Column("error_code", sa.String(32), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["alert_id"], ["alerts.id"], name="fk_notifications_alert_id_alerts"
        ),
        sa.ForeignKeyConstraint(
            ["person_id"], ["people.id"], name="fk_notifications_person_id_people"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_notifications"),
        # the outbox's at-most-one-row-per-message guarantee
        sa.UniqueConstraint("idempotency_key", name="uq_notifications_idempotency_key"),
    )
    op.create_index("ix_notifications_alert_id", "notifications", ["alert_id"])
    op.create_index("ix_notifications_provider_id", "notifications", ["provider_id"])
    op.create_index("ix_notifications_status_due", "notifications", ["status", "next_attempt_at"])

    op.create_table(
        "receipts",
        sa.Column("id", _id(), autoincrement=True, nullable=False),
        sa.Column("notification_id", _id(), nullable=True),
        sa.Column("provider_id", sa.String(64), nullable=False),
        sa.Column("status", sa.String(32), nullable=False),
        sa.Column("error_code", sa.String(32), nullable=True),
        sa.Column("received_at", _time(), nullable=False),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(
            ["notification_id"],
            ["notifications.id"],
            name="fk_receipts_notification_id_notifications",
        ),
        sa.PrimaryKeyConstraint("id", name="pk_receipts"),
    )
    op.create_index("ix_receipts_notification_id", "receipts", ["notification_id"])

    op.create_table(
        "audit_events",
        sa.Column("id", _id(), autoincrement=True, nullable=False),
        sa.Column("at", _time(), nullable=False),
        sa.Column("actor", sa.String(128), nullable=False),
        sa.Column("action", sa.String(64), nullable=False),
        sa.Column("subject", sa.String(128), nullable=False),
        sa.Column("data", sa.JSON(), nullable=False),
        sa.Column("prev_hash", sa.String(64), nullable=False),
        sa.Column("hash", sa.String(64), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_audit_events"),
        sa.UniqueConstraint("hash", name="uq_audit_events_hash"),
    )
    op.create_index("ix_audit_events_action", "audit_events", ["action"])


def downgrade() -> None:
    """Drop every table, children before parents (their indexes go with them)."""
    for table in (
        "audit_events",
        "receipts",
        "notifications",
        "alerts",
        "forecast_runs",
        "zone_roles",
        "people",
        "zones",
    ):
        op.drop_table(table)
