"""Expiry notices owed to senders: `holds.notice` is pending until the sender was told (sent) or the notice
was refused for good (refused); NULL when none is owed.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("holds") as batch:
        batch.add_column(sa.Column("notice", sa.String(16)))
    op.create_index("ix_holds_notice", "holds", ["notice"])


def downgrade() -> None:
    op.drop_index("ix_holds_notice", table_name="holds")
    with op.batch_alter_table("holds") as batch:
        batch.drop_column("notice")
