"""The held notice of each message, at most one: `held_notices` is keyed by message id, so two relays on one
store that hold the same message insert-or-nothing and only one of them tells the sender. Messages whose sender
was told before this revision get their earliest link as the notice's.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "held_notices",
        sa.Column("message_id", sa.String(32), sa.ForeignKey("messages.id"), primary_key=True),
        sa.Column("link_id", sa.String(64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("link_id", name="uq_held_notices_link"),
    )
    op.execute(
        "INSERT INTO held_notices (message_id, link_id, created_at) "
        "SELECT l.message_id, l.id, l.created_at FROM links l WHERE NOT EXISTS ("
        "SELECT 1 FROM links e WHERE e.message_id = l.message_id "
        "AND (e.created_at < l.created_at OR (e.created_at = l.created_at AND e.id < l.id)))"
    )


def downgrade() -> None:
    op.drop_table("held_notices")
