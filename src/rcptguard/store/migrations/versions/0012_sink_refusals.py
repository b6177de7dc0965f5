"""The typo domains' sink: `sink_refusals`, one row per refused recipient (when, the sending server and its HELO,
the sender's domain, the typo domain and the intended one); never any part of a message.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "sink_refusals",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("client_ip", sa.String(45), nullable=False),
        sa.Column("helo", sa.String(255), nullable=False),
        sa.Column("sender_domain", sa.String(253), nullable=False),
        sa.Column("sender_local", sa.String(64)),
        sa.Column("typo_domain", sa.String(253), nullable=False),
        sa.Column("intended_domain", sa.String(253), nullable=False),
    )
    op.create_index("ix_sink_refusals_at", "sink_refusals", ["at"])


def downgrade() -> None:
    op.drop_index("ix_sink_refusals_at", table_name="sink_refusals")
    op.drop_table("sink_refusals")
