"""History per sender: the organisation's correspondents gain inbound counts, the domain a near miss resembles and
an administrator's state; (sender, domain), (sender, address) and co-recipient counts; the sources `rcptguard learn`
imported; the verdicts observe mode would have given.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None

_WHEN = sa.DateTime(timezone=True)


def upgrade() -> None:
    with op.batch_alter_table("correspondents") as batch:
        batch.add_column(sa.Column("inbound", sa.BigInteger, nullable=False, server_default="0"))
        batch.add_column(sa.Column("near", sa.String(253)))
        batch.add_column(sa.Column("state", sa.String(16)))
        batch.create_check_constraint("ck_correspondents_state", "state IS NULL OR state IN ('added', 'forgotten')")
    op.create_table(
        "sender_domains",
        sa.Column("sender", sa.String(320), primary_key=True),
        sa.Column("domain", sa.String(253), primary_key=True),
        sa.Column("count", sa.BigInteger, nullable=False),
        sa.Column("first_seen", _WHEN, nullable=False),
        sa.Column("last_seen", _WHEN, nullable=False),
        sa.Column("confirmed_at", _WHEN),
    )
    op.create_index("ix_sender_domains_domain", "sender_domains", ["domain"])
    op.create_index("ix_sender_domains_confirmed_at", "sender_domains", ["confirmed_at"])
    op.create_table(
        "sender_addresses",
        sa.Column("sender", sa.String(320), primary_key=True),
        sa.Column("address", sa.String(320), primary_key=True),
        sa.Column("domain", sa.String(253), nullable=False),
        sa.Column("count", sa.BigInteger, nullable=False),
        sa.Column("first_seen", _WHEN, nullable=False),
        sa.Column("last_seen", _WHEN, nullable=False),
    )
    op.create_index("ix_sender_addresses_address", "sender_addresses", ["address"])
    op.create_index("ix_sender_addresses_sender_domain", "sender_addresses", ["sender", "domain"])
    op.create_table(
        "co_recipients",
        sa.Column("a", sa.String(320), primary_key=True),
        sa.Column("b", sa.String(320), primary_key=True),
        sa.Column("count", sa.BigInteger, nullable=False),
        sa.Column("last_seen", _WHEN, nullable=False),
    )
    op.create_index("ix_co_recipients_b", "co_recipients", ["b"])
    op.create_table(
        "imported_sources",
        sa.Column("fingerprint", sa.String(64), primary_key=True),
        sa.Column("format", sa.String(32), nullable=False),
        sa.Column("path", sa.Text, nullable=False),
        sa.Column("records", sa.BigInteger, nullable=False),
        sa.Column("first_imported", _WHEN, nullable=False),
        sa.Column("last_imported", _WHEN, nullable=False),
    )
    op.create_table(
        "observations",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("at", _WHEN, nullable=False),
        sa.Column("door", sa.String(16), nullable=False),
        sa.Column("sender", sa.Text, nullable=False),
        sa.Column("recipient", sa.Text, nullable=False),
        sa.Column("verdict", sa.String(16), nullable=False),
        sa.Column("score", sa.Float, nullable=False),
        sa.Column("intended", sa.Text),
        sa.Column("signals", sa.Text, nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
    )
    op.create_index("ix_observations_at", "observations", ["at"])


def downgrade() -> None:
    for table in ("observations", "imported_sources", "co_recipients", "sender_addresses", "sender_domains"):
        op.drop_table(table)
    # The correspondents' new columns stay (as in 0008): unread by revision 0011.
