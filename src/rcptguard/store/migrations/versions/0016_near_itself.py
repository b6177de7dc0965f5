"""A near miss that names the domain itself is none: a recipient warned of, or held and released, as a wrong person
at the right domain had marked that domain as a slip of itself, and a correspondent written to by one person stopped
counting (rcptguard.history.rules.near_for). Those marks are lifted; the history feed tells the doors to read history
again.

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-03
"""

from __future__ import annotations

import datetime as dt

import idna
import sqlalchemy as sa
from alembic import op

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None


def upgrade() -> None:
    repair(op.get_bind())


def downgrade() -> None:
    pass  # the marks were wrong: nothing to put back


_correspondents = sa.table("correspondents", sa.column("domain", sa.String), sa.column("near", sa.String))
_feed = sa.table("history_feed", sa.column("at", sa.DateTime(timezone=True)), sa.column("origin", sa.String),
                 sa.column("batch", sa.Text))


def repair(connection: sa.Connection) -> int:
    """Lift every near miss that names its own domain (in either form); the number lifted. When there were any, an
    entry of the history feed (no batch: "read everything again") makes running doors take it in."""
    c = _correspondents.c
    rows = connection.execute(sa.select(c.domain, c.near).where(c.near.is_not(None))).all()
    itself = [domain for domain, near in rows if near == domain or _ascii(near) == domain]
    for domain in itself:
        connection.execute(sa.update(_correspondents).where(c.domain == domain).values(near=None))
    if itself:
        connection.execute(sa.insert(_feed).values(at=dt.datetime.now(dt.UTC), origin=None, batch=None))
    return len(itself)


def _ascii(name: str) -> str | None:
    try:
        return idna.encode(name, uts46=True).decode("ascii")
    except idna.IDNAError:
        return None
