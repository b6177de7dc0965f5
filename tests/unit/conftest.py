"""Fixtures of the unit tests: a store in the test's folder with its quarantine and links, the web tests' guard,
and a relay in front of the shared recording sink."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from rcptguard.guard import Guard
from rcptguard.store import Store
from rcptguard.store.links import Links
from rcptguard.store.quarantine import Quarantine
from tests.conftest import make_guard
from tests.support.sink import RecordingSink
from tests.unit.relays import Relay, make_relay


@pytest.fixture
def relay(tmp_path: Path, sink: RecordingSink) -> Iterator[Relay]:
    running = make_relay(tmp_path, sink)
    yield running
    running.close()


@pytest.fixture
def db_url(tmp_path: Path) -> str:
    """A SQLite store in the test's own folder (created by the first Store.open)."""
    return f"sqlite:///{tmp_path / 'store.db'}"


@pytest.fixture
def store(db_url: str) -> Iterator[Store]:
    """The store at `db_url`, migrated, closed after the test."""
    opened = Store.open(db_url)
    yield opened
    opened.close()


@pytest.fixture
def quarantine(store: Store) -> Quarantine:
    return Quarantine(store)


@pytest.fixture
def links(store: Store) -> Links:
    return Links(store)


@pytest.fixture(scope="module")
def guard() -> Guard:
    """A guard that protects .mil, as the web tests' pages and API see it."""
    return make_guard(("mil",))
