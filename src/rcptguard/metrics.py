"""Prometheus metrics: what each server counts as it works, and the store's state read at each scrape.

    metrics = Metrics("relay", store)                  # a registry of its own, with the store's gauges
    started = time.perf_counter()
    verdict = ...                                      # guard.check, then the DNS consult
    metrics.decided(verdict, time.perf_counter() - started)
    with serving(metrics, "127.0.0.1:9151"):           # GET /metrics in a thread of its own, until the block ends
        ...
    metrics.exposition()                               # the text format, for a server that answers /metrics itself

A door (the policy service, the relay, a milter, a sink) makes one `Metrics` named after itself, counts each
decision with `decided`, hands `dns_answer` to its `World` (`World(settings, observe=metrics.dns_answer)`), and is
served by `serving` on its `metrics_listen` address (`[policyd]`, `[relay]`, ... : off when empty). The web app
answers `GET /metrics` with `exposition()`. Every name is listed in METRIC_NAMES (docs/metrics.md says what each
means; the Grafana dashboard in deploy/ uses only these). Labels take few values: a door, a verdict, a signal
name, an outcome; never an address, a domain or a subject.
"""

from __future__ import annotations

import bisect
import contextlib
import itertools
import logging
import threading
import time
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING

from prometheus_client import (
    CollectorRegistry,
    Counter,
    ProcessCollector,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST, start_http_server
from prometheus_client.registry import Collector

from rcptguard import logs
from rcptguard.model import Action
from rcptguard.settings import invalid
from rcptguard.store import StoreError
from rcptguard.store.history import MirroredHistory
from rcptguard.store.stats import store_snapshot

if TYPE_CHECKING:
    from rcptguard.model import Verdict
    from rcptguard.runtime import Runtime
    from rcptguard.store import Store

__all__ = ["CONTENT_TYPE", "METRIC_NAMES", "Metrics", "MetricsServer", "check_listen", "check_metrics_listen",
           "serving"]

log = logging.getLogger("rcptguard.metrics")
# No `_created` series beside each counter: Prometheus needs none, and they double the text.
disable_created_metrics()  # type: ignore[no-untyped-call]

CONTENT_TYPE = CONTENT_TYPE_LATEST
# Seconds: a check from the index is tens of microseconds; one that waits for the DNS up to its budget (150 ms).
CHECK_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.15, 0.25, 0.5, 1.0)
HOLD_STATE_GAUGE = "rcptguard_quarantine_holds"
METRIC_NAMES = (
    # counted by each server (counters: the exposition adds _total; the histogram _bucket, _sum, _count)
    "rcptguard_decisions_total",
    "rcptguard_signals_total",
    "rcptguard_check_seconds",
    "rcptguard_dns_lookups_total",
    "rcptguard_dns_over_budget_total",
    "rcptguard_forwarded_total",
    "rcptguard_page_decisions_total",
    "rcptguard_sink_answers_total",
    "rcptguard_sink_limits_total",
    # read from the store at each scrape (gauges)
    "rcptguard_store_up",
    HOLD_STATE_GAUGE,
    "rcptguard_quarantine_bytes",
    "rcptguard_quarantine_oldest_held_seconds",
    "rcptguard_releases",
    "rcptguard_notices_owed",
    "rcptguard_outgoing_refused",
    "rcptguard_learned_domains",
    # read from the door's own state at each scrape (gauges; the relay, the milter and the policy service)
    "rcptguard_history_rows",
    "rcptguard_history_read_seconds",
    "rcptguard_history_read_age_seconds",
    "rcptguard_history_feed_age_seconds",
    "rcptguard_index_known_domains",
    "rcptguard_index_build_seconds",
    "rcptguard_index_extensions",
    "rcptguard_index_extend_seconds",
)


