"""Fixtures of the unit tests that run a relay: a relay in front of the shared recording sink."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.sink import RecordingSink
from tests.unit.relays import Relay, make_relay


@pytest.fixture
def relay(tmp_path: Path, sink: RecordingSink) -> Iterator[Relay]:
    running = make_relay(tmp_path, sink)
    yield running
    running.close()
