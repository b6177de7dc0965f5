"""Prometheus metrics: each door's counts after known traffic (real SMTP sessions and policy requests), the store's
gauges, scraped over HTTP and read with prometheus_client's own parser; the web's /metrics and who may read it."""

from __future__ import annotations

import datetime as dt
import json
import re
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx2
import pytest
from fastapi.testclient import TestClient
from prometheus_client import CollectorRegistry, Histogram, generate_latest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.utils import floatToGoString
from sqlalchemy import update

from rcptguard.gateways.policyd import PolicyService, PolicySettings
from rcptguard.gateways.relay import RelaySettings
from rcptguard.guard import Guard
from rcptguard.metrics import CHECK_BUCKETS, METRIC_NAMES, Metrics, serving
from rcptguard.model import Action, Signal, Verdict
from rcptguard.policy import ConfigError
from rcptguard.store import Store
from rcptguard.store.links import Links
from rcptguard.store.quarantine import Quarantine
from rcptguard.store.schema import holds
from rcptguard.web.settings import WebSettings
from tests.holds import gmial_recipient
from tests.support.processes import free_port
from tests.support.sink import RecordingSink
from tests.unit.relays import BODY, make_relay, send
from tests.unit.test_policyd import Server, guard_factory, rcpt, request
from tests.unit.test_web import LOCAL, build_app

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def parse(text: str) -> Samples:
    """Every sample of an exposition, keyed by its name and sorted labels; the parser refuses malformed text."""
    return {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(text) for sample in family.samples}


def scrape(port: int) -> Samples:
    answer = httpx2.get(f"http://127.0.0.1:{port}/metrics", timeout=10)
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/plain")
    return parse(answer.text)


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def verdicts(samples: Samples, door: str) -> dict[str, float]:
    """The door's decisions by verdict."""
    return {verdict: value(samples, "rcptguard_decisions_total", door=door, verdict=verdict)
            for verdict in ("pass", "warn", "hold", "reject")}


@pytest.fixture
def relay_metrics(tmp_path: Path, sink: RecordingSink) -> Iterator[tuple[int, Store]]:
    """A relay (mil and example-corp.com protected, gmail.com known, .ml refused by a force rule) with its metrics
    served on a loopback port, after one message to a pass, a hold and a refused recipient, and one more pass."""
    relay = make_relay(tmp_path, sink, force_ml=True)
    with serving(relay.handler.metrics, f"127.0.0.1:{free_port()}") as port:
        assert port is not None
        code, _, refused = send(relay, ["crew@navy.mil", "j.doe@gmial.com", "x@army.ml"])
        assert code == 250
        assert list(refused) == ["x@army.ml"]
        assert send(relay, ["ops@navy.mil"])[0] == 250
        time.sleep(0.3)  # the learned counts are written every flush_interval (0.05 s)
        try:
            yield port, relay.quarantine.store
        finally:
            relay.close()


def test_the_relay_shows_its_history_and_index(relay_metrics: tuple[int, Store]) -> None:
    """The door's own gauges: the history it holds in memory (navy.mil learned from the two messages let through,
    by one sender), the age of its last full read and of its last look at the feed (a flush is 0.05 s here), its
    index, and the process's memory."""
    port, _ = relay_metrics
    samples = scrape(port)
    assert value(samples, "rcptguard_history_rows", table="correspondents") == 1
    assert value(samples, "rcptguard_history_rows", table="sender_domains") == 1
    assert value(samples, "rcptguard_history_rows", table="sender_addresses") == 2
    assert 0 < value(samples, "rcptguard_history_read_seconds") < 10
    assert value(samples, "rcptguard_history_read_age_seconds") >= value(samples, "rcptguard_history_feed_age_seconds")
    assert value(samples, "rcptguard_history_feed_age_seconds") < 5
    assert value(samples, "rcptguard_index_build_seconds") > 0
    assert value(samples, "rcptguard_index_known_domains") >= 0
    assert value(samples, "rcptguard_index_extensions") == 0
    assert value(samples, "rcptguard_index_extend_seconds") == 0
    assert value(samples, "process_resident_memory_bytes") > 10_000_000


