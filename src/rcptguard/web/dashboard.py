"""What the admin dashboard shows: the holds of the last days by outcome, how long decisions took, the domains
most often held and the senders who slip most, and the store's counts now.

    board = dashboard(quarantine, days=30)       # one read of the period's holds; StoreError when unreachable
    board.per_day["cancelled"][-1], board.decision_times["released"].median, board.top_domains[0]

Computed from the holds (each held recipient is one decision to make) and the store's snapshot (store.stats).
"""

from __future__ import annotations

import datetime as dt
import statistics
from collections import Counter
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError

from rcptguard.store import StoreError, as_utc, error_line, utc_now
from rcptguard.store.quarantine import DECISIONS, STATES, Quarantine
from rcptguard.store.schema import holds, messages
from rcptguard.store.stats import Snapshot, store_snapshot

__all__ = ["DAYS", "TIME_BUCKETS", "Dashboard", "DecisionTimes", "dashboard"]

DAYS = 30
TOP = 10
# How long a decision took, in plain words: the upper bound of each bucket in seconds.
TIME_BUCKETS = (("under 10 minutes", 600), ("under an hour", 3600), ("under a day", 86400),
                ("under a week", 7 * 86400), ("a week or more", None))


@dataclass(frozen=True, slots=True)
class DecisionTimes:
    """How long the holds of one outcome waited for it."""

    count: int
    median: float | None  # seconds
    p90: float | None
    buckets: tuple[int, ...]  # counts per TIME_BUCKETS


@dataclass(frozen=True, slots=True)
class Dashboard:
    days: tuple[dt.date, ...]  # the period, oldest first, today last (UTC)
    per_day: dict[str, list[int]]  # holds made each day, by their state now
    outcomes: dict[str, int]  # holds made in the period, by state
    decision_times: dict[str, DecisionTimes]  # by decision (released, corrected, cancelled, expired)
    top_domains: list[tuple[str, int, str]]  # (typed domain, holds, the domain it resembled most often)
    top_senders: list[tuple[str, int, int]]  # (sender, holds, of which corrected or cancelled: slips they owned)
    snapshot: Snapshot


def dashboard(quarantine: Quarantine, days: int = DAYS, now: dt.datetime | None = None) -> Dashboard:
    """The dashboard of the last `days` days (today included). Raises StoreError."""
    now = now or utc_now()
    first = now.date() - dt.timedelta(days=days - 1)
    since = dt.datetime.combine(first, dt.time(), dt.UTC)
    query = (select(holds.c.state, holds.c.created_at, holds.c.decided_at, holds.c.recipient, holds.c.intended,
                    messages.c.mail_from)
             .select_from(holds.join(messages, holds.c.message_id == messages.c.id))
             .where(holds.c.created_at >= since))
    try:
        with quarantine.engine.connect() as connection:
            rows = list(connection.execute(query))
    except SQLAlchemyError as exc:
        raise StoreError(f"cannot read the quarantine: {error_line(exc)}") from exc
    period = tuple(first + dt.timedelta(days=n) for n in range(days))
    per_day = {str(state): [0] * days for state in STATES}
    waits: dict[str, list[float]] = {str(state): [] for state in DECISIONS}
    domains: Counter[str] = Counter()
    resembled: dict[str, Counter[str]] = {}
    senders: Counter[str] = Counter()
    owned: Counter[str] = Counter()
    for state, created_at, decided, recipient, intended, sender in rows:
        created = as_utc(created_at)
        per_day[state][min((created.date() - first).days, days - 1)] += 1
        if decided is not None and state in waits:
            waits[state].append(max((as_utc(decided) - created).total_seconds(), 0.0))
        domain = recipient.rpartition("@")[2].lower()
        domains[domain] += 1
        resembled.setdefault(domain, Counter())[intended or ""] += 1
        senders[sender or "(no sender)"] += 1
        if state in ("corrected", "cancelled"):
            owned[sender or "(no sender)"] += 1
    return Dashboard(
        days=period, per_day=per_day, outcomes={state: sum(counts) for state, counts in per_day.items()},
        decision_times={state: _times(values) for state, values in waits.items()},
        top_domains=[(domain, count, resembled[domain].most_common(1)[0][0])
                     for domain, count in domains.most_common(TOP)],
        top_senders=[(sender, count, owned[sender]) for sender, count in senders.most_common(TOP)],
        snapshot=store_snapshot(quarantine.store, now))


def _times(values: list[float]) -> DecisionTimes:
    buckets = [0] * len(TIME_BUCKETS)
    for value in values:
        buckets[next(i for i, (_, bound) in enumerate(TIME_BUCKETS) if bound is None or value < bound)] += 1
    if not values:
        return DecisionTimes(0, None, None, tuple(buckets))
    ordered = sorted(values)
    p90 = ordered[min(len(ordered) - 1, int(0.9 * len(ordered)))]
    return DecisionTimes(len(values), statistics.median(ordered), p90, tuple(buckets))