class Metrics:
    """The metrics of one server (`door`: policyd, relay, web, ...), in a registry of its own; with `store`, the
    store's gauges too, read when scraped."""

    def __init__(self, door: str, store: Store | None = None) -> None:
        self.door = door
        self.registry = CollectorRegistry(auto_describe=True)
        registry = self.registry
        self._decided = DecisionCollector(door)
        registry.register(self._decided)
        self.dns_lookups = Counter("rcptguard_dns_lookups", "DNS look-ups sent (not answered from the cache), by "
                                   "record type and outcome (answer, nxdomain, timeout, failed)",
                                   ["door", "rdtype", "outcome"], registry=registry)
        self.dns_over_budget = Counter("rcptguard_dns_over_budget", "Checks that decided without a DNS answer "
                                       "because it did not come within the budget", ["door"], registry=registry)
        self.forwarded = Counter("rcptguard_forwarded", "Recipients handed to the next hop, by its answer "
                                 "(accepted, deferred, refused)", ["door", "outcome"], registry=registry)
        self.page_decisions = Counter("rcptguard_page_decisions", "Held recipients decided on the page, by who "
                                      "(sender, admin) and outcome", ["by", "outcome"], registry=registry)
        self.sink_answers = Counter("rcptguard_sink_answers", "Recipients the typo domains' sink answered, by answer "
                                    "(typo, not_served, malformed, tempfail, limited)", ["answer"], registry=registry)
        self.sink_limits = Counter("rcptguard_sink_limits", "Sessions and commands a limit of the sink refused or "
                                   "closed, by limit", ["limit"], registry=registry)
        self._forwarded: dict[str, Counter] = {}
        if store is not None:
            registry.register(StoreCollector(store))

    def watch(self, runtime: Runtime) -> None:
        """Serve the door's own gauges too: its history in memory and its index (RuntimeCollector), and the
        process's memory and CPU (prometheus_client's process_* metrics)."""
        self.registry.register(RuntimeCollector(runtime))
        ProcessCollector(registry=self.registry)

    def decided(self, verdict: Verdict, seconds: float) -> None:
        """Count one recipient's verdict, its signals and how long it took (any thread)."""
        self._decided.count(verdict, seconds)

    def dns_answer(self, rdtype: str, outcome: str) -> None:
        """Count one DNS look-up that went out, by how it ended; `over_budget` for a check that went on without it."""
        if outcome == "over_budget":
            self.dns_over_budget.labels(self.door).inc()
        else:
            self.dns_lookups.labels(self.door, rdtype, outcome).inc()

    def next_hop_answered(self, accepted: int, deferred: int, refused: int) -> None:
        for outcome, count in (("accepted", accepted), ("deferred", deferred), ("refused", refused)):
            if count:
                series = self._forwarded.get(outcome)
                if series is None:  # (prometheus_client's `labels` checks and locks at every call: once each)
                    series = self._forwarded[outcome] = self.forwarded.labels(self.door, outcome)
                series.inc(count)

    def exposition(self) -> bytes:
        """Every metric in Prometheus's text format (CONTENT_TYPE)."""
        return generate_latest(self.registry)


