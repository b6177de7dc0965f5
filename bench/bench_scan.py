"""Benchmark of `rcptguard scan` and of the sensitivity scanner, on 20 KB messages.

1. Header-only scanning: `run_scan` with `content=False` over a generated mbox of 20 KB messages (2% of them to
   lookalike domains), with a process pool of `--jobs` workers (default: every core), timed end to end (the pool's
   start, reading, judging every recipient, writing the findings). Baseline, same process, same messages: the
   standard library's header-block parse plus address extraction on one core (`BytesHeaderParser(compat32)` and
   `getaddresses` over To/Cc, the messages already split in memory). The issue asks for at least 10,000
   messages/s on this 2-core machine.
2. The sensitivity scanner: `scan_message` on one core over the same messages (text parts; a fifth of them carry
   something to find), against the same baseline. The issue asks for at least 2,000 messages/s per core.

Peak RSS of the scan: this process and its largest worker, taken before the baseline loads the messages.

    python bench/bench_scan.py [--messages 40000] [--jobs 2]
"""

from __future__ import annotations

import argparse
import datetime as dt
import email.parser
import email.policy
import email.utils
import os
import random
import resource
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parents[1]))

from tests.support.archives import Sent, mbox_bytes

from rcptguard.audit.scan import ScanOptions, run_scan
from rcptguard.content import scan_message
from rcptguard.policy import load_policy

SENSITIVE = ["Employee SSN: 536-22-8726\n", "CUI\nThe schedule is attached.\n", "password: Tr0ub4dor&3\n",
             "Flight AF 1234 departs 14 Mar 2026 from CDG, gate 32.\n"]


def messages(count: int, first: int = 0) -> list[bytes]:
    rng = random.Random(5 + first)
    filler = ("Please find the figures for the quarter below, and tell me what you think of them. " * 3 + "\n") * 75
    out = []
    for number in range(first, first + count):
        domain = "army.ml" if number % 50 == 0 else rng.choice(["army.mil", "navy.mil", "partner.com", "gmail.com"])
        extra = SENSITIVE[number % 4] if number % 5 == 0 else ""
        to = (f"user{rng.randrange(900)}@{domain}",) + (("team@corp.example",) if number % 3 == 0 else ())
        out.append(Sent(f"Sender {number % 40} <s{number % 40}@corp.example>", to,
                        dt.datetime(2025, 1, 1, tzinfo=dt.UTC) + dt.timedelta(minutes=number),
                        message_id=f"{number}@corp.example", body=filler + extra).build())
    return out


def baseline(raws: list[bytes]) -> float:
    parser = email.parser.BytesHeaderParser(policy=email.policy.compat32)
    start = time.perf_counter()
    for raw in raws:
        headers = parser.parsebytes(raw)
        email.utils.getaddresses(headers.get_all("to", []) + headers.get_all("cc", []))
    return len(raws) / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--messages", type=int, default=40_000)
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        archive = Path(folder) / "sent.mbox"
        with archive.open("wb") as out:
            for first in range(0, args.messages, 1000):
                out.write(mbox_bytes(messages(min(1000, args.messages - first), first)))
        size = archive.stat().st_size
        print(f"{args.messages:,} messages of {size / args.messages / 1000:.1f} KB ({size / 1e6:.0f} MB), "
              f"{args.jobs} workers, {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}")
        policy = load_policy(None).with_domains(("mil", "corp.example"), ("partner.com",))
        start = time.perf_counter()
        result = run_scan([archive], policy, Path(folder) / "out", ScanOptions(content=False, jobs=args.jobs))
        seconds = time.perf_counter() - start
        own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        workers = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
        raws = [b"From " + m for m in archive.read_bytes().split(b"\nFrom ")]
        raws = [m[m.find(b"\n") + 1 :] for m in raws]
    base = baseline(raws)
    print(f"  baseline, stdlib header parse + addresses, one core:  {base:,.0f} messages/s")
    print(f"  rcptguard scan --no-content, {args.jobs} workers:           {result.messages / seconds:,.0f} "
          f"messages/s end to end ({result.messages / seconds / base:.2f}x the baseline; "
          f"{len(result.findings):,} findings)")
    sample = raws[: min(len(raws), 8000)]
    start = time.perf_counter()
    flagged = sum(1 for raw in sample if scan_message(raw).signals)
    rate = len(sample) / (time.perf_counter() - start)
    print(f"  scan_message, one core:                                {rate:,.0f} messages/s "
          f"({rate / base:.2f}x the baseline; {flagged:,} of {len(sample):,} with signals)")
    print(f"  peak RSS of the scan: this process {own:.0f} MB, largest worker {workers:.0f} MB")


if __name__ == "__main__":
    main()
