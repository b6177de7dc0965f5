"""Benchmark of `Guard.check` against a brute-force baseline, with 1k, 10k and 100k known domains.

Each size runs in a fresh process so that its peak RSS is its own. In that process: the index build time,
checks/s (caches cleared first, one core; `cpu_checks_per_s` by the process's CPU time, steadier than the
clock on a shared machine), and an honest brute-force baseline on a sample of the same
recipients: rapidfuzz `process.extractOne(domain, known, scorer=Levenshtein.distance, score_cutoff=2)`,
the nearest known domain within two edits, which is what "did you mean" checkers do (C++ inside, and the
cut-off lets it skip most of the work per domain). Mixes of recipients:

* realistic: 60% known domains, 25% unknown ones, 15% slips of known ones, nearly all distinct (cold);
* unknown:   every recipient at a distinct domain the index does not know (the worst case);
* stream:    the realistic mix drawn with a Zipf-like skew, as mail traffic repeats domains (warm).

    python bench/bench_check.py                 # all sizes, prints a markdown table
    python bench/bench_check.py --sizes 100000 --json
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

sys.path.insert(0, str(Path(__file__).parent))

if TYPE_CHECKING:
    from rcptguard.guard import Guard


def timed_checks(guard: Guard, addresses: list[str]) -> tuple[float, float]:
    """Wall and CPU seconds of `guard.check` over `addresses`, from cold caches."""
    from rcptguard.domains import normalize_domain
    from rcptguard.typos.skeleton import skeleton

    normalize_domain.cache_clear()
    skeleton.cache_clear()
    guard.judge.cache_clear()
    guard.index._entry.cache_clear()  # noqa: SLF001 - the entries made by earlier checks
    start, cpu = time.perf_counter(), time.process_time()
    for address in addresses:
        guard.check(address)
    return time.perf_counter() - start, time.process_time() - cpu


def measure(size: int, queries: int, baseline_queries: int, mix: str) -> dict[str, float]:
    from rapidfuzz import process
    from rapidfuzz.distance import Levenshtein

    import corpus
    from rcptguard.guard import Guard
    from rcptguard.policy import load_policy

    known = corpus.domains(size)
    if mix == "unknown":
        addresses = [f"user{i}@{d}" for i, d in enumerate(corpus.domains(queries, seed=99))]
    elif mix == "stream":
        addresses = corpus.stream(known, queries)
    else:
        addresses = corpus.recipients(known, queries)
    start = time.perf_counter()
    guard = Guard(load_policy().with_domains(protect=("mil", "example-corp.com"), known=tuple(known)))
    build = time.perf_counter() - start
    elapsed, cpu = timed_checks(guard, addresses)
    sample = [a.rpartition("@")[2] for a in addresses[:baseline_queries]]
    start = time.perf_counter()
    for domain in sample:
        process.extractOne(domain, known, scorer=Levenshtein.distance, score_cutoff=2)
    baseline = time.perf_counter() - start
    rate = len(addresses) / elapsed
    baseline_rate = len(sample) / baseline
    return {
        "cpu_checks_per_s": round(len(addresses) / cpu),
        "known": size,
        "mix": mix,
        "build_s": round(build, 3),
        "checks_per_s": round(rate),
        "us_per_check": round(1e6 / rate, 1),
        "baseline_checks_per_s": round(baseline_rate, 1),
        "baseline_ms_per_check": round(1e3 / baseline_rate, 2),
        "speedup": round(rate / baseline_rate),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[1_000, 10_000, 100_000])
    parser.add_argument("--queries", type=int, default=20_000)
    parser.add_argument("--baseline-queries", type=int, default=1000)
    parser.add_argument("--mix", choices=["realistic", "unknown", "stream"], nargs="+",
                        default=["realistic", "unknown", "stream"])
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(measure(args.one, args.queries, args.baseline_queries, args.mix[0])))
        return
    rows = []
    for mix in args.mix:
        for size in args.sizes:
            out = subprocess.run(
                [sys.executable, __file__, "--one", str(size), "--queries", str(args.queries),
                 "--baseline-queries", str(args.baseline_queries), "--mix", mix],
                capture_output=True, text=True, check=True)
            rows.append(json.loads(out.stdout))
    if args.json:
        print(json.dumps(rows, indent=2))
        return
    print("| known | mix | build (s) | checks/s | µs/check | Levenshtein ≤ 2 brute force checks/s | speedup |"
          " peak RSS (MB) |")
    print("|---:|---|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['known']:,} | {r['mix']} | {r['build_s']} | {r['checks_per_s']:,} | {r['us_per_check']} | "
              f"{r['baseline_checks_per_s']} | {r['speedup']:,}× | {r['peak_rss_mb']} |")


if __name__ == "__main__":
    main()