class RuntimeCollector(Collector):
    """Gauges of a door's history in memory and its index, read at each scrape: what grows with the
    organisation's history and slows a door down before anything else does (docs/scale.md)."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime

    def collect(self) -> Iterable[Metric]:
        runtime = self.runtime
        yield GaugeMetricFamily("rcptguard_index_known_domains", "Domains history made known to the index",
                                value=runtime.known_domains)
        yield GaugeMetricFamily("rcptguard_index_build_seconds", "Seconds the last build of the index took",
                                value=runtime.index_seconds)
        yield GaugeMetricFamily("rcptguard_index_extensions", "Times the index was extended with newly known "
                                "domains since its last full build", value=runtime.extensions)
        yield GaugeMetricFamily("rcptguard_index_extend_seconds", "Seconds the last extension of the index took",
                                value=runtime.extend_seconds)
        mirror = runtime.history
        if not isinstance(mirror, MirroredHistory):
            return
        rows = GaugeMetricFamily("rcptguard_history_rows", "Rows of history held in memory, by table",
                                 labels=["table"])
        for table, count in mirror.sizes().items():
            rows.add_metric([table], count)
        yield rows
        yield GaugeMetricFamily("rcptguard_history_read_seconds",
                                "Seconds the last full read of the history took", value=mirror.read_seconds)
        yield GaugeMetricFamily("rcptguard_history_read_age_seconds", "Seconds since the history was last read in "
                                "full", value=time.monotonic() - mirror.loaded)
        yield GaugeMetricFamily("rcptguard_history_feed_age_seconds", "Seconds since the history feed was last "
                                "followed (grows while the store cannot be read)",
                                value=time.monotonic() - runtime.followed)


_ACTION_NAMES = {action: str(action) for action in Action}


class DecisionCollector(Collector):
    """`rcptguard_decisions_total`, `rcptguard_signals_total` and `rcptguard_check_seconds` of one door, counted in
    plain numbers under one lock and turned into metrics when scraped. This runs for every recipient: with
    prometheus_client's own counters and histogram a recipient with five signals took seven locks and as many
    series' look-ups (about a twentieth of the relay's time a message)."""

    def __init__(self, door: str) -> None:
        self.door = door
        self._lock = threading.Lock()
        self._actions: dict[str, int] = {}
        self._signals: dict[str, int] = {}
        self._buckets = [0] * (len(CHECK_BUCKETS) + 1)  # per bucket, not yet cumulative; the last one is +Inf
        self._seconds = 0.0

    def count(self, verdict: Verdict, seconds: float) -> None:
        action, at = _ACTION_NAMES[verdict.action], bisect.bisect_left(CHECK_BUCKETS, seconds)  # le: a bound counts
        with self._lock:
            actions, signals = self._actions, self._signals
            actions[action] = actions.get(action, 0) + 1
            for signal in verdict.signals:
                signals[signal.name] = signals.get(signal.name, 0) + 1
            self._buckets[at] += 1
            self._seconds += seconds

    def describe(self) -> Iterable[Metric]:
        return list(self._families())

    def collect(self) -> Iterable[Metric]:
        with self._lock:
            actions, signals, buckets, seconds = dict(self._actions), dict(self._signals), list(self._buckets), \
                self._seconds
        return self._families(actions, signals, buckets, seconds)

    def _families(self, actions: dict[str, int] | None = None, signals: dict[str, int] | None = None,
                  buckets: list[int] | None = None, seconds: float = 0.0) -> Iterator[Metric]:
        decisions = CounterMetricFamily("rcptguard_decisions", "Recipients decided, by door and verdict",
                                        labels=["door", "verdict"])
        for action, count in (actions or {}).items():
            decisions.add_metric([self.door, action], count)
        yield decisions
        named = CounterMetricFamily("rcptguard_signals", "Signals in the verdicts decided, by door and signal name",
                                    labels=["door", "signal"])
        for name, count in (signals or {}).items():
            named.add_metric([self.door, name], count)
        yield named
        timing = HistogramMetricFamily("rcptguard_check_seconds", "Time to decide one recipient (the engine and the "
                                       "DNS evidence)", labels=["door"])
        if buckets is not None:
            cumulative = list(itertools.accumulate(buckets))
            bounds = [*(repr(bound) for bound in CHECK_BUCKETS), "+Inf"]  # as prometheus_client writes these
            timing.add_metric([self.door], list(zip(bounds, cumulative, strict=True)), seconds)
        yield timing


class StoreCollector(Collector):
    """Gauges of the store's state, read at each scrape (store.stats); `rcptguard_store_up` 0 and nothing else
    when the store cannot be read."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def describe(self) -> Iterable[Metric]:
        return []  # read at each scrape: nothing to read when the collector is registered

    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily("rcptguard_store_up", "1 when the store could be read at this scrape")
        try:
            snapshot = store_snapshot(self.store)
        except StoreError as exc:
            logs.event(log, "store unreadable for metrics", logging.WARNING, error=str(exc))
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        held = GaugeMetricFamily(HOLD_STATE_GAUGE, "Held recipients in the quarantine, by state", labels=["state"])
        for state, count in snapshot.holds.items():
            held.add_metric([state], count)
        yield held
        yield GaugeMetricFamily("rcptguard_quarantine_bytes", "Bytes of held messages still kept (not purged)",
                                value=snapshot.stored_bytes)
        yield GaugeMetricFamily("rcptguard_quarantine_oldest_held_seconds",
                                "Age of the oldest hold waiting for a decision (0 when none)",
                                value=snapshot.oldest_held_seconds)
        releases = GaugeMetricFamily("rcptguard_releases", "Released and corrected holds by delivery (deferred: "
                                     "put off by the next hop at least once, to be tried again)", labels=["delivery"])
        for state, count in snapshot.releases.items():
            releases.add_metric([state], count)
        yield releases
        yield GaugeMetricFamily("rcptguard_notices_owed", "Notices to senders and reports stored but not yet sent",
                                value=snapshot.notices_owed)
        yield GaugeMetricFamily("rcptguard_outgoing_refused", "Notices and reports the next hop refused for good "
                                "(kept 7 days)", value=snapshot.outgoing_refused)
        yield GaugeMetricFamily("rcptguard_learned_domains", "Domains mail was let through to (correspondents)",
                                value=snapshot.learned_domains)


def check_listen(value: str) -> tuple[str, int]:
    """HOST:PORT (or [IPv6]:PORT) of a metrics server; ValueError when it is not one."""
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdecimal() or not 0 < int(port) < 65536:
        raise ValueError(f"expected HOST:PORT, got {value!r}")
    return host.strip("[]"), int(port)


def check_metrics_listen(value: str) -> None:
    """The check of a door's `metrics_listen` key: empty (off) or HOST:PORT; ConfigError keyed metrics_listen."""
    if value:
        try:
            check_listen(value)
        except ValueError as exc:
            raise invalid("metrics_listen", str(exc)) from None


class MetricsServer:
    """`GET /metrics` (any path, in fact) for one server's metrics, answered by a daemon thread of its own."""

    def __init__(self, metrics: Metrics, listen: str) -> None:
        """Listen on `listen` (HOST:PORT) and serve; OSError when it cannot listen there."""
        host, port = check_listen(listen)
        self._server, self._thread = start_http_server(port, host, registry=metrics.registry)
        self.port = int(self._server.server_port)
        logs.event(log, "metrics listening", door=metrics.door, host=host, port=self.port)

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)


@contextlib.contextmanager
def serving(metrics: Metrics, listen: str) -> Iterator[int | None]:
    """`metrics` served on `listen` while the block runs; the port (None when `listen` is empty: not served).
    OSError when it cannot listen."""
    if not listen:
        yield None
        return
    server = MetricsServer(metrics, listen)
    try:
        yield server.port
    finally:
        server.close()
