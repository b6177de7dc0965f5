"""Fixtures of the unit tests: the web tests' guard, and a relay in front of the shared recording sink (the store
and its quarantine and links are tests/conftest.py's)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from rcptguard.guard import Guard
from tests.conftest import make_guard
from tests.support.sink import RecordingSink
from tests.unit.relays import Relay, make_relay


@pytest.fixture
def relay(tmp_path: Path, sink: RecordingSink) -> Iterator[Relay]:
    running = make_relay(tmp_path, sink)
    yield running
    running.close()


@pytest.fixture(scope="module")
def guard() -> Guard:
    """A guard that protects .mil, as the web tests' pages and API see it."""
    return make_guard(("mil",))