def test_decisions_counted_from_many_threads_as_prometheus_would_count_them() -> None:
    """`decided` from eight threads at once loses no count; the histogram's buckets are cumulative and a time on a
    bound counts in that bound's bucket (`le`), as prometheus_client's own Histogram counts it."""
    metrics = Metrics("relay")
    registry = CollectorRegistry()
    reference = Histogram("reference_seconds", "", buckets=CHECK_BUCKETS, registry=registry)
    held = Verdict("a@gmial.com", "gmial.com", Action.HOLD, 5.0,
                   (Signal("TRANSPOSITION", {}), Signal("FIRST_CONTACT", {})), "held")
    times = [0.0001, 0.00025, 0.0003, 0.15, 2.0, 0.00001]

    def decide() -> None:
        for n in range(3000):
            metrics.decided(held, times[n % len(times)])

    workers = [threading.Thread(target=decide) for _ in range(8)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    for n in range(8 * 3000):
        reference.observe(times[n % len(times)])
    samples = parse(metrics.exposition().decode())
    assert value(samples, "rcptguard_decisions_total", door="relay", verdict="hold") == 24_000
    assert value(samples, "rcptguard_signals_total", door="relay", signal="TRANSPOSITION") == 24_000
    assert value(samples, "rcptguard_signals_total", door="relay", signal="FIRST_CONTACT") == 24_000
    expected = parse(generate_latest(registry).decode())
    for bound in (*CHECK_BUCKETS, "+Inf"):
        le = bound if isinstance(bound, str) else floatToGoString(bound)
        assert value(samples, "rcptguard_check_seconds_bucket", door="relay", le=le) == \
            value(expected, "reference_seconds_bucket", le=le), le
    assert value(samples, "rcptguard_check_seconds_count", door="relay") == 24_000
    assert value(samples, "rcptguard_check_seconds_sum", door="relay") == pytest.approx(
        value(expected, "reference_seconds_sum"))


def test_the_relay_counts_each_decision_by_verdict_and_signal(relay_metrics: tuple[int, Store]) -> None:
    """Four recipients decided at RCPT: two pass, one held (a transposition of gmail.com), one refused (.ml);
    each check timed in the histogram, every signal of every verdict counted, the next hop's answers counted."""
    port, _ = relay_metrics
    samples = scrape(port)
    assert verdicts(samples, "relay") == {"pass": 2, "warn": 0, "hold": 1, "reject": 1}
    assert value(samples, "rcptguard_signals_total", door="relay", signal="TRANSPOSITION") == 1
    assert value(samples, "rcptguard_signals_total", door="relay", signal="TLD_SLIP") == 1
    assert value(samples, "rcptguard_check_seconds_count", door="relay") == 4
    assert value(samples, "rcptguard_check_seconds_bucket", door="relay", le="+Inf") == 4
    assert 0 < value(samples, "rcptguard_check_seconds_sum", door="relay") < 4
    assert value(samples, "rcptguard_forwarded_total", door="relay", outcome="accepted") == 2


def test_the_relay_serves_the_stores_gauges(relay_metrics: tuple[int, Store]) -> None:
    """The quarantine's size (holds by state, bytes kept) and age, releases by delivery, notices owed (the held
    message's notice, until it is sent) and the domains learned (navy.mil), as the store has them."""
    port, store = relay_metrics
    with store.engine.begin() as connection:  # the hold was made an hour ago
        connection.execute(update(holds).values(created_at=dt.datetime.now(dt.UTC) - dt.timedelta(hours=1)))
    samples = scrape(port)
    assert value(samples, "rcptguard_store_up") == 1
    assert value(samples, "rcptguard_quarantine_holds", state="held") == 1
    assert value(samples, "rcptguard_quarantine_holds", state="released") == 0
    assert value(samples, "rcptguard_quarantine_bytes") == len(BODY)
    assert 3595 < value(samples, "rcptguard_quarantine_oldest_held_seconds") < 3700
    assert value(samples, "rcptguard_learned_domains") == 1
    assert {"rcptguard_releases", "rcptguard_notices_owed", "rcptguard_outgoing_refused"} <= {
        name for name, _ in samples}


def test_release_states_and_notices_owed(store: Store, sink: RecordingSink) -> None:
    """A released hold the next hop put off is `deferred`, a refused one `failed`; a hold's notice owed and not
    sent is counted until it goes."""
    quarantine = Quarantine(store)
    made = [quarantine.hold(mail_from="alice@example.org", recipients=[gmial_recipient()], client="mua",
                            content=f"Subject: {n}\r\n\r\nbody {n}\r\n".encode(), notify=n == 0)[0] for n in range(3)]
    for hold in made[1:]:
        quarantine.decide(hold.id, "released", "alice")
    with store.engine.begin() as connection:
        connection.execute(update(holds).where(holds.c.id == made[1].id).values(delivery_attempts=2))
        connection.execute(update(holds).where(holds.c.id == made[2].id).values(delivery="failed"))
    samples = parse(Metrics("test", store).exposition().decode())
    assert value(samples, "rcptguard_releases", delivery="deferred") == 1
    assert value(samples, "rcptguard_releases", delivery="failed") == 1
    assert value(samples, "rcptguard_releases", delivery="pending") == 0
    assert value(samples, "rcptguard_notices_owed") == 1
    assert value(samples, "rcptguard_quarantine_holds", state="held") == 1


def test_a_store_that_cannot_be_read_says_so(tmp_path: Path) -> None:
    """With the store gone, a scrape still answers: rcptguard_store_up 0, and the counters."""
    store = Store.open(f"sqlite:///{tmp_path / 'gone.db'}")
    metrics = Metrics("relay", store)
    (tmp_path / "gone.db").unlink()
    store.close()
    samples = parse(metrics.exposition().decode())
    assert value(samples, "rcptguard_store_up") == 0
    assert not any(name == "rcptguard_quarantine_holds" for name, _ in samples)


def test_the_policy_service_counts_its_decisions(tmp_path: Path) -> None:
    """Policy requests over a socket: a pass, two holds (army.ml, gmial.com) and a malformed address (reject),
    counted by verdict and signal; requests that decide nothing (END-OF-MESSAGE) are not counted."""
    store = Store.open(f"sqlite:///{tmp_path / 'store.db'}")
    server = Server(PolicyService(guard_factory(), store, PolicySettings(flush_interval=0.05)))
    try:
        with serving(server.service.metrics, f"127.0.0.1:{free_port()}") as port:
            assert port is not None
            answers = request(server.port, rcpt("a@navy.mil"), rcpt("b@army.ml"), rcpt("c@gmial.com"),
                              rcpt("a@@b"), {**rcpt("a@navy.mil"), "protocol_state": "END-OF-MESSAGE"})
            assert [answer.split(" ")[0] for answer in answers] == ["DUNNO", "REJECT", "REJECT", "REJECT", "DUNNO"]
            samples = scrape(port)
    finally:
        server.close()
    assert verdicts(samples, "policyd") == {"pass": 1, "warn": 0, "hold": 2, "reject": 1}
    assert value(samples, "rcptguard_signals_total", door="policyd", signal="MALFORMED_ADDRESS") == 1
    assert value(samples, "rcptguard_signals_total", door="policyd", signal="TLD_SLIP") == 1
    assert value(samples, "rcptguard_check_seconds_count", door="policyd") == 4


def test_metrics_listen_is_checked() -> None:
    """`metrics_listen` is empty (off) or HOST:PORT, in [relay] and [policyd] alike."""
    assert RelaySettings.from_section({"metrics_listen": "127.0.0.1:9151"}, "relay").metrics_listen
    assert PolicySettings.from_section({"metrics_listen": "[::1]:9150"}, "policyd").metrics_listen
    for cls, where in ((RelaySettings, "relay"), (PolicySettings, "policyd")):
        with pytest.raises(ConfigError, match=rf"{where}\.metrics_listen: expected HOST:PORT"):
            cls.from_section({"metrics_listen": "9151"}, where)


def test_every_exposed_name_is_listed(relay_metrics: tuple[int, Store]) -> None:
    """METRIC_NAMES, which the docs and the Grafana dashboard are checked against, names every family served."""
    port, _ = relay_metrics
    text = httpx2.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
    served = {family.name for family in text_string_to_metric_families(text)}
    listed = {name.removesuffix("_total") for name in METRIC_NAMES}
    assert {name for name in served if name.startswith("rcptguard_")} <= listed
    assert listed - {"rcptguard_page_decisions", "rcptguard_dns_lookups", "rcptguard_dns_over_budget",
                     "rcptguard_sink_answers", "rcptguard_sink_limits"} <= served


def web_client(store: Store, guard: Guard, sink: RecordingSink, client: tuple[str, int],
               **settings: str) -> TestClient:
    app = build_app(Quarantine(store), Links(store), guard, sink.port,
                    settings=WebSettings(base_url="https://guard.example.org", **settings))  # type: ignore[arg-type]
    return TestClient(app, client=client)


def test_web_metrics_for_this_machine_only_by_default(store: Store, pentagon: Guard, sink: RecordingSink) -> None:
    """GET /metrics on the page: served to a loopback client, 403 to any other by default; "open" serves
    everyone, "off" nobody. The API's checks are counted as the web's decisions."""
    local = web_client(store, pentagon, sink, LOCAL)
    assert local.post("/v1/check", json={"recipients": ["j.doe@army.ml", "a@navy.mil"]}).status_code == 200
    answer = local.get("/metrics")
    assert answer.status_code == 200
    samples = parse(answer.text)
    assert value(samples, "rcptguard_decisions_total", door="web", verdict="hold") == 1
    assert value(samples, "rcptguard_decisions_total", door="web", verdict="pass") == 1
    assert value(samples, "rcptguard_store_up") == 1
    assert web_client(store, pentagon, sink, ("192.0.2.7", 4000)).get("/metrics").status_code == 403
    assert web_client(store, pentagon, sink, ("192.0.2.7", 4000), metrics="open").get("/metrics").status_code == 200
    assert web_client(store, pentagon, sink, LOCAL, metrics="off").get("/metrics").status_code == 404


GRAFANA = Path(__file__).parents[2] / "docs" / "grafana" / "rcptguard.json"


def test_the_grafana_dashboard_uses_only_metrics_that_exist() -> None:
    """docs/grafana/rcptguard.json is well-formed JSON whose every panel queries Prometheus, and every name it
    queries is one the servers expose (a counter's _total, a histogram's _bucket, _sum and _count included)."""
    dashboard = json.loads(GRAFANA.read_text(encoding="utf-8"))
    exposed = set(METRIC_NAMES) | {f"rcptguard_check_seconds_{part}" for part in ("bucket", "sum", "count")}
    used: set[str] = set()
    for panel in dashboard["panels"]:
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            used |= set(re.findall(r"\brcptguard_[a-z_]+", target["expr"]))
    assert used <= exposed, used - exposed
    assert used >= {"rcptguard_decisions_total", "rcptguard_signals_total", "rcptguard_check_seconds_bucket",
                    "rcptguard_quarantine_holds", "rcptguard_quarantine_oldest_held_seconds", "rcptguard_releases",
                    "rcptguard_notices_owed", "rcptguard_dns_lookups_total", "rcptguard_learned_domains"}
    assert dashboard["__inputs"][0]["pluginId"] == "prometheus"
