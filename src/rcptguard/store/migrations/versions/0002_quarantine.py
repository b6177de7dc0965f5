"""The quarantine: held messages, one hold per held recipient, and the audit log of decisions.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-27
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

_STATES = "state IN ('held', 'released', 'corrected', 'cancelled', 'expired')"
_DELIVERY = "delivery IN ('none', 'pending', 'sending', 'delivered', 'failed')"


def upgrade() -> None:
    op.create_table(
        "messages",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("key", sa.String(64), nullable=False, unique=True),
        sa.Column("mail_from", sa.Text, nullable=False),
        sa.Column("content", sa.LargeBinary, nullable=False),
        sa.Column("size", sa.Integer, nullable=False),
        sa.Column("subject", sa.Text, nullable=False),
        sa.Column("message_id_header", sa.Text, nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("client", sa.Text, nullable=False),
    )
    op.create_table(
        "holds",
        sa.Column("id", sa.String(16), primary_key=True),
        sa.Column("message_id", sa.String(32), sa.ForeignKey("messages.id"), nullable=False),
        sa.Column("recipient", sa.Text, nullable=False),
        sa.Column("intended", sa.Text),
        sa.Column("suggestion", sa.Text),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("signals", sa.Text, nullable=False),
        sa.Column("score", sa.Float, nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("decided_at", sa.DateTime(timezone=True)),
        sa.Column("decided_by", sa.Text),
        sa.Column("deliver_to", sa.Text),
        sa.Column("delivery", sa.String(16), nullable=False),
        sa.Column("delivery_attempts", sa.Integer, nullable=False),
        sa.Column("claimed_at", sa.DateTime(timezone=True)),
        sa.Column("delivered_at", sa.DateTime(timezone=True)),
        sa.Column("last_error", sa.Text),
        sa.UniqueConstraint("message_id", "recipient", name="uq_holds_message_recipient"),
        sa.CheckConstraint(_STATES, name="ck_holds_state"),
        sa.CheckConstraint(_DELIVERY, name="ck_holds_delivery"),
    )
    op.create_index("ix_holds_state_created", "holds", ["state", "created_at"])
    op.create_index("ix_holds_delivery", "holds", ["delivery"])
    op.create_table(
        "events",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("hold_id", sa.String(16), sa.ForeignKey("holds.id"), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("actor", sa.Text, nullable=False),
        sa.Column("from_state", sa.String(16), nullable=False),
        sa.Column("to_state", sa.String(16), nullable=False),
        sa.Column("detail", sa.Text, nullable=False),
    )
    op.create_index("ix_events_hold_id", "events", ["hold_id"])


def downgrade() -> None:
    op.drop_index("ix_events_hold_id", table_name="events")
    op.drop_table("events")
    op.drop_index("ix_holds_delivery", table_name="holds")
    op.drop_index("ix_holds_state_created", table_name="holds")
    op.drop_table("holds")
    op.drop_table("messages")
