"""Benchmark of the streaming command, `rcptguard check --format jsonl -`, end to end.

Writes a known-domains file and a stream of recipients (the `stream` mix of bench_check: Zipf-skewed
repeats of 60% known, 25% unknown and 15% mistyped domains), then times, alternately:

* the command on an empty stdin (start-up: imports, policy, index build);
* the command on the whole stream, its answers to a file (jsonl);
* the engine alone on the same stream in this process (`Guard.check`, nothing read or written): the baseline.

Addresses/s end to end counts the command's whole run; "after start-up" subtracts the empty run.

    python bench/bench_stream.py                       # 10,000 known, 100,000 addresses, 3 rounds
    python bench/bench_stream.py --known 100000 --addresses 200000 --rounds 1
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))


def _run(command: list[str], stdin: Path, stdout: Path) -> float:
    with stdin.open("rb") as source, stdout.open("wb") as sink:
        start = time.perf_counter()
        subprocess.run(command, stdin=source, stdout=sink, check=False)
        return time.perf_counter() - start


def _engine(known: Path, lines: list[str]) -> float:
    from rcptguard.guard import Guard
    from rcptguard.policy import load_policy

    guard = Guard(load_policy().with_domains((), (), (known,)))
    start = time.perf_counter()
    for line in lines:
        guard.check(line)
    return time.perf_counter() - start


def main() -> None:
    import corpus

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--known", type=int, default=10_000)
    parser.add_argument("--addresses", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    command = [sys.executable, "-c", "from rcptguard.cli import main; main()",
               "check", "--format", "jsonl"]
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        known = corpus.domains(args.known)
        (folder / "known.txt").write_text("\n".join(known) + "\n", encoding="utf-8")
        lines = corpus.stream(known, args.addresses)
        (folder / "stream.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
        (folder / "empty.txt").write_bytes(b"")
        command += ["--known-file", str(folder / "known.txt"), "-"]
        empty, whole, engine = [], [], []
        for _ in range(args.rounds):
            empty.append(_run(command, folder / "empty.txt", folder / "out.jsonl"))
            whole.append(_run(command, folder / "stream.txt", folder / "out.jsonl"))
            engine.append(_engine(folder / "known.txt", lines))
        answers = sum(1 for _ in (folder / "out.jsonl").open("rb"))
    assert answers == args.addresses, f"{answers} answers for {args.addresses} addresses"
    start_up, run, alone = statistics.median(empty), statistics.median(whole), statistics.median(engine)
    print("| known | addresses | start-up (s) | whole run (s) | addresses/s end to end | after start-up "
          "| engine alone | after start-up / engine |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|")
    print(f"| {args.known:,} | {args.addresses:,} | {start_up:.2f} | {run:.2f} | {args.addresses / run:,.0f} "
          f"| {args.addresses / (run - start_up):,.0f} | {args.addresses / alone:,.0f} "
          f"| {alone / (run - start_up):.2f} |")


if __name__ == "__main__":
    main()
