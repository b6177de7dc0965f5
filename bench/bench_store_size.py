"""Bytes per row of the store's tables on PostgreSQL, and what reading the history into a door costs.

A private PostgreSQL cluster (tests/integration/pg.py: Debian's server, a temp dir, loopback) gets, through the
store's own APIs: `--messages` messages of history (`StoreHistory.record`, batches of 2,000; senders from a pool
of 2,000, one to five recipients drawn from `corpus.stream`, whose every address is distinct: the worst case for
the per-address tables), `--holds` held messages (`Quarantine.hold`, one recipient, a 4 KB body of base64 that
does not compress, the sender's notice owed) and `--observations` observe-mode rows (`StoreHistory.observe`).
Then, per table: rows and `pg_total_relation_size` (heap, indexes, TOAST), and the time and resident memory of
`StoreHistory.load()`, which every door runs at start and every `[history] reload_seconds`.

    PYTHONPATH=src:. python bench/bench_store_size.py          # 200,000 messages, 2,000 holds, 20,000 observations
    PYTHONPATH=src:. python bench/bench_store_size.py --messages 20000 --holds 200
"""

from __future__ import annotations

import argparse
import base64
import datetime as dt
import gc
import json
import random
import sys
import time
from pathlib import Path

from sqlalchemy import text

sys.path.insert(0, str(Path(__file__).parent))

from tests.integration.pg import PostgresServer

import corpus
from rcptguard.history.batch import Batch, Counted
from rcptguard.store import Store
from rcptguard.store.history import Observation, StoreHistory
from rcptguard.store.quarantine import HeldRecipient, Quarantine

TABLES = ["correspondents", "sender_domains", "sender_addresses", "co_recipients", "co_places", "observations",
          "messages", "holds", "events", "links"]
NOW = dt.datetime(2026, 12, 1, tzinfo=dt.UTC)


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


def sizes(store: Store) -> dict[str, tuple[int, int]]:
    """Rows and total bytes (heap, indexes, TOAST) of each table."""
    out = {}
    with store.engine.connect() as connection:
        for table in TABLES:  # names from the list above, never from input
            rows = connection.execute(text(f"SELECT count(*) FROM {table}")).scalar_one()
            size = connection.execute(text(f"SELECT pg_total_relation_size('{table}')")).scalar_one()
            out[table] = (int(rows), int(size))
    return out


def fill(store: Store, messages: int, holds: int, observed: int, rng: random.Random) -> float:
    """The store filled as the module docstring says; the seconds the history took to write."""
    history = StoreHistory(store)
    addresses = corpus.stream(corpus.domains(20_000), messages * 2)
    senders = [f"{corpus.name(rng)}.{corpus.name(rng)}@example-corp.com" for _ in range(2_000)]
    start = time.perf_counter()
    for first in range(0, messages, 2_000):
        batch = Batch()
        for i in range(first, min(first + 2_000, messages)):
            picked = [addresses[(i * 7 + j) % len(addresses)] for j in range(rng.choice([1, 1, 1, 1, 2, 2, 3, 5]))]
            batch.message(rng.choice(senders), [Counted(a, a.rpartition("@")[2]) for a in dict.fromkeys(picked)],
                          NOW + dt.timedelta(seconds=i))
        history.record(batch)
    written = time.perf_counter() - start
    quarantine = Quarantine(store)
    body = (b"From: a@example-corp.com\r\nTo: b@gmial.com\r\nSubject: quarterly figures\r\n\r\n"
            + base64.encodebytes(rng.randbytes(3000)).replace(b"\n", b"\r\n"))
    for i in range(holds):
        held = HeldRecipient(address=f"user{i}@gmial.com", intended=f"user{i}@gmail.com",
                             suggestion=f"user{i}@gmail.com", reason="gmial.com looks like a slip of gmail.com",
                             signals=[{"name": "TYPO_SWAP", "score": 6.0,
                                       "evidence": {"typed": "gmial.com", "likely": "gmail.com"}}], score=6.0)
        quarantine.hold(mail_from=rng.choice(senders), recipients=[held], content=body + str(i).encode(),
                        client="mua", notify=True)
    history.observe([Observation(NOW, "relay", rng.choice(senders), addresses[i], "hold", 6.0, "gmail.com",
                                 "TYPO_SWAP,FIRST_CONTACT", "gmial.com looks like a slip of gmail.com")
                     for i in range(observed)])
    return written


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--messages", type=int, default=200_000)
    parser.add_argument("--holds", type=int, default=2_000)
    parser.add_argument("--observations", type=int, default=20_000)
    args = parser.parse_args()
    with PostgresServer() as server:
        store = Store.open(server.create_database("sizes"))
        empty = sizes(store)
        written = fill(store, args.messages, args.holds, args.observations, random.Random(5))
        full = sizes(store)
        gc.collect()
        before, start, cpu = rss_mb(), time.perf_counter(), time.process_time()
        mirror = StoreHistory(store).load()  # kept until its memory is read
        load = {"seconds": round(time.perf_counter() - start, 1), "cpu_seconds": round(time.process_time() - cpu, 1),
                "rss_mb": round(rss_mb() - before), "domains": len(mirror.domains)}
        store.engine.dispose()
    tables = {}
    for table, (rows, size) in full.items():
        grown = size - empty[table][1]
        tables[table] = {"rows": rows, "bytes": grown, "bytes_per_row": round(grown / rows) if rows else None}
    history_rows = sum(tables[t]["rows"] or 0 for t in TABLES[:4])
    print(json.dumps({"messages": args.messages, "history_write_seconds": round(written, 1),
                      "history_rows": history_rows, "load": load, "tables": tables}, indent=1))


if __name__ == "__main__":
    main()
