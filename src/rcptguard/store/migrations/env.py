"""Alembic environment: migrations run on the connection the Store hands over."""

from __future__ import annotations

from alembic import context

from rcptguard.store.schema import metadata

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run migrations through rcptguard.store.Store.migrate()")
context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
