"""The identity of a delivery's claim: `holds.claim_id` (one per claim; an outcome is recorded only under the
claim that sent) and `holds.claimed_by` (the worker, "host pid N"). NULL on claims made before this revision.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("holds") as batch:
        batch.add_column(sa.Column("claim_id", sa.String(32)))
        batch.add_column(sa.Column("claimed_by", sa.Text))


def downgrade() -> None:
    # The columns stay (as in 0004): nullable, unread by revision 0005, and dropping a column on SQLite rebuilds
    # the table, which the events table's foreign key to holds does not allow.
    pass
