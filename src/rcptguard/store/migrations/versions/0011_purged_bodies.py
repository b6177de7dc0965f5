"""Retention: `messages.purged_at`, when the retention policy deleted a message's bytes (`Quarantine.purge_bodies`).
The bytes go by setting `content` to b"" rather than NULL: the column stays NOT NULL, so neither SQLite (whose
batch mode would rebuild `messages`, which the foreign keys of `holds` and `links` forbid) nor PostgreSQL has a
table to rewrite. NULL: the bytes are still stored (every message from before this revision).

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("messages") as batch:  # an ALTER TABLE ... ADD COLUMN on SQLite too: no rebuild
        batch.add_column(sa.Column("purged_at", sa.DateTime(timezone=True)))


def downgrade() -> None:
    # The column stays (as in 0008 and 0010): nullable and unread by revision 0010, whose code reads a purged
    # message as empty bytes; dropping it on SQLite would rebuild a table that foreign keys point at.
    pass
