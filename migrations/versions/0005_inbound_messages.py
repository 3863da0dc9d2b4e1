"""inbound messages

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-04 19:40:00.000000

SMS replies handled, by their provider id (Twilio's MessageSid): a signed
reply replayed later is answered as before and changes nothing (issue 13).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "0005"
down_revision: str | Sequence[str] | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """inbound messages"""
    op.create_table(
        "inbound_messages",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("provider_id", sa.String(length=64), nullable=False),
        sa.Column("sender", sa.String(length=32), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("answer", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_inbound_messages")),
        sa.UniqueConstraint("provider_id", name=op.f("uq_inbound_messages_provider_id")),
    )


def downgrade() -> None:
    """Undo: inbound messages"""
    op.drop_table("inbound_messages")
