"""What the client's envelope asked for, kept with each held recipient (`holds.envelope`, JSON): DSN's RET and
ENVID (RFC 3461), the recipient's NOTIFY and ORCPT, BODY, and the original client XFORWARD named, so that a
release says them again to the next hop and a report can name them. NULL: nothing was asked for (and every
hold from before this revision).

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("holds") as batch:
        batch.add_column(sa.Column("envelope", sa.Text))


def downgrade() -> None:
    # The column stays (as in 0008): nullable and unread by revision 0009; dropping it on SQLite would rebuild
    # the table, which the events table's foreign key to holds does not allow.
    pass
