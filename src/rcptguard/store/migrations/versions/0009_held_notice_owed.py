"""The held notice is owed like every other notice (`holds.notice`, kind "held"), set in the transaction that
holds the message and sent by the outbox: `held_notices`, the insert-or-nothing slot with which a relay sent the
notice itself before answering, is no longer read and goes. Messages held before this revision were told then.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.drop_table("held_notices")


def downgrade() -> None:
    op.create_table(
        "held_notices",
        sa.Column("message_id", sa.String(32), sa.ForeignKey("messages.id"), primary_key=True),
        sa.Column("link_id", sa.String(64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("link_id", name="uq_held_notices_link"),
    )
