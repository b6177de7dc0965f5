"""PostgreSQL: a command that only reads never migrates an empty database into a store."""

from __future__ import annotations

import pytest
from sqlalchemy import create_engine, inspect

from rcptguard.store import Store, StoreNotFound


def test_an_empty_database_is_refused_not_migrated(postgres_url: str) -> None:
    """Store.open(url, create=False) on an empty database raises StoreNotFound and creates no table in it."""
    with pytest.raises(StoreNotFound, match="has no rcptguard store in it"):
        Store.open(postgres_url, create=False)
    engine = create_engine(postgres_url)
    try:
        assert inspect(engine).get_table_names() == []
    finally:
        engine.dispose()


def test_a_migrated_database_opens_without_create(postgres_url: str) -> None:
    """Once a server has created the store, Store.open(url, create=False) opens it."""
    Store.open(postgres_url).close()
    store = Store.open(postgres_url, create=False)
    try:
        assert store.learned() == {}
    finally:
        store.close()
