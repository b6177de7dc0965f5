"""The admin list and dashboard with thousands of holds: how long a page takes, against the same page of a small
quarantine, in one process.

    .venv/bin/python bench/bench_admin.py [--holds 5000] [--rounds 15]

Two SQLite stores are filled through the quarantine (messages of five held recipients each, from 20 senders, to
10 domains, spread over 60 days; 40% of the holds decided): a small one of 50 holds (the baseline: one page
holds all of it) and one of `--holds`. Every page is requested through the whole web application (FastAPI's
test client: routing, the admin's password, the store's queries, the template), `--rounds` times; the median
and the slowest are printed, and the median's ratio to the baseline's first page.
"""

from __future__ import annotations

import argparse
import datetime as dt
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parents[1]))
sys.path.insert(0, str(Path(__file__).parents[1] / "src"))

from fastapi.testclient import TestClient
from sqlalchemy import update
from tests.conftest import make_guard
from tests.unit.test_web import ADMIN, LOCAL, basic, build_app, held

from rcptguard.store import Store
from rcptguard.store.links import Links
from rcptguard.store.quarantine import DECISIONS, Quarantine
from rcptguard.store.schema import holds

PER_MESSAGE = 5
DOMAINS = [("army.ml", "army.mil"), ("gmial.com", "gmail.com"), ("raytheon.co", "raytheon.com"),
           ("navy.ml", "navy.mil"), ("outlok.com", "outlook.com"), ("yahooo.com", "yahoo.com"),
           ("example-crop.com", "example-corp.com"), ("usmeridianbank.com", "us.meridianbank.com"),
           ("af.ml", "af.mil"), ("hotmial.com", "hotmail.com")]


def fill(quarantine: Quarantine, count: int, rng: random.Random) -> None:
    """`count` holds (a multiple of PER_MESSAGE), held over the last 60 days, 40% of them decided."""
    now = dt.datetime.now(dt.UTC)
    for n in range(count // PER_MESSAGE):
        sender = f"user{rng.randrange(20)}@example-corp.com"
        recipients = []
        for k in range(PER_MESSAGE):
            typed, meant = DOMAINS[rng.randrange(len(DOMAINS))]
            recipients.append(held(f"person{n}.{k}@{typed}", f"person{n}.{k}@{meant}"))
        content = f"From: {sender}\r\nSubject: report {n}\r\nMessage-ID: <{n}@example-corp.com>\r\n\r\nb\r\n"
        made = quarantine.hold(mail_from=sender, recipients=recipients, content=content.encode(), client="mua")
        created = now - dt.timedelta(minutes=rng.randrange(60 * 24 * 60))
        with quarantine.engine.begin() as connection:
            for hold in made:
                values: dict[str, object] = {"created_at": created}
                if rng.random() < 0.4:
                    values |= {"state": str(rng.choice(DECISIONS)), "decided_by": "bench",
                               "decided_at": created + dt.timedelta(minutes=rng.randrange(1, 6000))}
                connection.execute(update(holds).where(holds.c.id == hold.id).values(**values))


def timed(client: TestClient, path: str, rounds: int) -> tuple[float, float]:
    """Median and slowest milliseconds of GET `path` (200 expected)."""
    times = []
    for _ in range(rounds):
        started = time.perf_counter()
        answer = client.get(path, headers=basic(*ADMIN))
        times.append((time.perf_counter() - started) * 1000)
        assert answer.status_code == 200, (path, answer.status_code, answer.text[:300])
    return statistics.median(times), max(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--holds", type=int, default=5000)
    parser.add_argument("--rounds", type=int, default=15)
    args = parser.parse_args()
    rng = random.Random(7)
    folder = Path(tempfile.mkdtemp(prefix="bench-admin-"))
    clients = {}
    for name, count in (("baseline", 50), ("big", args.holds)):
        store = Store.open(f"sqlite:///{folder / name}.db")
        quarantine = Quarantine(store)
        started = time.perf_counter()
        fill(quarantine, count, rng)
        print(f"{name}: {count} holds made in {time.perf_counter() - started:.1f} s", flush=True)
        app = build_app(quarantine, Links(store), make_guard(("mil",)), 1)
        clients[name] = TestClient(app, client=LOCAL)
    since = (dt.datetime.now(dt.UTC) - dt.timedelta(days=14)).date().isoformat()
    last = -(-args.holds // 50)
    pages = [
        ("baseline", "first page, all states", "/admin?state=all"),
        ("big", "first page, all states", "/admin?state=all"),
        ("big", "first page, held", "/admin"),
        ("big", "middle page, all states", f"/admin?state=all&page={last // 2}"),
        ("big", "last page, all states", f"/admin?state=all&page={last}"),
        ("big", "newest first, 200 a page", "/admin?state=all&order=newest&size=200"),
        ("big", "filter: domain", "/admin?state=all&domain=gmial.com&page=3"),
        ("big", "filter: sender", "/admin?state=all&sender=user7%40example-corp.com&page=2"),
        ("big", "filter: last 14 days, held", f"/admin?since={since}"),
        ("baseline", "dashboard", "/admin/dashboard"),
        ("big", "dashboard", "/admin/dashboard"),
    ]
    base = None
    print("\n| store | page | median (ms) | slowest (ms) | vs baseline first page |\n|---|---|---:|---:|---:|")
    for name, label, path in pages:
        timed(clients[name], path, 2)  # warm: templates compiled, statements cached
        median, slowest = timed(clients[name], path, args.rounds)
        base = base or median
        holds_in = 50 if name == "baseline" else args.holds
        print(f"| {holds_in:,} holds | {label} | {median:.1f} | {slowest:.1f} | {median / base:.2f}× |", flush=True)


if __name__ == "__main__":
    main()
