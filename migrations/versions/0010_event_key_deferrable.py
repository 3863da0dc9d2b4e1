"""a zone alert's key to its event may be checked at commit

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-08 02:40:00.000000

A poll takes the ids of every alert it opens at once, so a zone alert is
written naming the event it joins before that event's row is (the event opens
after its zones, as before, and keeps the id it had). The key
`alerts.event_id → alerts.id` may therefore be checked at the end of the
poll's transaction (`SET CONSTRAINTS … DEFERRED` there, issue 14); it is
checked at once everywhere else. (SQLite defers a transaction's keys by
`PRAGMA defer_foreign_keys` whatever the declaration; its table is rebuilt
with the declaration all the same, so the schema is the models'.)
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
    """a zone alert's key to its event may be checked at commit"""
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            "ALTER TABLE alerts ALTER CONSTRAINT fk_alerts_event_id_alerts "
            "DEFERRABLE INITIALLY IMMEDIATE"
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
            initially="IMMEDIATE" if deferrable else None,
        )
