"""When a deferred delivery is next due: `holds.next_attempt_at`, set when the next hop defers a release, so that
retries back off (1, 2, 4 … minutes, at most an hour) instead of knocking every round. NULL: due at once.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("holds") as batch:
        batch.add_column(sa.Column("next_attempt_at", sa.DateTime(timezone=True)))


def downgrade() -> None:
    # The column stays (as in 0004 and 0006): nullable and unread by revision 0007; dropping it on SQLite would
    # rebuild the table, which the events table's foreign key to holds does not allow.
    pass
