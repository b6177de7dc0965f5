"""The detection index at 10k, 100k and 1M known domains: build time, memory, checks/s.

Each size runs in a fresh process, so that its resident memory is its own. In that process: `size`
realistic known domains (`corpus.domains`), a `Guard` built as `bench_check.py` builds it (`mil` and one own
domain protected, the known domains passed in the policy, providers and learned domains as the defaults
give them), then 20,000 recipients of `corpus.stream` (the realistic 60/25/15 mix, Zipf-skewed as mail
repeats its correspondents) checked once with every cache cleared first, on one core. Reported:

* build (s): the clock time of `Guard(...)`, and the CPU time of the process during it (steadier when the
  machine is shared);
* index (MB): resident memory (VmRSS) after the build minus before it, the domain list already in memory;
* peak (MB): the process's peak resident memory (ru_maxrss), the build's transient tables included;
* checks/s: by CPU time of the process (steadier on a shared machine) and by the clock;
* vs 100k: the CPU checks/s of the row against the 100k row of the same run (the baseline);
* extend: then `--add` more domains are learned, as a door learns them between builds (`Guard.extended`): its
  clock time, the memory it added (with the built guard still held, as a door holds it until the swap), and the
  CPU checks/s of the extended guard against the built one (its tables are the built one's plus dictionaries of
  the additions), in five alternating passes of each with the garbage collector paused, medians.

    python bench/bench_index.py                       # 10k, 100k, 1M (about a minute, 1.2 GB at 1M)
    python bench/bench_index.py --sizes 10000 100000  # quick
    python bench/bench_index.py --json
"""

from __future__ import annotations

import argparse
import gc
import json
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

BASELINE = 100_000
ROUNDS = 5  # alternating passes of the built and the extended guard


def rss_mb() -> float:
    """The resident memory of this process now, in MB (VmRSS of /proc/self/status)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


def measure(size: int, queries: int, add: int = 1000) -> dict[str, float]:
    """Build a guard over `size` known domains and time `queries` checks of a realistic stream."""
    import corpus
    from bench_check import timed_checks
    from rcptguard.guard import Guard
    from rcptguard.policy import load_policy

    known = corpus.domains(size)
    addresses = corpus.stream(known, queries)
    policy = load_policy().with_domains(protect=("mil", "example-corp.com"), known=tuple(known))
    before = rss_mb()
    start, start_cpu = time.perf_counter(), time.process_time()
    guard = Guard(policy)
    build, build_cpu = time.perf_counter() - start, time.process_time() - start_cpu
    index = rss_mb() - before
    elapsed, cpu = timed_checks(guard, addresses)
    have = set(known)
    learned = {d: 5 for d in corpus.domains(size + 2 * add) if d not in have}
    learned = dict(list(learned.items())[:add])
    before_extend = rss_mb()
    start = time.perf_counter()
    extended = guard.extended(learned)
    extend = time.perf_counter() - start
    extend_mb = rss_mb() - before_extend  # both guards held: a door holds the old one until the swap
    built_cpu, extended_cpu = [], []
    gc.collect()
    gc.disable()  # a full collection lands on whichever pass crosses its threshold, in step with the alternation
    try:
        for _ in range(ROUNDS):  # alternating, medians: one pass is at the machine's mercy
            built_cpu.append(timed_checks(guard, addresses)[1])
            extended_cpu.append(timed_checks(extended, addresses)[1])
    finally:
        gc.enable()
    return {
        "known": size,
        "build_s": round(build, 2),
        "build_cpu_s": round(build_cpu, 2),
        "index_mb": round(index),
        "rss_mb": round(rss_mb()),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
        "cpu_checks_per_s": round(len(addresses) / cpu),
        "checks_per_s": round(len(addresses) / elapsed),
        "added": len(learned),
        "extend_s": round(extend, 3),
        "extend_mb": round(extend_mb),
        "extended_vs_built": round(statistics.median(built_cpu) / statistics.median(extended_cpu), 2),
    }


def table(rows: list[dict[str, float]]) -> str:
    """A markdown table of the rows, each row's CPU checks/s as a ratio of the 100k row's (if measured)."""
    base = next((r["cpu_checks_per_s"] for r in rows if r["known"] == BASELINE), None)
    header = ["known", "build (s)", "build CPU (s)", "index (MB)", "RSS after (MB)", "peak RSS (MB)", "checks/s (CPU)",
              "checks/s (clock)", "vs 100k", "extend (s)", "extend (MB)", "extended vs built"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---:|" * len(header)]
    for r in rows:
        ratio = f"{r['cpu_checks_per_s'] / base:.2f}" if base else "n/a"
        cells = [f"{int(r['known']):,}", str(r["build_s"]), str(r.get("build_cpu_s", "n/a")),
                 f"{int(r['index_mb']):,}", f"{int(r['rss_mb']):,}", f"{int(r['peak_rss_mb']):,}",
                 f"{int(r['cpu_checks_per_s']):,}", f"{int(r['checks_per_s']):,}", ratio,
                 f"{r.get('extend_s', 'n/a')} (+{int(r.get('added', 0)):,})", str(r.get("extend_mb", "n/a")),
                 str(r.get("extended_vs_built", "n/a"))]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--queries", type=int, default=20_000)
    parser.add_argument("--add", type=int, default=1000, help="domains learned after the build (extend)")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(measure(args.one, args.queries, args.add)))
        return
    rows = []
    for size in args.sizes:
        out = subprocess.run([sys.executable, __file__, "--one", str(size), "--queries", str(args.queries),
                              "--add", str(args.add)],
                             capture_output=True, text=True, check=True)
        rows.append(json.loads(out.stdout))
    print(json.dumps(rows, indent=2) if args.json else table(rows))


if __name__ == "__main__":
    main()
