"""Fixtures of the unit tests: the web tests' guard, a fake clock and clients to the web application, and a relay
in front of the shared recording sink (the store and its quarantine and links are tests/conftest.py's)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from fastapi.testclient import TestClient

from rcptguard.guard import Guard
from rcptguard.store.links import Links
from rcptguard.store.quarantine import Quarantine
from rcptguard.web.settings import WebSettings
from tests.conftest import make_guard
from tests.support.sink import RecordingSink
from tests.unit.relays import Relay, make_relay
from tests.unit.test_web import BASE_URL, LOCAL, build_app

if TYPE_CHECKING:
    from fastapi import FastAPI

MakeClient = Callable[..., TestClient]


@pytest.fixture
def relay(tmp_path: Path, sink: RecordingSink) -> Iterator[Relay]:
    running = make_relay(tmp_path, sink)
    yield running
    running.close()


@pytest.fixture(scope="module")
def guard() -> Guard:
    """A guard that protects .mil, as the web tests' pages and API see it."""
    return make_guard(("mil",))


class FakeClock:
    """Monotonic seconds that only move when the test says so."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def make_client(quarantine: Quarantine, links: Links, guard: Guard, sink: RecordingSink,
                clock: FakeClock) -> MakeClient:
    """Clients from an address (with these headers, to this base URL) to the application with these settings (one
    application per settings), timed by `clock`."""
    apps: dict[WebSettings, FastAPI] = {}

    def make(client: tuple[str, int] = LOCAL, headers: dict[str, str] | None = None,
             url: str = "http://testserver", **settings: object) -> TestClient:
        web = WebSettings(**{"base_url": BASE_URL, **settings})
        if web not in apps:
            apps[web] = build_app(quarantine, links, guard, sink.port, settings=web, clock=clock)
        return TestClient(apps[web], follow_redirects=False, client=client, headers=headers, base_url=url)

    return make
