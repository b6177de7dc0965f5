"""The history feed: what changed in the history, for the other instances of the doors to follow
(`MirroredHistory.follow`) between their full reads.

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "history_feed",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("origin", sa.String(64)),
        sa.Column("batch", sa.Text),
    )
    op.create_index("ix_history_feed_at", "history_feed", ["at"])


def downgrade() -> None:
    op.drop_table("history_feed")
