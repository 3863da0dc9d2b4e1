"""a zone alert's key to its event is checked at commit

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-08 02:40:00.000000

A poll takes the ids of every alert it opens at once, so a zone alert is
written naming the event it joins before that event's row is (the event opens
after its zones, as before, and keeps the id it had). The key
`alerts.event_id → alerts.id` is therefore checked when a transaction
commits, not row by row (issue 14): a key still broken then fails the commit.
Only this key: SQLite's `PRAGMA defer_foreign_keys` would defer every key of
the transaction, and with a violation outstanding it looks for the children
of each row inserted into a parent table through every deferred key — by a
whole scan where a key has no index (`alerts.supersedes_id`).
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

# revision identifiers, used by Alembic.
revision: str = "0010"
down_revision: str | Sequence[str] | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """a zone alert's key to its event is checked at commit"""
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            "ALTER TABLE alerts ALTER CONSTRAINT fk_alerts_event_id_alerts "
            "DEFERRABLE INITIALLY DEFERRED"
        )
        return
    _recreate_key(deferrable=True)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER TABLE alerts ALTER CONSTRAINT fk_alerts_event_id_alerts NOT DEFERRABLE")
        return
    _recreate_key(deferrable=False)


def _recreate_key(*, deferrable: bool) -> None:
    """SQLite keeps a key's declaration in the table's DDL: the table is rebuilt."""
    with op.batch_alter_table("alerts", schema=None) as batch_op:
        batch_op.drop_constraint("fk_alerts_event_id_alerts", type_="foreignkey")
        batch_op.create_foreign_key(
            "fk_alerts_event_id_alerts",
            "alerts",
            ["event_id"],
            ["id"],
            deferrable=True if deferrable else None,
            initially="DEFERRED" if deferrable else None,
        )
