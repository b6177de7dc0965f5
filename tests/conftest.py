from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from rcptguard.guard import Guard
from rcptguard.policy import load_policy
from rcptguard.store import Store
from rcptguard.store.links import Links
from rcptguard.store.quarantine import Quarantine
from tests.support.sink import RecordingSink

DATA = Path(__file__).parent / "data"


@pytest.fixture(scope="session")
def data_dir() -> Path:
    return DATA


def make_guard(protect: tuple[str, ...] = (), known: tuple[str, ...] = (), **learned: int) -> Guard:
    return Guard(load_policy().with_domains(protect, known), learned=learned or None)


@pytest.fixture(scope="session")
def pentagon() -> Guard:
    return make_guard(("mil",), ("whitehouse.gov", "treasury.gov", "gmail.com", "hotmail.com"))


@pytest.fixture
def sink() -> Iterator[RecordingSink]:
    """A started recording SMTP sink on 127.0.0.1 (the next hop of most tests), stopped after the test."""
    with RecordingSink() as started:
        yield started


@pytest.fixture
def db_url(tmp_path: Path) -> str:
    """A SQLite store in the test's own folder (created by the first Store.open); the PostgreSQL tests override
    it with a database of their own server, and every fixture below follows."""
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
