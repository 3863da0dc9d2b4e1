"""official warnings

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-07 19:10:00.000000

CAP messages received from official sources, with what became of each
(`received_warnings`), and the authority an alert relays (`alerts.authority`)
(issue 15).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "0009"
down_revision: str | Sequence[str] | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """official warnings"""
    op.create_table(
        "received_warnings",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("digest", sa.String(length=64), nullable=False),
        sa.Column("source", sa.String(length=500), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("identifier", sa.String(length=255), nullable=True),
        sa.Column("sender", sa.String(length=255), nullable=True),
        sa.Column("sent", sa.DateTime(timezone=True), nullable=True),
        sa.Column("msg_type", sa.String(length=16), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=True),
        sa.Column("references", sa.JSON(), nullable=False),
        sa.Column("infos", sa.JSON(), nullable=False),
        sa.Column("ended_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column(
            "ended_by_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True
        ),
        sa.Column("body", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(
            ["ended_by_id"],
            ["received_warnings.id"],
            name=op.f("fk_received_warnings_ended_by_id_received_warnings"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_received_warnings")),
        sa.UniqueConstraint("digest", name=op.f("uq_received_warnings_digest")),
    )
    op.create_index(
        op.f("ix_received_warnings_state"), "received_warnings", ["state"], unique=False
    )
    op.create_index(
        "ix_received_warnings_sender_identifier",
        "received_warnings",
        ["sender", "identifier"],
        unique=False,
    )
    with op.batch_alter_table("alerts") as batch:
        batch.add_column(
            sa.Column("authority", sa.String(length=200), server_default="", nullable=False)
        )


def downgrade() -> None:
    """Undo: official warnings"""
    with op.batch_alter_table("alerts") as batch:
        batch.drop_column("authority")
    op.drop_index("ix_received_warnings_sender_identifier", table_name="received_warnings")
    op.drop_index(op.f("ix_received_warnings_state"), table_name="received_warnings")
    op.drop_table("received_warnings")
