"""Who filled each place in a group of recipients: the odd recipient out who takes somebody else's place
(`ODD_SUBSTITUTE`).

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "co_places",
        sa.Column("rest", sa.String(32), primary_key=True),
        sa.Column("address", sa.String(320), primary_key=True),
        sa.Column("count", sa.BigInteger, nullable=False),
        sa.Column("last_seen", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("co_places")
