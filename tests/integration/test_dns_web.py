"""The world's evidence at the web API's door (`POST /v1/check`) against a real NSD on 127.0.0.1."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from rcptguard.delivery import NextHop
from rcptguard.model import Action
from rcptguard.store import Store
from rcptguard.store.links import Links
from rcptguard.store.quarantine import Quarantine
from rcptguard.web import create_app
from rcptguard.web.settings import WebSettings
from rcptguard.world import SyncWorld
from tests.integration.dns_server import NsdServer, lagging
from tests.integration.test_dns_doors import ZONES, dns_at
from tests.unit.relays import policy_factory

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def nsd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NsdServer]:
    with NsdServer(tmp_path_factory.mktemp("nsd-web"), ZONES) as server:
        yield server


def client(tmp_path: Path, world: SyncWorld | None) -> TestClient:
    store = Store.open(f"sqlite:///{tmp_path / 'web.db'}")
    guard = policy_factory()({})
    app = create_app(quarantine=Quarantine(store), links=Links(store), guard_provider=lambda: guard,
                     next_hop=NextHop("127.0.0.1", 9, timeout=1), secret=b"0123456789abcdef-test-secret",
                     settings=WebSettings(), world=world)
    return TestClient(app, client=("127.0.0.1", 50123))


def verdicts(web: TestClient, recipients: list[str]) -> list[dict[str, object]]:
    response = web.post("/v1/check", json={"recipients": recipients})
    assert response.status_code == 200, response.text
    out: list[dict[str, object]] = response.json()["verdicts"]
    return out


def test_the_api_weighs_the_dns_as_the_other_doors(tmp_path: Path, nsd: NsdServer) -> None:
    """With a world: army.ml (no such domain) is held and the reason says it would bounce; example-corp.co,
    whose mail goes to example-corp.com's own server, is capped at warn; a plain pass asks nothing."""
    with SyncWorld(dns_at(nsd.port)) as world:
        army, sibling, fine = verdicts(client(tmp_path, world), ["x@army.ml", "x@example-corp.co", "x@army.mil"])
    assert army["verdict"] == str(Action.HOLD)
    assert "would bounce" in str(army["reason"])
    assert "DNS_NO_DOMAIN" in {s["name"] for s in army["signals"]}  # type: ignore[attr-defined]
    assert sibling["verdict"] == str(Action.WARN)
    assert "DNS_SAME_OPERATOR" in {s["name"] for s in sibling["signals"]}  # type: ignore[attr-defined]
    assert fine["verdict"] == str(Action.PASS)
    assert not any(str(s["name"]).startswith("DNS_") for s in fine["signals"])  # type: ignore[attr-defined]


def test_without_a_world_the_api_decides_as_the_engine(tmp_path: Path) -> None:
    """No world ([dns] enabled = false): the engine's verdict, no DNS signal."""
    (sibling,) = verdicts(client(tmp_path, None), ["x@example-corp.co"])
    assert sibling["verdict"] == str(Action.HOLD)
    assert not any(str(s["name"]).startswith("DNS_") for s in sibling["signals"])  # type: ignore[attr-defined]


def test_a_silent_dns_server_costs_a_batch_about_one_budget(tmp_path: Path) -> None:
    """Twenty likely slips against a server that never answers: the look-ups are made at once, so the request
    takes about one budget (150 ms), not twenty; every verdict is the engine's with DNS_UNKNOWN."""
    recipients = [f"x{i}@army.ml" for i in range(10)] + [f"y{i}@navy.ml" for i in range(10)]
    with lagging(None) as server, SyncWorld(dns_at(server.port, budget_ms=150)) as world:
        web = client(tmp_path, world)
        started = time.perf_counter()
        found = verdicts(web, recipients)
        elapsed = time.perf_counter() - started
    assert 0.14 <= elapsed < 1.0, elapsed
    assert [v["verdict"] for v in found] == [str(Action.HOLD)] * 20
    assert all("DNS_UNKNOWN" in {s["name"] for s in v["signals"]} for v in found)  # type: ignore[attr-defined]
