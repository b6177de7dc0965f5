"""Notices owed to senders (a hold expired; a released message could not be delivered): `holds.notice` is
pending until a worker takes it (sending, at notice_claimed_at) and settles it: sent, refused or skipped.
NULL when none is owed.

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
        batch.add_column(sa.Column("notice_claimed_at", sa.DateTime(timezone=True)))
    op.create_index("ix_holds_notice", "holds", ["notice"])


def downgrade() -> None:
    # The two columns stay: they are nullable and revision 0003 never reads them, and dropping a column on
    # SQLite rebuilds the table, which the events table's foreign key to holds does not allow.
    op.drop_index("ix_holds_notice", table_name="holds")
