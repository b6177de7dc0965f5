"""Everything the guard sends goes through the outbox. The held notice is owed like every other notice
(`holds.notice`, kind "held"), set in the transaction that holds the message: `held_notices`, the
insert-or-nothing slot with which a relay sent the notice itself before answering, goes (messages held before
this revision were told then). Mail that no hold carries (warnings, the policy service's notices, delivery
reports) is written to `outgoing` before the door answers, and sent from there.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

STATES = ("pending", "sending", "sent", "refused", "skipped")  # schema.Notice as of this revision


def upgrade() -> None:
    op.drop_table("held_notices")
    op.create_table(
        "outgoing",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("mail_from", sa.Text, nullable=False),
        sa.Column("recipient", sa.Text, nullable=False),
        sa.Column("content", sa.LargeBinary, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True)),
        sa.Column("claimed_at", sa.DateTime(timezone=True)),
        sa.Column("claim_id", sa.String(32)),
        sa.Column("settled_at", sa.DateTime(timezone=True)),
        sa.Column("last_error", sa.Text),
        sa.CheckConstraint("state IN (" + ", ".join(f"'{s}'" for s in STATES) + ")", name="ck_outgoing_state"),
    )
    op.create_index("ix_outgoing_state_due", "outgoing", ["state", "next_attempt_at"])


def downgrade() -> None:
    op.drop_index("ix_outgoing_state_due", "outgoing")
    op.drop_table("outgoing")
    op.create_table(
        "held_notices",
        sa.Column("message_id", sa.String(32), sa.ForeignKey("messages.id"), primary_key=True),
        sa.Column("link_id", sa.String(64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("link_id", name="uq_held_notices_link"),
    )
