"""bench/bench_index.py on tiny sizes: each size measured in its own process, the table's ratio against 100k."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BENCH = ROOT / "bench" / "bench_index.py"


def run(*args: str) -> str:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")])}
    return subprocess.run([sys.executable, str(BENCH), *args], capture_output=True, text=True, check=True,
                          env=env).stdout


def test_each_size_reports_its_build_memory_and_rate() -> None:
    """Two sizes give two rows, each with a build time, the index's memory and a positive checking rate."""
    rows = json.loads(run("--sizes", "200", "400", "--queries", "300", "--add", "50", "--json"))
    assert [r["known"] for r in rows] == [200, 400]
    for row in rows:
        assert row["build_s"] > 0
        assert row["build_cpu_s"] > 0
        assert row["rss_mb"] >= row["index_mb"] >= 0
        assert row["peak_rss_mb"] >= row["rss_mb"]
        assert row["cpu_checks_per_s"] > 0
        assert row["checks_per_s"] > 0
        assert row["added"] == 50
        assert row["extend_s"] > 0
        assert row["extended_vs_built"] > 0


def test_the_table_compares_each_row_with_the_100k_row() -> None:
    """The last column is each row's CPU checks/s over the 100k row's; without a 100k row it says n/a."""
    sys.path.insert(0, str(BENCH.parent))
    import bench_index  # bench/ is not a package: found on the path just added

    row = {"build_s": 1.0, "index_mb": 10, "rss_mb": 50, "peak_rss_mb": 60, "checks_per_s": 900}
    rows = [{**row, "known": 10_000, "cpu_checks_per_s": 1_000}, {**row, "known": 100_000, "cpu_checks_per_s": 4_000}]
    def column(text: str, line: int, name: str) -> str:
        lines = [[cell.strip() for cell in row.strip("|").split("|")] for row in text.splitlines()]
        return lines[line][lines[0].index(name)]

    table = bench_index.table(rows)
    assert column(table, 2, "vs 100k") == "0.25"
    assert column(table, 3, "vs 100k") == "1.00"
    assert column(bench_index.table(rows[:1]), 2, "vs 100k") == "n/a"
    assert column(table, 2, "extend (s)") == "n/a (+0)"  # a row measured before extensions were
