"""Benchmark of `rcptguard learn` on a large Postfix log: lines per second, peak memory, and the counts checked.

A generated log of --lines lines (default 1,000,000: smtpd, cleanup, qmgr, one smtp line per recipient, removed;
recipients at 5,000 domains with a power-law spread, a quarter of deliveries deferred) is imported into a fresh
SQLite store by the `learn` command's importer (the readers, sorting by direction, gathering a message's lines,
the guard's near-miss judgement of each new domain, batched writes). The per-domain message counts in the store are
then checked against the counts the generator kept while writing the log. Baseline, same process, same file: the
archive reader alone (`PostfixLog.records()`, drained), which `learn` cannot beat.

Peak RSS is read after the import and again after a second import of a log twice as long: it must not grow with
the file (the readers stream; `learn` writes every 200,000 records).

    python bench/bench_learn.py [--lines 1000000]
"""

from __future__ import annotations

import argparse
import datetime as dt
import random
import resource
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parents[1]))

from tests.support.archives import Delivery, postfix_lines

from rcptguard.guard import Guard
from rcptguard.history.learn import Importer
from rcptguard.policy import load_policy
from rcptguard.sources import open_source
from rcptguard.sources.postfix import PostfixLog
from rcptguard.store import Store
from rcptguard.store.history import StoreHistory

OWN = "corp.example"


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def write_log(path: Path, lines: int, seed: int = 11) -> Counter[str]:
    """A Postfix log of about `lines` lines; the messages delivered to each domain, counted while writing."""
    rng = random.Random(seed)
    domains = [f"partner{i}.com" for i in range(5000)]
    weights = [1 / (i + 1) for i in range(len(domains))]
    when = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    expected: Counter[str] = Counter()
    written = number = 0
    with path.open("w") as out:
        while written < lines:
            batch = []
            for _ in range(1000):
                number += 1
                picked = rng.choices(domains, weights, k=rng.choice((1, 1, 1, 2, 3)))
                rcpts = [(f"p{rng.randrange(50)}@{d}", "deferred" if rng.random() < 0.25 else "sent") for d in picked]
                rcpts = list(dict(rcpts).items())
                expected.update({a.rsplit("@", 1)[1] for a, status in rcpts if status == "sent"})
                batch.append(Delivery(f"4Q{number:09X}", f"user{rng.randrange(800)}@{OWN}", rcpts,
                                      when + dt.timedelta(seconds=number), f"{number}@{OWN}"))
            text = postfix_lines(batch)
            written += len(text)
            out.write("\n".join(text) + "\n")
    return expected


def run(lines: int) -> None:
    with tempfile.TemporaryDirectory() as folder:
        log = Path(folder) / "mail.log"
        expected = write_log(log, lines)
        count = sum(1 for _ in log.open())
        start = time.perf_counter()
        reader = PostfixLog(log, [log])
        records = sum(1 for _ in reader.records())
        reader_s = time.perf_counter() - start

        store = Store.open(f"sqlite:///{Path(folder) / 'h.db'}")
        history = StoreHistory(store)
        guard = Guard(load_policy())
        importer = Importer(history, guard, [OWN])
        start, cpu = time.perf_counter(), time.process_time()
        done = importer.run(open_source(log))
        learn_s, learn_cpu = time.perf_counter() - start, time.process_time() - cpu
        rss = _rss_mb()
        got = {c.domain: c.facts.org.count for c in history.correspondents()}
        mismatched = sum(1 for d, n in expected.items() if got.get(d) != n) + len(set(got) - set(expected))
        print(f"log: {count:,} lines, {records:,} deliveries; reader alone {count / reader_s:,.0f} lines/s")
        print(f"learn: {count / learn_s:,.0f} lines/s ({learn_s:.1f}s, {done.outbound:,} messages, "
              f"{len(got):,} domains): {reader_s / learn_s:.2f}x the reader alone; peak RSS {rss:.0f} MB")
        print(f"learn's CPU time: {learn_cpu:.1f}s ({count / learn_cpu:,.0f} lines a CPU second; the rest of the "
              f"{learn_s:.1f}s is waiting: for the disk, or for a core on a shared machine)")
        print(f"counts checked against the generator's: {len(expected):,} domains, {mismatched} mismatched")

        longer = Path(folder) / "mail2.log"
        write_log(longer, 2 * lines, seed=12)
        Importer(history, guard, [OWN]).run(open_source(longer))
        print(f"a log twice as long next: peak RSS {_rss_mb():.0f} MB")
        if mismatched:
            sys.exit(1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, default=1_000_000)
    run(parser.parse_args().lines)


if __name__ == "__main__":
    main()
