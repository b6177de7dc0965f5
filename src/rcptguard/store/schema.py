"""The tables of the store. Changes go through an alembic migration in `migrations/versions/`."""

from __future__ import annotations

from sqlalchemy import BigInteger, Column, DateTime, MetaData, String, Table

metadata = MetaData()

correspondents = Table(
    "correspondents",
    metadata,
    Column("domain", String(253), primary_key=True),  # A-label form
    Column("count", BigInteger, nullable=False),  # messages let through to it
    Column("first_seen", DateTime(timezone=True), nullable=False),
    Column("last_seen", DateTime(timezone=True), nullable=False),
)
