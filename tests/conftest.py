from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from rcptguard.guard import Guard
from rcptguard.policy import load_policy
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
