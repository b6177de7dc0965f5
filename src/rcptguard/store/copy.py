"""Copying a whole store to another database: how a deployment moves from SQLite to PostgreSQL.

    counts = copy_store(Store.open(sqlite_url, create=False), Store.open(postgresql_url))   # {"holds": 5000, ...}

Both stores are at this version's newest schema (Store.open migrates them); the target must be empty. Every table
of the schema is copied in the order its foreign keys need (`metadata.sorted_tables`: a table added by a later
migration is copied with no change here), a thousand rows at a time, in one transaction on the target: a copy
that fails leaves the target as empty as it was. Afterwards every table's row count is compared, and on
PostgreSQL the id sequences (events.id) are moved past the copied ids. Stop every service writing to the source
first: rows written during the copy are not in it.
"""

from __future__ import annotations

from sqlalchemy import Connection, func, insert, select, text
from sqlalchemy.exc import SQLAlchemyError

from rcptguard.store import Store, StoreError, error_line
from rcptguard.store.schema import metadata

__all__ = ["BATCH", "copy_store"]

BATCH = 1000


def copy_store(source: Store, target: Store, batch: int = BATCH) -> dict[str, int]:
    """Copy every row of `source` into the empty `target`; the rows copied per table. StoreError when the target
    is not empty, when either cannot be read or written, or when the counts differ afterwards."""
    copied: dict[str, int] = {}
    try:
        with source.engine.connect() as reading, target.engine.begin() as writing:
            for table in metadata.sorted_tables:
                if writing.execute(select(func.count()).select_from(table)).scalar_one():
                    raise StoreError(f"the target store is not empty: its table {table.name} has rows; copy into "
                                     "a new, empty database")
            for table in metadata.sorted_tables:
                copied[table.name] = 0
                rows = reading.execution_options(stream_results=True).execute(select(table)).mappings()
                for chunk in rows.partitions(batch):
                    writing.execute(insert(table), [dict(row) for row in chunk])
                    copied[table.name] += len(chunk)
            _check_counts(writing, copied)
            if writing.dialect.name == "postgresql":
                _move_sequences(writing)
    except SQLAlchemyError as exc:
        raise StoreError(f"the copy failed, the target is unchanged: {error_line(exc)}") from exc
    return copied


def _check_counts(writing: Connection, copied: dict[str, int]) -> None:
    for table in metadata.sorted_tables:
        found = writing.execute(select(func.count()).select_from(table)).scalar_one()
        if found != copied[table.name]:
            raise StoreError(f"{table.name}: {copied[table.name]} rows copied but {found} in the target")


def _move_sequences(writing: Connection) -> None:
    """Each serial id column's sequence past the largest id copied, so that the next row gets a new one."""
    for table in metadata.sorted_tables:
        for column in table.primary_key.columns:
            if column.autoincrement is True or (column.autoincrement == "auto" and column.type.python_type is int):
                following = writing.execute(select(func.coalesce(func.max(column), 0) + 1)).scalar_one()
                writing.execute(text("SELECT setval(pg_get_serial_sequence(:table, :column), :value, false)"),
                                {"table": table.name, "column": column.name, "value": following})
