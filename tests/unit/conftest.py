"""Fixtures of the unit tests: a store's URL in the test's folder, a quarantine in it, and a relay in front of
the shared recording sink."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from rcptguard.store import Store
from rcptguard.store.quarantine import Quarantine
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
def quarantine(db_url: str) -> Iterator[Quarantine]:
    store = Store.open(db_url)
    yield Quarantine(store)
    store.close()
